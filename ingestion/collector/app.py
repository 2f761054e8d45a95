"""The event collector: an ASGI service applications send events to.

    POST /v1/events   one event (a JSON object)
    POST /v1/batch    many: {"batch": [event, ...]} or a bare JSON array
    GET  /health      liveness and the landing zone's state
    GET  /metrics     Prometheus text: accepted, rejected, quarantined, duplicates, latency

Each request carries a tenant's write key (`Authorization: Bearer <key>` or `X-Write-Key`):
401 without a known key, 403 when an event names another tenant. Bodies are decoded with msgspec
and each event is checked by the same validation the loaders apply (`ingestion.events.schema`).
Valid events are appended to the landing zone and fsync'd before the reply (see
`landing_writer.py`); each invalid one is reported back (its index, field and reason) and written
to the quarantine with that reason. An `event_id` seen twice in one batch is refused the second
time; one already stored by an earlier request is acknowledged again but not written again
(the loader deduplicates on `event_id` too, so a retry after a lost reply is harmless).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ingestion.collector.landing_writer import LandingUnavailable, LandingWriter, recover
from ingestion.collector.metrics import Metrics
from ingestion.events.schema import EventError, validate_event
from ingestion.paths import DataLayout

_decoder = msgspec.json.Decoder()


@dataclass(frozen=True)
class Settings:
    max_body_bytes: int = 8 << 20
    max_batch_events: int = 20_000
    rotate_bytes: int = 64 << 20
    rotate_seconds: float = 2.0
    max_pending_bytes: int = 256 << 20
    retry_after_seconds: int = 1
    remembered_ids: int = 500_000


class RejectedRequest(Exception):
    """A request refused as a whole: its status and a message naming what was wrong."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class RecentIds:
    """The most recently stored event ids, to acknowledge a retried event without storing it twice."""

    def __init__(self, size: int):
        self.size, self._ids = size, OrderedDict()

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._ids

    def add(self, ids: list[str]) -> None:
        for event_id in ids:
            self._ids[event_id] = None
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)


