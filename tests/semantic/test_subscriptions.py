"""Live results over Cube's WebSocket transport, against a real metrics server.

Cube's official client (`@cubejs-client/core`'s `subscribe()` over `@cubejs-client/ws-transport`,
run by Node) gets a new result each time a publish changes its query's answer, and not otherwise;
tokens and tenants as on the REST API. The protocol's bad inputs and bounds are driven with a plain
WebSocket client (and a raw socket for the client that never reads): each gets its error message on
the socket, and the other clients are not held up.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import queue
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.semantic.conftest import publish, publish_minute

SUBSCRIBE = Path(__file__).with_name("cube_js") / "subscribe.mjs"
# the last ten minutes, per minute: what a live tile shows
RECENT = {"measures": ["live.live_events", "live.live_gross_revenue"],
          "timeDimensions": [{"dimension": "live.metric_time", "granularity": "minute",
                              "dateRange": "from 10 minutes ago to now"}]}


class NodeSubscriber:
    """`node subscribe.mjs`: one line per result or error, read as they come."""

    def __init__(self, server, subscriptions: list[dict]):
        self.proc = subprocess.Popen(["node", str(SUBSCRIBE), f"ws://127.0.0.1:{server.port}/",
                                      json.dumps(subscriptions)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def next(self, timeout: float = 60) -> dict:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            self.proc.kill()
            said = self.proc.stderr.read()[-3000:]
            raise AssertionError(f"no result within {timeout} s; node said: {said!r}") from None

    def first(self, count: int) -> dict[str, dict]:
        lines = [self.next() for _ in range(count)]
        return {line["name"]: line for line in lines}

    def quiet(self, seconds: float) -> list[dict]:
        """What arrives within `seconds` (nothing, when nothing changed)."""
        time.sleep(seconds)
        return [self.lines.get_nowait() for _ in range(self.lines.qsize())]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        finally:
            self.proc.kill()


def _events(line: dict, minute) -> int:
    """The events a result's row of `minute` holds (0 when it has no row for it)."""
    stamp = minute.strftime("%Y-%m-%dT%H:%M:00.000")
    return sum(int(r["live.live_events"]) for r in line["rows"] if r["live.metric_time.minute"] == stamp)


def _switched(server, version) -> None:
    """Wait until the server reads `version` (it looks twice a second), and one watcher round more."""
    deadline = time.monotonic() + 10
    while httpx.get(f"{server.url}/readyz").json().get("dataVersion") != version.version:
        assert time.monotonic() < deadline, "the server did not switch to the published version"
        time.sleep(0.05)
    time.sleep(0.5)


def test_the_official_client_gets_a_result_when_a_publish_changes_it_and_not_otherwise(live_server):
    layout = live_server.layout
    subscriptions = [{"name": tenant, "token": live_server.token(tenant), "query": RECENT}
                     for tenant in ("t001", "t002")]
    with NodeSubscriber(live_server, subscriptions) as client:
        first = client.first(2)
        assert set(first) == {"t001", "t002"} and all("rows" in line for line in first.values())

        # new data for t002 only: t002's subscriber gets it, t001's (its own tenant's rows) does not
        minute, version = publish_minute(layout, "t002", events=5, revenue=12.5)
        update = client.next(timeout=5)
        assert update["name"] == "t002" and _events(update, minute) == 5
        row = next(r for r in update["rows"] if _events({"rows": [r]}, minute))
        assert row["live.live_gross_revenue"] == "12.50"
        _switched(live_server, version)
        assert client.quiet(0.3) == []

        # a new version whose rows these queries read are the same: nothing is pushed
        _switched(live_server, publish(layout))
        assert client.quiet(0.3) == []

        # t001's minute changes: only its subscriber hears of it, with its own rows only
        publish_minute(layout, "t001", events=7, minute=minute)
        update = client.next(timeout=5)
        assert update["name"] == "t001" and _events(update, minute) == 7
        assert client.quiet(1.0) == []


def test_the_official_client_is_told_of_an_unknown_member_and_of_an_invalid_token(live_server):
    bad_member = {**RECENT, "measures": ["live.live_event"]}
    expired = live_server.token("t001", ttl_seconds=-10)
    with NodeSubscriber(live_server, [
            {"name": "member", "token": live_server.token("t001"), "query": bad_member},
            {"name": "forged", "token": live_server.token("t001")[:-4] + "AAAA", "query": RECENT},
            {"name": "expired", "token": expired, "query": RECENT},
            {"name": "good", "token": live_server.token("t001", ttl_seconds=3000), "query": RECENT}]) as client:
        lines = client.first(4)
    assert lines["member"]["status"] == 400
    assert "unknown measure 'live.live_event'; did you mean 'live.live_events'" in lines["member"]["error"]
    assert lines["forged"] == {"name": "forged", "error": "Invalid token: wrong signature", "status": 403}
    assert lines["expired"] == {"name": "expired", "error": "Invalid token: expired", "status": 403}
    assert "rows" in lines["good"]


