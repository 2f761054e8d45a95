"""The access log of the metrics server and the SQL endpoint: who asked which query, and how many rows
they got.

One JSON line per REST request under /cubejs-api/ and per SQL statement run, in a file per UTC day
(`<SEMANTIC_AUDIT_LOG>/api-YYYY-MM-DD.jsonl`, default under the data directory; created owner-only):

    {"time": "2026-11-30T10:00:00.123Z", "api": "rest" | "sql", "client": "127.0.0.1",
     "token_id": "3f2a...", "tenant": "t001", "role": "tenant", "subject": ..., "kid": ...,
     "authenticated": true, "route": "/cubejs-api/v1/load", "method": "GET" (REST) | "user", "database" (SQL),
     "query": {...} (REST: the Cube query) | "select ..." (SQL), "status": 200 | "tag": "SELECT 12" | "sqlstate",
     "rows": 12, "error": "...", "seconds": 0.012}

`token_id` is a digest of the token (`auth.token_id`), never the token itself. A refused request is
logged too (`authenticated: false`, the error). Each record is one `write` to a file opened for
appending, so the lines of several processes never interleave; the log is never read by the servers.
A record that cannot be written (disk full) is reported in the server's log and counted
(`semantic_audit_errors_total`), and the request is answered regardless.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs

import orjson
from prometheus_client import Counter

from semantic.auth import SecurityContext, bearer, token_id
from semantic.limits import API_PREFIX

MAX_QUERY_CHARS = 20_000  # a longer query is logged cut to this length, saying so
ERRORS = Counter("semantic_audit_errors", "Audit records that could not be written.")
log = logging.getLogger(__name__)


def who(context: SecurityContext | None, token: str | None) -> dict:
    """The identity part of a record: the verified context, else what was presented."""
    if context is not None:
        return {"token_id": context.token_id, "tenant": context.tenant_id, "role": context.role,
                "subject": context.subject, "kid": context.kid, "authenticated": True}
    return {"token_id": token_id(token) if token else None, "authenticated": False}


def clipped(text: str) -> str:
    return text if len(text) <= MAX_QUERY_CHARS else text[:MAX_QUERY_CHARS] + f"... ({len(text):,} characters)"


class AuditLog:
    def __init__(self, directory: Path | None):
        self.directory = directory
        self._lock = threading.Lock()
        self._day: str | None = None
        self._fd: int | None = None

    def write(self, record: dict) -> None:
        if self.directory is None:
            return
        now = datetime.now(UTC)
        line = orjson.dumps({"time": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"), **record},
                            default=str, option=orjson.OPT_APPEND_NEWLINE)
        try:
            with self._lock:
                os.write(self._file(now.strftime("%Y-%m-%d")), line)
        except OSError as exc:
            ERRORS.inc()
            log.error("audit record not written to %s: %s", self.directory, exc)

    def _file(self, day: str) -> int:
        if day != self._day or self._fd is None:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._fd = os.open(self.directory / f"api-{day}.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._day = day
        return self._fd


def _rows(body: bytes) -> int | None:
    """The rows of a /load reply (summed over the results of a multi query)."""
    try:
        reply = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(reply, dict):
        return None
    if isinstance(reply.get("results"), list):
        return sum(len(r.get("data") or []) for r in reply["results"] if isinstance(r, dict))
    return len(reply["data"]) if isinstance(reply.get("data"), list) else None


def _query(scope, body: bytes):
    """The query a REST request asked: from the URL, or the JSON body's `query` (as JSON where it is)."""
    if scope["method"] == "GET":
        raw = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("query", [None])[0]
    else:
        try:
            decoded = orjson.loads(body)
            raw = decoded.get("query") if isinstance(decoded, dict) else None
        except orjson.JSONDecodeError:
            raw = body.decode(errors="replace")
    if isinstance(raw, str):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            return clipped(raw)
    return raw


class AuditRequests:
    """ASGI middleware: one record per request under /cubejs-api/, written once the reply is sent.

    The verified security context is the one the API's handler put in the request's state
    (`request.state.security_context`)."""

    def __init__(self, app, audit: AuditLog):
        self.app, self.audit = app, audit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.audit.directory is None or not scope["path"].startswith(API_PREFIX):
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        request_body, reply_body, status = [], [], 0
        # an export's file is streamed, never held: only its errors are kept, to log them
        export = scope["path"].endswith("/export")

        async def recording_receive():
            message = await receive()
            if message["type"] == "http.request":
                request_body.append(message.get("body", b""))
            return message

        async def recording_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not (export and status == 200):
                reply_body.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, recording_receive, recording_send)
        finally:
            headers = dict(scope["headers"])
            context = scope.get("state", {}).get("security_context")
            reply = b"".join(reply_body)
            record = {"api": "rest", "client": (scope.get("client") or (None,))[0],
                      **who(context, bearer(headers.get(b"authorization", b"").decode("latin-1"))),
                      "route": scope["path"], "method": scope["method"],
                      "query": _query(scope, b"".join(request_body)), "status": status}
            if status == 200 and scope["path"].endswith("/load"):
                record["rows"] = _rows(reply)
            if status == 200 and export and "export" in scope.get("state", {}):
                record["rows"] = scope["state"]["export"].rows
            if status != 200 or reply.startswith(b'{"error"'):
                try:
                    record["error"] = orjson.loads(reply).get("error")
                except (orjson.JSONDecodeError, AttributeError):
                    record["error"] = f"status {status}"
            record["seconds"] = round(time.perf_counter() - started, 6)
            self.audit.write(record)