def _json(body, status: int = 200, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def _line(document) -> bytes:
    return orjson.dumps(document) + b"\n"


class Collector:
    def __init__(self, layout: DataLayout, write_keys: dict[str, str], settings: Settings = Settings()):
        self.layout, self.write_keys, self.settings = layout, write_keys, settings
        self.metrics = Metrics()
        self.recent = RecentIds(settings.remembered_ids)
        self.writer: LandingWriter | None = None

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        recovered = recover(self.layout)
        self.metrics.recovered_files += recovered.files
        self.writer = LandingWriter(self.layout, self.settings.rotate_bytes, self.settings.rotate_seconds,
                                    self.settings.max_pending_bytes)
        self.writer.start()
        try:
            yield
        finally:
            await self.writer.close()

    # -- request checks -----------------------------------------------------------------------
    def _tenant(self, request: Request) -> str:
        header = request.headers.get("authorization", "")
        key = header[7:].strip() if header.lower().startswith("bearer ") else request.headers.get("x-write-key")
        if not key:
            raise RejectedRequest(401, "missing write key: send `Authorization: Bearer <write key>`")
        tenant = self.write_keys.get(key)
        if tenant is None:
            raise RejectedRequest(401, "unknown write key")
        return tenant

    async def _body(self, request: Request) -> bytes:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise RejectedRequest(413, f"body: {declared} bytes is above the limit of {limit}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RejectedRequest(413, f"body: more than the limit of {limit} bytes")
            chunks.append(chunk)
        body = b"".join(chunks)
        if not body.strip():
            raise RejectedRequest(400, "body: empty; send a JSON object")
        try:
            return _decoder.decode(body)
        except msgspec.DecodeError as exc:
            raise RejectedRequest(400, f"body: not valid JSON ({exc})") from None

    def _check_tenants(self, events: list, tenant: str, where: str) -> None:
        for i, event in enumerate(events):
            named = event.get("tenant_id") if isinstance(event, dict) else None
            if isinstance(named, str) and named != tenant:
                raise RejectedRequest(403, f"{where(i)}.tenant_id: {named!r} is not the tenant of this write key; "
                                           "nothing from this request was stored")

    # -- storing ------------------------------------------------------------------------------
    async def _store(self, events: list, where) -> tuple[int, int, list[dict]]:
        """Validate, store and quarantine; (accepted, duplicates, rejected) once on disk."""
        if self.writer.falling_behind:
            raise RejectedRequest(429, "the landing zone is behind; retry shortly",
                                  {"Retry-After": str(self.settings.retry_after_seconds)})
        now = datetime.now(UTC)
        lines, quarantined, rejected, ids = [], [], [], []
        first_seen: dict[str, int] = {}
        duplicates = 0
        for i, event in enumerate(events):
            error = validate_event(event, now)
            if error is None and event["event_id"] in first_seen:
                error = EventError("event_id", f"duplicate of {where(first_seen[event['event_id']])} in this request")
            if error is not None:
                rejected.append({"index": i, "field": error.field, "reason": error.reason})
                quarantined.append(_line({"received_at": now.isoformat(), "where": where(i), "field": error.field,
                                          "reason": error.reason, "event": event}))
                continue
            first_seen[event["event_id"]] = i
            if event["event_id"] in self.recent:
                duplicates += 1
                continue
            lines.append(_line(event))
            ids.append(event["event_id"])
        try:
            await self.writer.append(lines, quarantined)
        except LandingUnavailable as exc:
            raise RejectedRequest(503, f"landing zone unavailable ({exc.strerror or exc}); nothing from this "
                                       "request was stored: retry later",
                                  {"Retry-After": str(self.settings.retry_after_seconds)}) from None
        self.recent.add(ids)
        self.metrics.count(accepted=len(lines), duplicates=duplicates, rejected=len(rejected))
        return len(lines), duplicates, rejected

    # -- routes -------------------------------------------------------------------------------
    async def batch(self, request: Request) -> Response:
        with self.metrics.timed("batch") as outcome:
            try:
                tenant = self._tenant(request)
                document = await self._body(request)
                events = document.get("batch") if isinstance(document, dict) else document
                if not isinstance(events, list):
                    raise RejectedRequest(400, 'body: expected {"batch": [event, ...]} or a JSON array of events')
                if len(events) > self.settings.max_batch_events:
                    raise RejectedRequest(413, f"batch: {len(events)} events is above the maximum of "
                                               f"{self.settings.max_batch_events}")
                self._check_tenants(events, tenant, lambda i: f"batch[{i}]")
                accepted, duplicates, rejected = await self._store(events, lambda i: f"batch[{i}]")
            except RejectedRequest as exc:
                outcome.status = exc.status
                return _json({"error": exc.message}, exc.status, exc.headers)
            return _json({"accepted": accepted, "duplicates": duplicates, "rejected": rejected})

    async def event(self, request: Request) -> Response:
        with self.metrics.timed("event") as outcome:
            try:
                tenant = self._tenant(request)
                event = await self._body(request)
                self._check_tenants([event], tenant, lambda i: "event")
                accepted, duplicates, rejected = await self._store([event], lambda i: "event")
            except RejectedRequest as exc:
                outcome.status = exc.status
                return _json({"error": exc.message}, exc.status, exc.headers)
            if rejected:
                outcome.status = 400
                return _json({"error": f"{rejected[0]['field']}: {rejected[0]['reason']}", **rejected[0]}, 400)
            return _json({"accepted": accepted, "duplicates": duplicates})

    async def health(self, request: Request) -> Response:
        writer = self.writer
        behind = writer is not None and writer.falling_behind
        return _json({"status": "behind" if behind else "ok", "pending_bytes": writer.pending_bytes if writer else 0,
                      "closed_files": writer.closed_files if writer else 0}, 503 if behind else 200)

    async def prometheus(self, request: Request) -> Response:
        pending = self.writer.pending_bytes if self.writer else 0
        return Response(self.metrics.render(pending), media_type="text/plain; version=0.0.4")


def create_app(layout: DataLayout, write_keys: dict[str, str], settings: Settings = Settings()) -> Starlette:
    collector = Collector(layout, write_keys, settings)
    app = Starlette(routes=[
        Route("/v1/batch", collector.batch, methods=["POST"]),
        Route("/v1/events", collector.event, methods=["POST"]),
        Route("/health", collector.health, methods=["GET"]),
        Route("/metrics", collector.prometheus, methods=["GET"]),
    ], lifespan=collector.lifespan)
    app.state.collector = collector
    return app