@contextlib.contextmanager
def _ws(server, token: str | None = None) -> Iterator:
    """A plain WebSocket client, authenticated when given a token."""
    with connect(f"ws://127.0.0.1:{server.port}/cubejs-api/v1", open_timeout=10, max_size=None) as ws:
        if token is not None:
            ws.send(json.dumps({"authorization": token}))
            assert json.loads(ws.recv(10)) == {"handshake": True}
        yield ws


def _closed(ws) -> tuple[list[dict], int]:
    """The messages received until the server closed the socket, and its close code."""
    received = []
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            received.append(json.loads(ws.recv(10)))
    return received, closed.value.rcvd.code


def _unnumbered(ws) -> dict:
    """The next message that answers no messageId (an error about the message itself)."""
    while "messageId" in (reply := json.loads(ws.recv(10))) or "messageProcessedId" in reply:
        pass
    return reply


def _answer(ws, message_id, method: str = "load", query=None) -> dict:
    ws.send(json.dumps({"messageId": message_id, "method": method, "params": {"query": query or RECENT}}))
    while True:
        reply = json.loads(ws.recv(10))
        if reply.get("messageId") == message_id:
            return reply


def _send(ws, message) -> None:
    ws.send(message if isinstance(message, str) else json.dumps(message))


def _reply_to(ws, message_id) -> dict:
    """The next answer under `message_id` (other messages skipped)."""
    while (reply := json.loads(ws.recv(10))).get("messageId") != message_id:
        pass
    return reply


def _subscribed(ws, message_id, query=None) -> None:
    reply = _answer(ws, message_id, "subscribe", query)
    assert reply["status"] == 200 and "data" in reply["message"], reply


def _pushed(ws, message_ids: set, minute, events: int, timeout: float = 10) -> None:
    """Wait until each subscription of `message_ids` on this socket has pushed a result in which
    `minute` has `events` events."""
    waiting, deadline = set(message_ids), time.monotonic() + timeout
    while waiting:
        left = deadline - time.monotonic()
        assert left > 0, f"no new result for subscriptions {sorted(waiting)}"
        reply = json.loads(ws.recv(left))
        if reply.get("messageId") in waiting:
            assert reply["status"] == 200, reply
            if _events({"rows": reply["message"]["data"]}, minute) == events:
                waiting.discard(reply["messageId"])


def test_a_refused_token_is_told_why_and_the_other_subscriptions_go_on(live_server):
    """Bad, forged, expired and unknown-tenant tokens, and one that expires while connected: each
    gets its 403 message on the socket (and under the ids of the messages sent with it), then the
    socket closes (1008); a subscriber connected meanwhile is not disturbed."""
    unknown = "Invalid token: tenant 't404' is not one the published data knows"
    refused = {"not-a-jwt": "Invalid token: Not enough segments",
               live_server.token("t001")[:-4] + "AAAA": "Invalid token: wrong signature",
               live_server.token("t001", ttl_seconds=-10): "Invalid token: expired",
               live_server.token("t404"): unknown}
    with _ws(live_server, live_server.token("t002", ttl_seconds=3010)) as bystander:
        _subscribed(bystander, "b")
        for token, error in refused.items():
            with _ws(live_server) as ws:
                _send(ws, {"authorization": token})
                _send(ws, {"messageId": 1, "method": "subscribe", "params": {"query": RECENT}})
                received, code = _closed(ws)
            assert received == [{"message": {"error": error}, "status": 403},
                                {"messageId": 1, "message": {"error": error}, "status": 403}], token
            assert code == 1008

        with _ws(live_server, live_server.token("t002", ttl_seconds=2)) as ws:  # expires while connected
            _subscribed(ws, 1)
            received, code = _closed(ws)
        assert received[-1] == {"message": {"error": "Invalid token: expired"}, "status": 403} and code == 1008

        with _ws(live_server) as ws:  # a message before any token, as Cube answers it
            assert _answer(ws, "early") == {"messageId": "early", "message": {"error": "Not authorized"},
                                            "status": 403}
            assert _answer(ws, "again")["status"] == 403  # and the socket stays for the token to come

        minute, _ = publish_minute(live_server.layout, "t002", events=3)
        _pushed(bystander, {"b"}, minute, 3)
    assert httpx.get(f"{live_server.url}/readyz").status_code == 200


