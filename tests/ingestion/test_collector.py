"""The event collector, as a real server on loopback: what it stores, what it refuses (4xx naming
the field, the valid events of the batch stored), honest 429/503, /health, /metrics, the data
directory's lock, and nothing acknowledged ever lost."""

from __future__ import annotations

import base64
import gzip
import shutil
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest

from ingestion import pipelines
from ingestion.paths import DataLayout
from tests.conftest import REPO_ROOT
from tests.ingestion.collector_process import collector, collector_env
from tests.ingestion.conftest import landed, wait_landed
from tests.ingestion.helpers import load, query

T001 = {"Authorization": "Bearer key-t001"}


def event(event_id: str, **changes) -> dict:
    base = {"event_id": event_id, "event_type": "page_view", "timestamp": "2026-11-20T10:00:00Z",
            "tenant_id": "t001", "user_id": "u1", "session_id": "s1", "properties": {"path": "/"}, "context": {}}
    return {**base, **changes}


@pytest.fixture
def layout(tmp_path) -> DataLayout:
    return DataLayout(tmp_path / "data")


def test_a_batch_stores_valid_events_refuses_each_invalid_one_and_they_load(layout):
    future = (datetime.now(UTC) + timedelta(hours=3)).isoformat()
    batch = [
        event("ok-1"),
        event("bad-type", event_type="teleport"),
        {k: v for k, v in event("no-session").items() if k != "session_id"},
        event("wrong-type", properties={"path": 42}),
        event("future", timestamp=future),
        event("ok-1", user_id="someone-else"),
        event("ok-2", event_type="add_to_cart", properties={"product_id": "p1", "quantity": 2, "price": 9.5}),
    ]
    with collector(layout) as running:
        url = running.url
        reply = httpx.post(f"{url}/v1/batch", json={"batch": batch}, headers=T001)
        assert reply.status_code == 400
        body = reply.json()
        assert body["accepted"] == 2 and body["duplicates"] == 0 and body["quarantine"] == "kept"
        assert body["code"] == "invalid_events"
        assert body["message"].startswith("batch[1].event_type: unknown event type")
        assert [(r["index"], r["field"]) for r in body["rejected"]] == [
            (1, "event_type"), (2, "session_id"), (3, "properties.path"), (4, "timestamp"), (5, "event_id")]
        assert "duplicate of batch[0]" in body["rejected"][4]["reason"]
        assert "future" in body["rejected"][3]["reason"]
        single = httpx.post(f"{url}/v1/events", json=event("bad", event_type="teleport"), headers=T001)
        assert single.status_code == 400 and single.json()["field"] == "event_type"
        ok = httpx.post(f"{url}/v1/events", json=event("ok-3"), headers=T001)
        assert ok.status_code == 200 and ok.json() == {"success": True, "accepted": 1, "duplicates": 0, "rejected": []}
    assert sorted(e["event_id"] for e in landed(layout.events_dir)) == ["ok-1", "ok-2", "ok-3"]
    held = landed(layout.quarantine_dir)
    assert [(q["where"], q["field"]) for q in held][:5] == [
        ("batch[1]", "event_type"), ("batch[2]", "session_id"), ("batch[3]", "properties.path"),
        ("batch[4]", "timestamp"), ("batch[5]", "event_id")]
    assert held[1]["event"]["event_id"] == "no-session" and held[-1]["where"] == "event"
    assert not list(layout.incoming_dir.iterdir())  # a clean stop closes every open file into events/
    load(layout, pipelines.EVENTS)
    assert query(layout, "select event_id from raw_events.events order by 1") == [("ok-1",), ("ok-2",), ("ok-3",)]


