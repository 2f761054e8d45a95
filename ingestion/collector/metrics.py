"""The collector's metrics, with prometheus-client, summed over all its processes.

The entry point sets `PROMETHEUS_MULTIPROC_DIR` (under the collector's state folder, emptied at
start) before any process imports prometheus-client, so every worker and the landing process write
their samples there and `/metrics` on any worker reports the whole collector. Without it (a test
that builds the app in-process), the process's own registry is used.

Requests are counted by the status that was really sent (`StatusCounter` wraps the whole ASGI app,
so an unexpected error counts as the 500 the client got).
"""

from __future__ import annotations

import os
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

# seconds; the acknowledgement includes the fsync, so the buckets start at a millisecond
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

REQUESTS = Counter("collector_requests", "Requests by route and the HTTP status sent.", ["route", "status"])
LATENCY = Histogram("collector_request_seconds", "Time to answer a request (validation, append, fsync).",
                    ["route"], buckets=BUCKETS)
EVENTS = Counter("collector_events", "Events and profile calls by outcome: accepted (stored), duplicate (stored "
                 "before), rejected (invalid), quarantined (written to the quarantine), withheld (no consent).",
                 ["outcome"])
ERRORS = Counter("collector_errors", "Error replies by their code (unauthorized, invalid_events, rate_limited, "
                 "too_large, busy, landing_unavailable, ...).", ["code"])
RATE_LIMITED = Counter("collector_rate_limited_events", "Events refused by a write key's rate limit, by tenant.",
                       ["tenant"])
RECOVERED_FILES = Counter("collector_recovered_files", "Files left open by a crash and closed at start.")
PENDING_BYTES = Gauge("collector_pending_bytes", "Bytes received and not yet fsync'd.", multiprocess_mode="livesum")
WRITABLE = Gauge("collector_landing_writable", "1 when the landing zone can be written, else 0.",
                 multiprocess_mode="livemostrecent")
FREE_BYTES = Gauge("collector_landing_free_bytes", "Free bytes on the landing zone's file system.",
                   multiprocess_mode="livemostrecent")
REMEMBERED_IDS = Gauge("collector_remembered_ids", "Event ids remembered for de-duplication.",
                       multiprocess_mode="livemostrecent")


def render() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


class StatusCounter:
    """ASGI middleware: count each request under its route and the status actually sent."""

    def __init__(self, app, routes: set[str]):
        self.app, self.routes = app, routes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = scope["path"] if scope["path"] in self.routes else "other"
        status = 500
        started = time.perf_counter()

        async def counting_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            REQUESTS.labels(route, str(status)).inc()
            LATENCY.labels(route).observe(time.perf_counter() - started)