def test_bad_messages_are_answered_one_by_one_and_every_subscription_goes_on(live_server):
    """Malformed messages, an unknown method, bad params, a query that is not JSON, an unknown member
    and a subscription past the token's bound (live_server allows 4): each is answered with a 400 (or
    429) naming what is wrong, and the socket with its subscriptions, and other sockets, go on."""
    token = live_server.token("t001", ttl_seconds=3020)
    with _ws(live_server, token) as ws, _ws(live_server, live_server.token("t001", ttl_seconds=3030)) as bystander:
        _subscribed(ws, "mine")
        _subscribed(bystander, "b")

        _send(ws, "{not json")
        reply = _unnumbered(ws)
        assert reply["status"] == 400 and reply["message"]["error"].startswith("Invalid JSON payload")
        _send(ws, "[1, 2]")
        assert _unnumbered(ws)["message"]["error"] == "Invalid message format: expected a JSON object"
        _send(ws, {"method": "load", "params": {"query": RECENT}})
        assert _unnumbered(ws)["message"]["error"].startswith("messageId is required")
        _send(ws, {"messageId": "x" * 17, "method": "load", "params": {"query": RECENT}})
        assert _unnumbered(ws)["message"]["error"].startswith("messageId is required")

        reply = _answer(ws, 2, "frobnicate")
        assert reply["status"] == 400
        assert reply["message"]["error"].startswith("Unsupported method: 'frobnicate' (one of load, subscribe")
        _send(ws, {"messageId": 3, "method": "subscribe", "params": "nope"})
        assert _reply_to(ws, 3)["message"] == {"error": "params: expected a JSON object", "type": "UserError"}
        _send(ws, {"messageId": 4, "method": "subscribe", "params": {"query": "{oops"}})
        reply = _reply_to(ws, 4)
        assert reply["status"] == 400 and reply["message"]["error"].startswith("params.query: not valid JSON")
        _send(ws, {"messageId": 5, "method": "subscribe", "params": {}})
        assert _reply_to(ws, 5)["message"]["error"] == "params.query: missing"
        _send(ws, {"messageId": 6, "method": "subscribe", "params": {"query": 42}})
        assert _reply_to(ws, 6)["message"]["error"] == "query: expected a JSON object, got int"

        reply = _answer(ws, 7, "subscribe", {**RECENT, "measures": ["live.live_event"]})
        assert reply["status"] == 400
        assert "unknown measure 'live.live_event'; did you mean 'live.live_events'" in reply["message"]["error"]

        # refused subscriptions were not kept: three more fit in the token's four, the fifth does not
        for message_id in ("s2", "s3", "s4"):
            _subscribed(ws, message_id)
        reply = _answer(ws, "s5", "subscribe")
        assert reply["status"] == 429
        assert reply["message"]["error"] == ("too many subscriptions for this token (at most 4 at a time: "
                                             "SEMANTIC_WS_SUBSCRIPTIONS_PER_TOKEN); unsubscribe first")

        minute, _ = publish_minute(live_server.layout, "t001", events=11)
        _pushed(ws, {"mine", "s2", "s3", "s4"}, minute, 11)
        _pushed(bystander, {"b"}, minute, 11)
        assert _answer(ws, 8)["status"] == 200  # and it still answers


def test_connections_are_bounded_per_token_and_per_server(live_server):
    """live_server allows 3 connections per token and 12 in all."""
    token = live_server.token("t003", ttl_seconds=3300)
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(_ws(live_server, token))
        sockets = [first] + [stack.enter_context(_ws(live_server, token)) for _ in range(2)]
        with _ws(live_server) as fourth:
            fourth.send(json.dumps({"authorization": token}))
            received, code = _closed(fourth)
        assert received[0]["status"] == 429
        assert "SEMANTIC_WS_CONNECTIONS_PER_TOKEN" in received[0]["message"]["error"] and code == 1013

        for ttl in range(3000, 3020):  # other tokens, until the server is full
            ws = stack.enter_context(_ws(live_server))
            ws.send(json.dumps({"authorization": live_server.token("t001", ttl_seconds=ttl)}))
            reply = json.loads(ws.recv(10))
            if reply != {"handshake": True}:
                break
            sockets.append(ws)
        assert reply["status"] == 503 and "SEMANTIC_WS_CONNECTIONS" in reply["message"]["error"]
        assert _closed(ws)[1] == 1013 and len(sockets) <= 12
        assert _answer(first, 1)["status"] == 200  # those connected are served as before


