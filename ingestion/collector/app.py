"""The event collector's HTTP API, served by each worker process.

    POST /v1/batch                    many events: Segment's {"batch": [...], "sentAt": ...} or a JSON array
    POST /v1/track, /v1/page, /v1/screen, /v1/identify, /v1/group, /v1/alias   one call of Segment's spec
    POST /v1/events                   one event of our own schema
    GET  /health                      the landing zone's state: 503 when it cannot be written (full,
                                      read-only, gone) or its closed files cannot be moved to the loaders
    GET  /metrics                     Prometheus: requests by status, events by outcome, latency

The write key comes as HTTP Basic auth (the key as user name, as Segment's and RudderStack's SDKs
send it), `Authorization: Bearer <key>`, `X-Write-Key`, or the body's `writeKey`. Bodies may be
gzip'd (`Content-Encoding: gzip`, RudderStack's default).

Replies, as the SDKs read them (they retry 429 and 5xx, give up on other 4xx, and parse
`{"code", "message"}` from an error body):

- 200 `{"success": true, "accepted", "duplicates", "rejected": []}` when every event of the request
  is stored (`duplicates`: already stored by an earlier request, not stored again);
- 400 when some events are invalid: the message names the first (`batch[3].properties.n: ...`),
  `rejected` lists each with its field and reason, and `accepted` says how many of the others were
  stored; the refused ones go to the quarantine. 401/403/413/415 refuse a request as a whole;
- 429 (`Retry-After`) when the landing zone is behind, 503 (`Retry-After`) when it cannot be written:
  both only when nothing of the request was stored. If the landing process dies mid-request the
  reply is 503 saying that whether the events were stored is unknown: a retry is safe, as events
  already stored are answered as duplicates.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import os
import signal
import zlib
from datetime import UTC, datetime

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ingestion.collector import metrics
from ingestion.collector.intake import RequestError, Rules, single_message, split_batch, take_in, valid_utf8
from ingestion.collector.landing_client import LandingClient, LandingUnreachable
from ingestion.collector.landing_service import socket_path
from ingestion.collector.protocol import Refused
from ingestion.collector.settings import Settings

SEGMENT_ROUTES = {f"/v1/{call}": call for call in ("track", "page", "screen", "identify", "group", "alias")}


def _json(body, status: int = 200, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def _error(status: int, code: str, message: str, headers: dict | None = None, **details) -> Response:
    return _json({"success": False, "code": code, "message": message, "error": message, **details}, status, headers)


class Collector:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.landing = LandingClient(socket_path(settings))
        self.retry_after = {"Retry-After": str(settings.retry_after_seconds)}

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        watch = asyncio.ensure_future(self._exit_with_parent(os.getppid()))
        try:
            yield
        finally:
            watch.cancel()
            await self.landing.close()

    async def _exit_with_parent(self, parent: int) -> None:
        """A worker whose supervisor was killed stops too (gracefully), rather than serve on alone."""
        while os.getppid() == parent:
            await asyncio.sleep(1)
        os.kill(os.getpid(), signal.SIGTERM)

    # -- request checks -----------------------------------------------------------------------
    @staticmethod
    def _header_key(request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                user = base64.b64decode(credentials.strip(), validate=True).decode("utf-8").partition(":")[0]
            except (binascii.Error, UnicodeDecodeError):
                raise RequestError(401, "unauthorized", "Authorization: not valid Basic credentials "
                                                        "(base64 of '<write key>:')") from None
            return user or None
        if scheme.lower() == "bearer":
            return credentials.strip() or None
        return request.headers.get("x-write-key")

    def _tenant(self, key) -> str:
        if not key:
            raise RequestError(401, "unauthorized", "missing write key: send it as the Basic auth user name, "
                                                    "`Authorization: Bearer <write key>` or the body's writeKey")
        tenant = self.write_keys.get(key) if isinstance(key, str) else None
        if tenant is None:
            raise RequestError(401, "unauthorized", "unknown write key")
        return tenant

    @property
    def write_keys(self) -> dict[str, str]:
        return self.settings.write_keys

    async def _body(self, request: Request) -> bytes:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise RequestError(413, "too_large", f"body: {declared} bytes is above the limit of {limit}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(413, "too_large", f"body: more than the limit of {limit} bytes")
            chunks.append(chunk)
        body = b"".join(chunks)
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding in ("gzip", "x-gzip", "deflate"):
            body = self._inflate(body, encoding, limit)
        elif encoding not in ("identity", ""):
            raise RequestError(415, "unsupported_encoding", f"Content-Encoding: {encoding!r} is not supported "
                                                            "(send gzip or no encoding)")
        if not body.strip():
            raise RequestError(400, "invalid_body", "body: empty; send a JSON object")
        return body

    @staticmethod
    def _inflate(body: bytes, encoding: str, limit: int) -> bytes:
        inflater = zlib.decompressobj(wbits=31 if encoding != "deflate" else 15)
        try:
            data = inflater.decompress(body, limit + 1)
        except zlib.error as exc:
            raise RequestError(400, "invalid_body", f"body: not valid {encoding} ({exc})") from None
        if len(data) > limit:
            raise RequestError(413, "too_large", f"body: more than the limit of {limit} bytes once decompressed")
        if not inflater.eof:
            raise RequestError(400, "invalid_body", f"body: truncated {encoding} stream")
        return data

    # -- the routes ---------------------------------------------------------------------------
    async def _take(self, request: Request, call: str | None) -> Response:
        """`call`: None for /v1/batch, "own" for /v1/events, else the Segment call of the route."""
        received_at = datetime.now(UTC)
        settings = self.settings
        try:
            key = self._header_key(request)
            body = await self._body(request)
            raws, envelope = split_batch(body) if call is None else single_message(body)
            tenant = self._tenant(key or envelope.writeKey)
            if len(raws) > settings.max_batch_events:
                raise RequestError(413, "too_large", f"batch: {len(raws)} events is above the maximum of "
                                                     f"{settings.max_batch_events}")
            rules = Rules(tenant, received_at, settings.min_timestamp, settings.max_event_bytes)
            where = (lambda i: f"batch[{i}]") if call is None else (lambda i: "event")
            sent_at = envelope.sentAt if call is None else None
            utf8, step = valid_utf8(body), settings.intake_slice_events
            intake = take_in(raws[:step], call, rules, sent_at, where, utf8)
            for start in range(step, len(raws), step):
                await asyncio.sleep(0)  # let the other requests of this worker in
                take_in(raws[start:start + step], call, rules, sent_at, where, utf8, into=intake, first=start)
            reply = await self.landing.store(intake.event_ids, intake.event_lines, intake.profile_ids,
                                             intake.profile_lines, intake.quarantine_lines)
        except RequestError as exc:
            return _error(exc.status, exc.code, exc.message, exc.headers)
        except LandingUnreachable as exc:
            return _error(503, "landing_unreachable", f"{exc}: whether this request was stored is unknown; retry "
                          "(events already stored are answered as duplicates)", self.retry_after)
        if isinstance(reply, Refused):
            status, code = (429, "busy") if reply.reason == "busy" else (503, "landing_unavailable")
            return _error(status, code, f"{reply.message}; nothing from this request was stored: retry later",
                          self.retry_after)
        accepted = reply.events + reply.profiles
        metrics.EVENTS.labels("accepted").inc(accepted)
        metrics.EVENTS.labels("duplicate").inc(reply.duplicates)
        counts = {"accepted": accepted, "duplicates": reply.duplicates, "rejected": intake.rejected}
        if not intake.rejected:
            return _json({"success": True, **counts})
        metrics.EVENTS.labels("rejected").inc(len(intake.rejected))
        if reply.quarantined:
            metrics.EVENTS.labels("quarantined").inc(len(intake.rejected))
        first = intake.rejected[0]
        message = (f"{where(first['index'])}.{first['field']}: {first['reason']} ({len(intake.rejected)} "
                   f"refused, {accepted} stored, {reply.duplicates} already stored)")
        quarantine = "kept" if reply.quarantined else f"not kept: {reply.quarantine_error}"
        return _error(400, "invalid_events", message, field=first["field"], index=first["index"],
                      quarantine=quarantine, **counts)

    async def batch(self, request: Request) -> Response:
        return await self._take(request, None)

    async def event(self, request: Request) -> Response:
        return await self._take(request, "own")

    async def segment_call(self, request: Request) -> Response:
        return await self._take(request, SEGMENT_ROUTES[request.url.path])

    async def health(self, request: Request) -> Response:
        try:
            state = await self.landing.health()
        except LandingUnreachable as exc:
            return _json({"status": "unavailable", "problem": str(exc)}, 503)
        behind = state.pending_bytes > self.settings.max_pending_bytes
        # degraded: events are stored but closed files cannot be moved where the loaders look
        status = "unavailable" if not state.writable else "degraded" if state.problem else "behind" if behind else "ok"
        return _json({"status": status, "problem": state.problem, "free_bytes": state.free_bytes,
                      "min_free_bytes": self.settings.min_free_bytes, "pending_bytes": state.pending_bytes,
                      "open_files": state.open_files, "closed_files": state.closed_files,
                      "remembered_ids": state.remembered_ids}, 200 if status == "ok" else 503)

    async def prometheus(self, request: Request) -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)


def create_app(settings: Settings):
    collector = Collector(settings)
    routes = [
        Route("/v1/batch", collector.batch, methods=["POST"]),
        Route("/v1/events", collector.event, methods=["POST"]),
        *(Route(path, collector.segment_call, methods=["POST"]) for path in SEGMENT_ROUTES),
        Route("/health", collector.health, methods=["GET"]),
        Route("/metrics", collector.prometheus, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=collector.lifespan)
    app.state.collector = collector
    return metrics.StatusCounter(app, {route.path for route in routes})
