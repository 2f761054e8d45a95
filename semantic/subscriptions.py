"""Cube's WebSocket transport on the metrics server: `subscribe()` gets a new result each time a
publish changes its answer, and not otherwise.

The protocol is Cube's own (`packages/cubejs-api-gateway/src/ws/subscription-server.ts`), as the
official `@cubejs-client/ws-transport` speaks it:

- the client opens a socket (any path: Cube listens on its HTTP port) and sends
  `{"authorization": <token>}`; the server answers `{"handshake": true}`;
- then `{"messageId", "requestId", "method", "params": {"query", "queryType"}}` with method `load`,
  `subscribe` or `meta`; each answer is `{"messageId", "message": <the REST reply's body>, "status"}`,
  followed by `{"messageProcessedId": <messageId>}` once the message is handled;
- `{"unsubscribe": <messageId>}` ends a subscription. Every heartbeat (60 s) the client sends its
  subscriptions again under the same ids: they are answered only if their result changed.

Where Cube re-runs every subscription on a timer (every 5 s), this server re-runs one when what it
reads changes: a new published version (the watcher asks `MetricsService.current()` ten times a
second; the service reads the publication's pointer, `CURRENT` for DuckDB, at most as often), or a
new minute for queries with relative date ranges ("from 60 minutes ago to now"). A result is
pushed only if its rows differ from the last ones sent for that subscription. Identical
subscriptions of many clients share one execution (the service's result cache and in-flight map).

Bounds (`SubscriptionLimits` in settings.py), each answered in a way the client can read:
- connections per server process, and per token: past them, an error message, then the socket is
  closed (1013, try again later);
- subscriptions per token, over all its connections: past it, the subscription is refused (status
  429) and the socket and the token's other subscriptions go on;
- bytes waiting to be sent, per connection: a client that does not read is dropped (1008) as soon
  as its replies pass the bound, so nothing piles up for it.

Errors: an invalid token (or one that expires while connected, or whose tenant the published data
no longer has) gets Cube's 403 message; the messages the client sends in the next half second (the
official client sends its queued subscriptions as soon as any message arrives) get it under their
ids, so `subscribe()`'s callback learns why; then the socket is closed (1008). A query the
translator refuses (unknown member, bad filter) gets the REST API's 400 message under its id and is
not kept: the socket stays open for the client's other subscriptions, since closing it would make
the official client reconnect and send the bad query again at once, forever.

Written here because Cube's subscription server is Node code tied to its query orchestrator; the
protocol is small, and Starlette provides the sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from semantic.auth import AuthError, SecurityContext
from semantic.cube_query import QueryError
from semantic.members import UnknownMember
from semantic.settings import SubscriptionLimits

log = logging.getLogger(__name__)

WATCH_SECONDS = 0.1  # how often the watcher asks the service for the current version
REFUSAL_GRACE_SECONDS = 0.5  # a refused client's queued messages are answered this long, then closed
CONCURRENT_MESSAGES = 8  # messages of one connection being answered at once (the reader waits past it)
MAX_MESSAGE_ID = 16  # characters of a string messageId, as Cube's schema allows
METHODS = ("load", "subscribe", "meta", "sql", "dry-run", "unsubscribe")
CLOSE_POLICY, CLOSE_TRY_LATER = 1008, 1013


class Refused(Exception):
    """The connection is refused: the message to send and how to close the socket."""

    def __init__(self, error: str, status: int, code: int = CLOSE_POLICY):
        super().__init__(error)
        self.error, self.status, self.code = error, status, code


@dataclass(eq=False)
class Subscription:
    message_id: int | str
    query: object
    query_type: str | None
    fingerprint: bytes | None = None  # of the rows last sent
    version: str | None = None  # the data version they were computed on
    minute: datetime | None = None  # the minute relative date ranges were resolved in
    running: bool = False


def _fingerprint(results) -> bytes:
    return hashlib.blake2b(orjson.dumps([r.rows for r in results]), digest_size=16).digest()


def _minute() -> datetime:
    return datetime.now(UTC).replace(second=0, microsecond=0)


def _add(counts: dict[str, int], key: str, delta: int) -> None:
    left = counts.get(key, 0) + delta
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)


def _message_id(value) -> int | str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) or (isinstance(value, str) and 0 < len(value) <= MAX_MESSAGE_ID):
        return value
    return None


class Subscriptions:
    """Every WebSocket connection of one server process, and the watcher that refreshes them."""

    def __init__(self, api, limits: SubscriptionLimits):
        self.api, self.service, self.limits = api, api.service, limits
        self.connections: set[Connection] = set()
        self.tokens: dict[str, int] = {}  # connections per token
        self.subscribed: dict[str, int] = {}  # subscriptions per token
        self._watcher: asyncio.Task | None = None

    async def serve(self, websocket: WebSocket) -> None:
        """The Starlette WebSocket endpoint."""
        await websocket.accept()
        connection = Connection(self, websocket)
        if len(self.connections) >= self.limits.connections:
            connection.refuse(Refused(f"too many connections to this server (at most {self.limits.connections}: "
                                      "SEMANTIC_WS_CONNECTIONS); try again later", 503, CLOSE_TRY_LATER))
        self.connections.add(connection)
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._watch())
        try:
            await connection.run()
        finally:
            self.connections.discard(connection)
            connection.release()

    # -- answers ---------------------------------------------------------------------------
    async def answer(self, query, wanted: str | None, context: SecurityContext):
        """A load's reply body as the REST API gives it, with the fingerprint of its rows and
        the data version they were read from."""
        if isinstance(query, str):
            try:
                query = orjson.loads(query)
            except orjson.JSONDecodeError as exc:
                raise QueryError(f"params.query: not valid JSON ({exc})") from None
        if query is None:
            raise QueryError("params.query: missing")
        query_type, plans = self.api.expand(query, context)
        futures = [self.service.submit(plan, context.cache_key) for _, plan in plans]
        results = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
        versions = {r.data_version for r in results}
        return (self.api.body(query_type, plans, results, wanted), _fingerprint(results),
                versions.pop() if len(versions) == 1 else None)

    # -- the watcher -----------------------------------------------------------------------
    async def _watch(self) -> None:
        """Refresh each subscription whose version or minute is not the current one, until no
        connection is left. A slow query holds up only its own subscription."""
        loop = asyncio.get_running_loop()
        while self.connections:
            try:
                version = await loop.run_in_executor(None, self.service.current)
            except FileNotFoundError:  # nothing published yet
                await asyncio.sleep(WATCH_SECONDS)
                continue
            except Exception:
                log.exception("subscriptions: reading the current version failed")
                await asyncio.sleep(1)
                continue
            minute, now = _minute(), time.time()
            for connection in list(self.connections):
                context = connection.context
                if context is None or connection.refused:
                    continue
                if context.expires_at <= now:
                    connection.refuse(Refused("Invalid token: expired", 403))
                elif context.tenant_id is not None and context.tenant_id not in version.tenants:
                    connection.refuse(Refused(f"Invalid token: tenant {context.tenant_id!r} is not one the "
                                              "published data knows", 403))
                else:
                    for subscription in list(connection.subscriptions.values()):
                        if not subscription.running and (subscription.version != version.version
                                                         or subscription.minute != minute):
                            subscription.running = True
                            connection.spawn(connection.refresh(subscription, minute))
            await asyncio.sleep(WATCH_SECONDS)


@dataclass(eq=False)
class Connection:
    hub: Subscriptions
    websocket: WebSocket
    context: SecurityContext | None = None
    token: str | None = None  # a digest of the token, to count connections and subscriptions by
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    refused: Refused | None = None
    dropped: bool = False
    queued: int = 0  # bytes waiting to be sent
    outbox: asyncio.Queue = field(default_factory=asyncio.Queue)
    writer: asyncio.Task | None = None
    tasks: set = field(default_factory=set)
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(CONCURRENT_MESSAGES))

    # -- the socket ------------------------------------------------------------------------
    async def run(self) -> None:
        writer = self.writer = asyncio.create_task(self._write())
        try:
            while not writer.done():
                receiving = asyncio.create_task(self.websocket.receive())
                await asyncio.wait([receiving, writer], return_when=asyncio.FIRST_COMPLETED)
                if not receiving.done():  # the writer ended: the socket is closed or dropped
                    receiving.cancel()
                    break
                message = receiving.result()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                if text is None:
                    text = (message.get("bytes") or b"").decode("utf-8", "replace")
                parsed = self._parse(text)
                if parsed is None:
                    continue
                if "authorization" in parsed and self.refused is None:
                    await self._authorize(parsed["authorization"])  # before the messages sent after it
                    continue
                await self.slots.acquire()
                self.spawn(self._handle(parsed), self.slots)
        except WebSocketDisconnect:
            pass
        finally:
            for task in [*self.tasks, writer]:
                task.cancel()

    async def _write(self) -> None:
        """Send what is queued, in order; close the socket when a close is queued."""
        while True:
            item = await self.outbox.get()
            if isinstance(item, tuple):  # (code, reason): close
                code, reason = item
                with contextlib.suppress(TimeoutError, RuntimeError, WebSocketDisconnect, OSError):
                    # a close frame's reason is at most 123 bytes
                    await asyncio.wait_for(self.websocket.close(code, reason.encode()[:120].decode(errors="ignore")), 2)
                return
            self.queued -= len(item)
            try:
                await self.websocket.send_text(item)
            except (RuntimeError, WebSocketDisconnect, OSError):  # the client went away
                return

    def send(self, message: dict) -> None:
        """Queue a message; a client whose unsent replies pass the bound is dropped."""
        if self.dropped:
            return
        text = orjson.dumps(message).decode()
        limit = self.hub.limits.send_buffer_bytes
        if self.queued and self.queued + len(text) > limit:
            log.warning("subscriptions: dropping a client that does not read (%d bytes waiting)", self.queued)
            self._drop(f"dropped: more than {limit} bytes of replies waited for this client to read them "
                       "(SEMANTIC_WS_SEND_BUFFER_BYTES)")
            return
        self.queued += len(text)
        self.outbox.put_nowait(text)

    def _drop(self, reason: str) -> None:
        """Forget what waits to be sent and end the connection now: the writer may be stuck on
        a reply the client does not read, so it is cancelled rather than asked to close."""
        self.dropped, self.refused = True, self.refused or Refused(reason, 0)
        while not self.outbox.empty():
            self.outbox.get_nowait()
        self.queued = 0
        self.release()
        if self.writer is not None:
            self.writer.cancel()

    def refuse(self, refusal: Refused) -> None:
        """Say why, answer what the client sends in the next moment with the same, then close."""
        if self.refused is not None:
            return
        self.refused = refusal
        self.send({"message": {"error": refusal.error}, "status": refusal.status})
        self.release()
        asyncio.get_running_loop().call_later(REFUSAL_GRACE_SECONDS, self.outbox.put_nowait,
                                              (refusal.code, refusal.error))

    def spawn(self, coroutine, slots: asyncio.Semaphore | None = None) -> None:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)

        def done(task: asyncio.Task) -> None:
            self.tasks.discard(task)
            if slots is not None:
                slots.release()
        task.add_done_callback(done)

    def release(self) -> None:
        """Give back this connection's share of its token's bounds."""
        if self.token is not None:
            _add(self.hub.tokens, self.token, -1)
            _add(self.hub.subscribed, self.token, -len(self.subscriptions))
            self.token = None
        self.subscriptions.clear()

    # -- messages --------------------------------------------------------------------------
    def _parse(self, text: str) -> dict | None:
        """The message, or None once the client is told why it is not one."""
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            self.send({"message": {"error": f"Invalid JSON payload: {exc}", "type": "UserError"}, "status": 400})
            return None
        if not isinstance(message, dict):
            self.send({"message": {"error": "Invalid message format: expected a JSON object", "type": "UserError"},
                       "status": 400})
            return None
        return message

    async def _handle(self, message: dict) -> None:
        if self.refused is not None:
            if _message_id(message.get("messageId")) is not None:
                self.send({"messageId": message["messageId"], "message": {"error": self.refused.error},
                           "status": self.refused.status})
            return
        if "unsubscribe" in message:
            self._unsubscribe(message["unsubscribe"])
        else:
            await self._method(message)

    async def _authorize(self, token) -> None:
        hub = self.hub
        try:  # in a thread: it may wait for the service to open a new version
            context = await asyncio.get_running_loop().run_in_executor(
                None, hub.api.authorize, token if isinstance(token, str) else None)
        except AuthError as exc:
            self.refuse(Refused(str(exc), 403))
            return
        except FileNotFoundError as exc:
            self.refuse(Refused(str(exc), 503, CLOSE_TRY_LATER))
            return
        except Exception as exc:  # the other connections go on
            log.error("subscriptions: internal error checking a token", exc_info=exc)
            self.refuse(Refused(f"internal error: {type(exc).__name__}: {exc}", 500, CLOSE_TRY_LATER))
            return
        self.release()
        key = hashlib.sha256(token.encode()).hexdigest()
        if hub.tokens.get(key, 0) >= hub.limits.connections_per_token:
            self.refuse(Refused(f"too many connections with this token (at most {hub.limits.connections_per_token}:"
                                " SEMANTIC_WS_CONNECTIONS_PER_TOKEN); close one first", 429, CLOSE_TRY_LATER))
            return
        self.context, self.token = context, key
        _add(hub.tokens, key, 1)
        self.send({"handshake": True})

    def _unsubscribe(self, message_id) -> None:
        if self.subscriptions.pop(str(message_id), None) is not None and self.token is not None:
            _add(self.hub.subscribed, self.token, -1)

    async def _method(self, message: dict) -> None:
        message_id = _message_id(message.get("messageId"))
        if message_id is None:
            self.send({"message": {"error": "messageId is required (an integer, or a string of at most "
                                            f"{MAX_MESSAGE_ID} characters)", "type": "UserError"}, "status": 400})
            return
        if self.context is None:
            self.send({"messageId": message_id, "message": {"error": "Not authorized"}, "status": 403})
            return
        method, params = message.get("method"), message.get("params") or {}
        try:
            if method not in METHODS:
                raise QueryError(f"Unsupported method: {method!r} (one of {', '.join(METHODS)})")
            if not isinstance(params, dict):
                raise QueryError("params: expected a JSON object")
            if method == "meta":
                self._reply(message_id, self.hub.service.catalog.meta())
            elif method == "load":
                body, _, _ = await self.hub.answer(params.get("query"), params.get("queryType"), self.context)
                self._reply(message_id, body)
            elif method == "subscribe":
                await self._subscribe(message_id, params)
            elif method == "unsubscribe":
                self._unsubscribe(message_id)
            else:
                raise QueryError(f"{method} is not served over WebSocket: use GET /cubejs-api/v1/{method}")
        except Exception as exc:  # each answered like the REST API, under its id
            self._error(message_id, exc)
        self.send({"messageProcessedId": message_id})

    def _reply(self, message_id, body: dict) -> None:
        self.send({"messageId": message_id, "message": body, "status": 200})

    def _error(self, message_id, exc: Exception) -> None:
        if isinstance(exc, QueryError | UnknownMember):
            message, status = {"error": str(exc), "type": "UserError"}, 400
        elif isinstance(exc, AuthError):
            message, status = {"error": str(exc)}, 403
        elif isinstance(exc, FileNotFoundError):
            message, status = {"error": str(exc)}, 503
        else:
            log.error("subscriptions: internal error answering message %r", message_id, exc_info=exc)
            message, status = {"error": f"internal error: {type(exc).__name__}: {exc}"}, 500
        self.send({"messageId": message_id, "message": message, "status": status})

    async def _subscribe(self, message_id, params: dict) -> None:
        """A new subscription (answered at once), or the client's heartbeat sending it again
        (answered only if its result changed)."""
        key, query, wanted = str(message_id), params.get("query"), params.get("queryType")
        subscription = self.subscriptions.get(key)
        if subscription is None or subscription.query != query or subscription.query_type != wanted:
            limit = self.hub.limits.subscriptions_per_token
            if subscription is None and self.hub.subscribed.get(self.token, 0) >= limit:
                self.send({"messageId": message_id, "status": 429, "message": {
                    "error": f"too many subscriptions for this token (at most {limit} at a time: "
                             "SEMANTIC_WS_SUBSCRIPTIONS_PER_TOKEN); unsubscribe first"}})
                return
            if subscription is None:
                _add(self.hub.subscribed, self.token, 1)
            subscription = self.subscriptions[key] = Subscription(message_id, query, wanted)
        if subscription.running:
            return  # its answer is on the way
        try:
            await self.refresh(subscription, _minute(), raise_errors=True)
        except Exception:
            self._unsubscribe(message_id)
            raise

    async def refresh(self, subscription: Subscription, minute: datetime, raise_errors: bool = False) -> None:
        """Run the subscription's query again; send the result if its rows changed."""
        subscription.running = True
        try:
            body, fingerprint, version = await self.hub.answer(subscription.query, subscription.query_type,
                                                               self.context)
        except Exception as exc:
            if raise_errors:
                raise
            if self.subscriptions.get(str(subscription.message_id)) is subscription:
                self._error(subscription.message_id, exc)
                self._unsubscribe(subscription.message_id)
            return
        finally:
            subscription.running = False
        if self.subscriptions.get(str(subscription.message_id)) is not subscription:
            return  # unsubscribed (or replaced) meanwhile
        subscription.version, subscription.minute = version, minute
        if fingerprint != subscription.fingerprint:
            subscription.fingerprint = fingerprint
            self._reply(subscription.message_id, body)