def test_a_burst_of_subscriptions_is_refused_past_the_bound_and_others_are_served(server):
    """1,000 subscriptions from one token (the server allows 100 per token at a time)."""
    query = {"measures": ["events.events"], "dimensions": ["events.tenant"]}
    with _ws(server, server.token("t001")) as burst, _ws(server, server.token("t002")) as other:
        for i in range(1, 1001):
            burst.send(json.dumps({"messageId": i, "method": "subscribe", "params": {"query": query}}))
        started = time.monotonic()
        assert _answer(other, "o", "load", query)["status"] == 200
        assert time.monotonic() - started < 5
        statuses, processed = {}, set()
        while len(processed) < 1000:
            reply = json.loads(burst.recv(30))
            if "messageProcessedId" in reply:
                processed.add(reply["messageProcessedId"])
            else:
                statuses[reply["messageId"]] = reply
        assert sorted(r["status"] for r in statuses.values()) == [200] * 100 + [429] * 900
        refused = next(r for r in statuses.values() if r["status"] == 429)
        assert "SEMANTIC_WS_SUBSCRIPTIONS_PER_TOKEN" in refused["message"]["error"]
        assert statuses[1]["message"]["data"] == [{"events.tenant": "t001", "events.events": _count(server, "t001")}]

        accepted = next(i for i, r in statuses.items() if r["status"] == 200)
        burst.send(json.dumps({"unsubscribe": accepted}))  # one given back: one more is accepted
        assert _answer(burst, 2000, "subscribe", query)["status"] == 200
        assert _answer(burst, 2001, "subscribe", query)["status"] == 429
    with _ws(server, server.token("t001")) as again:  # closing gave the token's subscriptions back
        deadline = time.monotonic() + 5
        while (status := _answer(again, f"{time.monotonic()}"[-16:], "subscribe", query)["status"]) == 429:
            assert time.monotonic() < deadline, "the closed connection's subscriptions were not given back"
            time.sleep(0.1)
        assert status == 200


def _count(server, tenant: str) -> str:
    with httpx.Client() as client:
        reply = client.get(f"{server.url}/cubejs-api/v1/load", headers={"Authorization": server.token(tenant)},
                           params={"query": json.dumps({"measures": ["events.events"]})}).json()
    return reply["data"][0]["events.events"]


def _rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))


class PeakMemory:
    """The largest resident size of a process while the block runs, sampled every 10 ms."""

    def __init__(self, pid: int):
        self.pid, self.peak, self.before = pid, 0, _rss_kib(pid)
        self._done = threading.Event()

    def _sample(self) -> None:
        while not self._done.wait(0.01):
            self.peak = max(self.peak, _rss_kib(self.pid))

    def __enter__(self):
        threading.Thread(target=self._sample, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._done.set()

    @property
    def grown_mib(self) -> float:
        return (self.peak - self.before) / 1024


class SilentClient:
    """A WebSocket client on a raw socket that sends, and never reads what comes back."""

    def __init__(self, port: int):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade"
                          f"\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def send(self, message: dict) -> None:
        payload, mask = orjson.dumps(message), os.urandom(4)
        length = len(payload)
        header = bytes([0x81]) + (bytes([0x80 | length]) if length < 126 else
                                  bytes([0x80 | 126]) + length.to_bytes(2, "big"))
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def drain(self) -> int:
        """Read what the server sent until it closed the connection; the bytes read."""
        self.sock.settimeout(15)
        total = 0
        try:
            while chunk := self.sock.recv(1 << 20):
                total += len(chunk)
        except ConnectionResetError:
            pass
        return total


def test_a_client_that_never_reads_is_dropped_without_memory_growth(server):
    """Each load answers ~1 MB; 60 of them, unread, would hold 60 MB if nothing bounded them."""
    big = {"measures": ["live.live_events"], "timeDimensions": [
        {"dimension": "live.metric_time", "granularity": "minute"}], "limit": 10000}
    with _ws(server, server.admin) as reader:
        answer = _answer(reader, "warm", "load", big)
    size = len(orjson.dumps(answer))
    assert size > 500_000

    with PeakMemory(server.pid) as memory:
        silent = SilentClient(server.port)
        silent.send({"authorization": server.admin})
        for i in range(60):
            silent.send({"messageId": i, "method": "load", "params": {"query": big}})
        with _ws(server, server.token("t002")) as other:  # served meanwhile
            assert _answer(other, "o")["status"] == 200
        time.sleep(1)
    assert memory.grown_mib < 40, f"the server's memory grew by {memory.grown_mib:.0f} MiB"
    received = silent.drain()  # the connection ends, with far less than the 60 answers sent
    assert received < 20 * size