@pytest.mark.parametrize(("name", "bad", "field", "words"), [
    ("utf8", b'{"event_id": "X", "event_type": "page_view", "timestamp": "2026-11-20T10:00:00Z", "tenant_id": "t001",'
             b' "user_id": "u1", "session_id": "s1", "properties": {"path": "/caf\xe9"}}',
     "properties.path", "invalid UTF-8"),
    ("surrogate", orjson.dumps(event("X")).replace(b'"path":"/"', b'"path":"\\ud800"'), "properties.path",
     "lone UTF-16 surrogate"),
    ("bigint", orjson.dumps(event("X")).replace(b'"path":"/"', b'"path":"/","n":123456789012345678901234567890'),
     "properties.n", "64-bit"),
    ("deep300", orjson.dumps(event("X")).replace(b'"path":"/"', b'"path":"/","d":' + b"[" * 300 + b"]" * 300),
     "properties.d", "nested deeper than 254 levels"),
    ("late", orjson.dumps(event("X", timestamp="9999-12-31T23:59:59-01:00")), "timestamp", "years 1 to 9999"),
    ("early", orjson.dumps(event("X", timestamp="0001-01-01T00:00:00+01:00")), "timestamp", "years 1 to 9999"),
    ("before-bound", orjson.dumps(event("X", timestamp="1999-12-31T23:59:59Z")), "timestamp", "lower bound 2000-01-01"),
    ("too-big", orjson.dumps(event("X", properties={"path": "/", "blob": "x" * 40_000})), "event",
     "above the per-event limit of 32,768"),
])
def test_each_bad_input_is_refused_naming_its_field_and_the_rest_of_the_batch_is_stored(
        shared_collector, name, bad, field, words):
    layout, running = shared_collector
    good = [orjson.dumps(event(f"{name}-ok-{i}")) for i in range(2)]
    body = b'{"batch": [' + b",".join([good[0], bad.replace(b'"X"', f'"{name}-bad"'.encode()), good[1]]) + b"]}"
    reply = httpx.post(f"{running.url}/v1/batch", content=body, headers=T001)
    assert reply.status_code == 400, reply.text
    answer = reply.json()
    assert answer["message"].startswith(f"batch[1].{field}: ") and words in answer["message"], answer["message"]
    assert (answer["code"], answer["field"], answer["accepted"]) == ("invalid_events", field, 2)
    stored = wait_landed(layout.events_dir, f"{name}-", 2)
    assert sorted(e["event_id"] for e in stored) == [f"{name}-ok-0", f"{name}-ok-1"]
    held = wait_landed(layout.quarantine_dir, f"{name}-bad", 1)
    assert [(q["where"], q["field"]) for q in held] == [("batch[1]", field)]


def test_requests_refused_whole_name_the_fault_and_store_nothing(shared_collector):
    layout, running = shared_collector

    def post(body: bytes, path: str = "/v1/batch", headers=T001) -> httpx.Response:
        return httpx.post(f"{running.url}{path}", content=body, headers=headers, timeout=30)

    batch = orjson.dumps([event("whole-x")])
    cases = [
        (post(b"[" * 5000 + b"]" * 5000), 400, "body: nested deeper than the parser's limit"),
        (post(b'{"batch": [nope'), 400, "body: not valid JSON"),
        (post(b'{"events": []}'), 400, 'expected {"batch"'),
        (post(b"\xff\xfe"), 400, "body: expected"),
        (post(orjson.dumps([event(f"whole-{i}") for i in range(20_001)])), 413, "batch: 20001 events"),
        (post(b"[" + b" " * (9 << 20) + b"]"), 413, "body:"),
        (post(gzip.compress(b"[" + b" " * (9 << 20) + b"]"), headers={**T001, "Content-Encoding": "gzip"}), 413,
         "once decompressed"),
        (post(b"not gzip", headers={**T001, "Content-Encoding": "gzip"}), 400, "not valid gzip"),
        (post(batch, headers={**T001, "Content-Encoding": "br"}), 415, "Content-Encoding: 'br'"),
        (post(batch, headers={}), 401, "missing write key"),
        (post(batch, headers={"Authorization": "Bearer stolen"}), 401, "unknown write key"),
        (post(batch, headers={"Authorization": "Basic !!!"}), 401, "not valid Basic credentials"),
        (post(orjson.dumps([event("whole-mine"), event("whole-theirs", tenant_id="t002")])), 403,
         "batch[1].tenant_id"),
    ]
    for reply, status, message in cases:
        assert reply.status_code == status, reply.text
        body = reply.json()
        assert message in body["message"] and body["code"] and body["success"] is False
    metrics = httpx.get(f"{running.url}/metrics").text
    assert 'collector_requests_total{route="/v1/batch",status="403"}' in metrics
    assert 'collector_requests_total{route="/v1/batch",status="415"}' in metrics
    assert landed(layout.events_dir, "whole-") == [] and landed(layout.quarantine_dir, "whole-") == []


