"""The collector's counters and latency histogram, rendered in Prometheus' text format."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from dataclasses import dataclass

# seconds; the acknowledgement includes the fsync, so the buckets start at a millisecond
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass
class Outcome:
    status: int = 200


class Metrics:
    def __init__(self):
        self.events: Counter[str] = Counter()
        self.requests: Counter[tuple[str, int]] = Counter()
        self.latency: dict[str, list[int]] = {}
        self.latency_sum: Counter[str] = Counter()
        self.recovered_files = 0

    def count(self, accepted: int, duplicates: int, rejected: int) -> None:
        # every rejected event is also written to the quarantine
        self.events.update(accepted=accepted, duplicate=duplicates, rejected=rejected, quarantined=rejected)

    @contextlib.contextmanager
    def timed(self, route: str):
        outcome, started = Outcome(), time.perf_counter()
        try:
            yield outcome
        finally:
            seconds = time.perf_counter() - started
            self.requests[(route, outcome.status)] += 1
            counts = self.latency.setdefault(route, [0] * (len(BUCKETS) + 1))
            counts[next((i for i, bound in enumerate(BUCKETS) if seconds <= bound), len(BUCKETS))] += 1
            self.latency_sum[route] += seconds

    def render(self, pending_bytes: int) -> str:
        lines = ["# HELP collector_events_total Events by outcome: accepted (stored), duplicate (stored before), "
                 "rejected (invalid), quarantined (written to the quarantine).",
                 "# TYPE collector_events_total counter"]
        for outcome in ("accepted", "duplicate", "rejected", "quarantined"):
            lines.append(f'collector_events_total{{outcome="{outcome}"}} {self.events[outcome]}')
        lines += ["# HELP collector_requests_total Requests by route and HTTP status.",
                  "# TYPE collector_requests_total counter"]
        lines += [f'collector_requests_total{{route="{r}",status="{s}"}} {n}'
                  for (r, s), n in sorted(self.requests.items())]
        lines += ["# HELP collector_request_seconds Time to acknowledge a request (validation, append, fsync).",
                  "# TYPE collector_request_seconds histogram"]
        for route, counts in sorted(self.latency.items()):
            running = 0
            for bound, n in zip((*BUCKETS, "+Inf"), counts, strict=True):
                running += n
                lines.append(f'collector_request_seconds_bucket{{route="{route}",le="{bound}"}} {running}')
            lines.append(f'collector_request_seconds_sum{{route="{route}"}} {self.latency_sum[route]:.6f}')
            lines.append(f'collector_request_seconds_count{{route="{route}"}} {running}')
        lines += ["# HELP collector_pending_bytes Bytes received and not yet fsync'd.",
                  "# TYPE collector_pending_bytes gauge", f"collector_pending_bytes {pending_bytes}",
                  "# HELP collector_recovered_files_total Files left open by a crash and closed at start.",
                  "# TYPE collector_recovered_files_total counter",
                  f"collector_recovered_files_total {self.recovered_files}"]
        return "\n".join(lines) + "\n"