def test_metrics_count_the_statuses_really_sent(shared_collector):
    _, running = shared_collector

    def count(text: str, status: str) -> float:
        line = f'collector_requests_total{{route="/v1/events",status="{status}"}} '
        return next((float(row[len(line):]) for row in text.splitlines() if row.startswith(line)), 0.0)

    before = httpx.get(f"{running.url}/metrics").text
    assert httpx.post(f"{running.url}/v1/events", json=event("metric-ok"), headers=T001).status_code == 200
    for _ in range(2):
        bad = event("metric-bad", timestamp="9999-12-31T23:59:59-01:00")
        assert httpx.post(f"{running.url}/v1/events", json=bad, headers=T001).status_code == 400
    after = httpx.get(f"{running.url}/metrics").text
    assert count(after, "200") - count(before, "200") == 1
    assert count(after, "400") - count(before, "400") == 2
    assert count(after, "500") == 0


def test_identical_batches_sent_at_the_same_moment_are_stored_once(shared_collector):
    """Two workers, 20 tries: each pair of identical batches is stored once, and the two replies
    together account for every event once (one stores it, the other answers it as a duplicate)."""
    layout, running = shared_collector
    with ThreadPoolExecutor(2) as pool, httpx.Client(headers=T001) as http:
        for attempt in range(20):
            body = orjson.dumps([event(f"twin-{attempt}-{i}") for i in range(20)])
            replies = list(pool.map(lambda b: http.post(f"{running.url}/v1/batch", content=b), [body, body]))
            assert [r.status_code for r in replies] == [200, 200]
            assert sum(r.json()["accepted"] for r in replies) == 20
            assert sum(r.json()["duplicates"] for r in replies) == 20
    stored = wait_landed(layout.events_dir, "twin-", 400)
    assert len(stored) == 400 and len({e["event_id"] for e in stored}) == 400


def test_a_second_collector_on_the_same_data_directory_refuses_to_start(shared_collector):
    layout, running = shared_collector
    second = subprocess.run([sys.executable, "-m", "ingestion.collector", "--port", "0"], cwd=REPO_ROOT,
                            env=collector_env(layout), capture_output=True, text=True, timeout=60)
    assert second.returncode != 0
    assert f"another collector is running on {layout.root}" in second.stderr
    assert str(running.process.pid) in second.stderr
    assert httpx.get(f"{running.url}/health").json()["status"] == "ok"  # the first one is untouched


def test_a_port_in_use_is_refused_rather_than_shared(layout):
    """Each worker listens with SO_REUSEPORT: without a check, a second server could share the port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = subprocess.run([sys.executable, "-m", "ingestion.collector", "--port", str(port)], cwd=REPO_ROOT,
                                 env=collector_env(layout), capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and f"cannot listen on 127.0.0.1:{port}" in refused.stderr


def test_an_unwritable_landing_zone_gets_503_health_says_so_and_nothing_unstored_is_acknowledged(layout):
    with collector(layout) as running:
        url = running.url
        shutil.rmtree(layout.incoming_dir)
        layout.incoming_dir.write_text("not a directory")  # root ignores permissions; this fails for anyone
        refused = httpx.post(f"{url}/v1/batch", json=[event("lost")], headers=T001)
        assert refused.status_code == 503 and "nothing from this request was stored" in refused.json()["message"]
        assert refused.headers["retry-after"] == "1" and refused.json()["code"] == "landing_unavailable"
        health = httpx.get(f"{url}/health")
        assert health.status_code == 503 and health.json()["status"] == "unavailable"
        assert "incoming" in health.json()["problem"]
        layout.incoming_dir.unlink()
        layout.incoming_dir.mkdir()
        deadline = datetime.now(UTC) + timedelta(seconds=10)
        while httpx.get(f"{url}/health").status_code != 200:  # the landing process probes every second
            assert datetime.now(UTC) < deadline
        assert httpx.post(f"{url}/v1/batch", json=[event("kept")], headers=T001).json()["accepted"] == 1
    assert [e["event_id"] for e in landed(layout.events_dir)] == ["kept"]


def test_a_full_landing_zone_is_reported_by_health_and_refused_with_503(layout):
    with collector(layout, COLLECTOR_MIN_FREE_BYTES=str(1 << 60)) as running:
        health = httpx.get(f"{running.url}/health")
        assert health.status_code == 503 and "is full" in health.json()["problem"]
        refused = httpx.post(f"{running.url}/v1/batch", json=[event("lost")], headers=T001)
        assert refused.status_code == 503 and "is full" in refused.json()["message"]
        assert 'collector_landing_writable 0.0' in httpx.get(f"{running.url}/metrics").text


def test_an_unwritable_quarantine_or_a_failing_rotation_never_turns_stored_events_into_an_error(layout):
    with collector(layout, rotate_seconds=0.2) as running:
        url = running.url
        shutil.rmtree(layout.quarantine_dir)
        layout.quarantine_dir.write_text("not a directory")
        reply = httpx.post(f"{url}/v1/batch", json=[event("stored-1"), event("bad", event_type="x")], headers=T001)
        assert reply.status_code == 400
        assert reply.json()["accepted"] == 1 and reply.json()["quarantine"].startswith("not kept: cannot write")
        layout.quarantine_dir.unlink()
        layout.quarantine_dir.mkdir()
        # the rename into events/ fails after the fsync: the events are stored and acknowledged anyway
        shutil.rmtree(layout.events_dir)
        layout.events_dir.write_text("not a directory")
        reply = httpx.post(f"{url}/v1/batch", json=[event("stored-2")], headers=T001)
        assert reply.status_code == 200 and reply.json()["accepted"] == 1
        health = httpx.get(f"{url}/health")
        for _ in range(50):
            if health.status_code == 503:
                break
            health = httpx.get(f"{url}/health")
        assert health.status_code == 503 and "cannot move" in health.json()["problem"]
        layout.events_dir.unlink()
        layout.events_dir.mkdir()
    assert sorted(e["event_id"] for e in landed(layout.events_dir)) == ["stored-1", "stored-2"]
    assert not list(layout.incoming_dir.glob("*.jsonl"))


def test_segment_routes_auth_forms_gzip_and_clock_skew(shared_collector):
    """Each call of the tracking API on its own route; the key as Basic user name, Bearer, X-Write-Key
    or the body's writeKey; gzip'd bodies; timestamps moved by the client's clock error (sentAt)."""
    layout, running = shared_collector
    basic = {"Authorization": "Basic " + base64.b64encode(b"key-t002:").decode()}
    skewed = {"sentAt": "2026-11-20T10:05:00Z", "timestamp": "2026-11-20T10:00:00Z"}  # sent 5 minutes after
    calls = [
        ("/v1/track", basic, {"event": "Signed Up", "userId": "u", "messageId": "route-track",
                              "properties": {"plan": "pro"}, **skewed}),
        ("/v1/page", T001, {"userId": "u", "messageId": "route-page", "context": {"page": {"url": "https://x/a?b"}},
                            "writeKey": "ignored-when-a-header-has-one"}),
        ("/v1/screen", {"X-Write-Key": "key-t001"}, {"anonymousId": "a", "name": "Home", "messageId": "route-screen"}),
        ("/v1/identify", {}, {"writeKey": "key-t001", "userId": "u", "traits": {"plan": "pro"},
                              "messageId": "route-identify"}),
        ("/v1/group", basic, {"userId": "u", "groupId": "g", "messageId": "route-group"}),
        ("/v1/alias", basic, {"userId": "u", "previousId": "a", "messageId": "route-alias"}),
    ]
    for path, headers, body in calls:
        data = gzip.compress(orjson.dumps(body))
        reply = httpx.post(f"{running.url}{path}", content=data, headers={**headers, "Content-Encoding": "gzip"})
        assert reply.status_code == 200 and reply.json()["accepted"] == 1, (path, reply.text)
    refused = httpx.post(f"{running.url}/v1/alias", json={"userId": "u", "messageId": "route-bad"}, headers=basic)
    assert refused.status_code == 400 and refused.json()["message"].startswith("event.previousId: ")
    events = {e["event_id"]: e for e in wait_landed(layout.events_dir, "route-", 3)}
    received = datetime.fromisoformat(events["route-track"]["context"]["segment"]["received_at"])
    corrected = datetime.fromisoformat(events["route-track"]["timestamp"])
    assert received - corrected == timedelta(minutes=5)  # receivedAt - (sentAt - timestamp)
    assert (events["route-track"]["tenant_id"], events["route-track"]["event_type"]) == ("t002", "signup")
    assert events["route-page"]["properties"]["path"] == "/a" and events["route-screen"]["properties"]["path"] == "Home"
    profiles = {p["message_id"]: p for p in wait_landed(layout.profiles_dir, "route-", 3)}
    assert {k: p["call"] for k, p in profiles.items()} == {
        "route-identify": "identify", "route-group": "group", "route-alias": "alias"}
    again = httpx.post(f"{running.url}/v1/identify", headers=T001,
                       json={"userId": "u", "traits": {"plan": "pro"}, "messageId": "route-identify"})
    assert again.json()["duplicates"] == 1  # message ids are de-duplicated for profile calls too
