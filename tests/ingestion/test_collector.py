"""The event collector, as a real server on loopback: what it stores, what it refuses, and that
nothing it acknowledged is ever lost, through a kill -9, a full disk and an unwritable landing zone.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest

from ingestion import pipelines
from ingestion.collector.app import Collector, RejectedRequest, Settings
from ingestion.collector.landing_writer import LandingUnavailable, LandingWriter
from ingestion.paths import DataLayout
from tests.ingestion.collector_process import KEYS, collector
from tests.ingestion.helpers import load, query

T001 = {"Authorization": "Bearer key-t001"}


def event(event_id: str, **changes) -> dict:
    base = {"event_id": event_id, "event_type": "page_view", "timestamp": "2026-11-20T10:00:00Z",
            "tenant_id": "t001", "user_id": "u1", "session_id": "s1", "properties": {"path": "/"}, "context": {}}
    return {**base, **changes}


def stored_lines(layout: DataLayout) -> list[dict]:
    return [orjson.loads(line) for path in sorted(layout.events_dir.glob("collector-*.jsonl"))
            for line in path.read_bytes().splitlines()]


def quarantined(layout: DataLayout) -> list[dict]:
    return [orjson.loads(line) for path in sorted(layout.quarantine_dir.glob("collector-*.jsonl"))
            for line in path.read_bytes().splitlines()]


@pytest.fixture
def layout(tmp_path) -> DataLayout:
    return DataLayout(tmp_path / "data")


def test_a_batch_stores_valid_events_reports_each_invalid_one_and_they_load(layout):
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
        assert reply.status_code == 200
        body = reply.json()
        assert body["accepted"] == 2 and body["duplicates"] == 0
        assert [(r["index"], r["field"]) for r in body["rejected"]] == [
            (1, "event_type"), (2, "session_id"), (3, "properties.path"), (4, "timestamp"), (5, "event_id")]
        assert "duplicate of batch[0]" in body["rejected"][4]["reason"]
        assert "future" in body["rejected"][3]["reason"]
        single = httpx.post(f"{url}/v1/events", json=event("bad", event_type="teleport"), headers=T001)
        assert single.status_code == 400 and single.json()["field"] == "event_type"
    assert sorted(e["event_id"] for e in stored_lines(layout)) == ["ok-1", "ok-2"]
    held = quarantined(layout)
    assert [(q["where"], q["field"]) for q in held][:5] == [
        ("batch[1]", "event_type"), ("batch[2]", "session_id"), ("batch[3]", "properties.path"),
        ("batch[4]", "timestamp"), ("batch[5]", "event_id")]
    assert held[1]["event"]["event_id"] == "no-session" and held[-1]["where"] == "event"
    assert not list(layout.incoming_dir.iterdir())  # every open file was closed into events/
    load(layout, pipelines.EVENTS)
    assert query(layout, "select event_id from raw_events.events order by 1") == [("ok-1",), ("ok-2",)]


def test_a_retried_event_is_acknowledged_and_stored_once(layout):
    with collector(layout) as running:
        url = running.url
        first = httpx.post(f"{url}/v1/batch", json=[event("a"), event("b")], headers=T001).json()
        again = httpx.post(f"{url}/v1/batch", json=[event("b"), event("c")], headers=T001).json()
        assert (first["accepted"], again["accepted"], again["duplicates"]) == (2, 1, 1)
    assert sorted(e["event_id"] for e in stored_lines(layout)) == ["a", "b", "c"]


def test_requests_refused_whole_name_the_fault_and_store_nothing(layout):
    with collector(layout) as running:
        url = running.url
        def post(body: bytes, path: str = "/v1/batch", headers=T001) -> httpx.Response:
            return httpx.post(f"{url}{path}", content=body, headers=headers, timeout=30)

        cases = [
            (post(b'{"batch": [nope'), 400, "body: not valid JSON"),
            (post(b'{"events": []}'), 400, 'expected {"batch"'),
            (post(orjson.dumps([event(f"e{i}") for i in range(20_001)])), 413, "batch: 20001 events"),
            (post(b"[" + b" " * (9 << 20) + b"]"), 413, "body:"),
            (post(orjson.dumps([event("x")]), headers={}), 401, "missing write key"),
            (post(orjson.dumps([event("x")]), headers={"Authorization": "Bearer stolen"}), 401, "unknown write key"),
            (post(orjson.dumps([event("mine"), event("theirs", tenant_id="t002")])), 403, "batch[1].tenant_id"),
        ]
        for reply, status, message in cases:
            assert reply.status_code == status, reply.text
            assert message in reply.json()["error"]
        metrics = httpx.get(f"{url}/metrics").text
        assert 'collector_requests_total{route="batch",status="403"} 1' in metrics
    assert stored_lines(layout) == [] and quarantined(layout) == []


def test_an_unwritable_landing_zone_gets_503_and_nothing_unstored_is_acknowledged(layout):
    with collector(layout) as running:
        url = running.url
        layout.incoming_dir.rmdir()
        layout.incoming_dir.write_text("not a directory")  # root ignores permissions; this fails for anyone
        refused = httpx.post(f"{url}/v1/batch", json=[event("lost")], headers=T001)
        assert refused.status_code == 503 and "nothing from this request was stored" in refused.json()["error"]
        assert refused.headers["retry-after"] == "1"
        layout.incoming_dir.unlink()
        layout.incoming_dir.mkdir()
        assert httpx.post(f"{url}/v1/batch", json=[event("kept")], headers=T001).json()["accepted"] == 1
    assert [e["event_id"] for e in stored_lines(layout)] == ["kept"]


def test_a_full_disk_fails_the_round_and_cuts_nothing_into_the_file(layout, tmp_path):
    async def scenario():
        writer = LandingWriter(layout, max_age=60)
        writer.start()
        await writer.append([b'{"event_id": "a"}\n'], [])
        writer.events.close()
        full = layout.incoming_dir / f"{writer.events.prefix}-{writer.events.sequence + 1:06d}.jsonl"
        full.symlink_to("/dev/full")  # the next file the writer opens: every write fails with ENOSPC
        with pytest.raises(LandingUnavailable, match="No space left"):
            await writer.append([b'{"event_id": "b"}\n'], [])
        assert not full.is_symlink()  # the failed, empty file was dropped; the next round opens another
        await writer.append([b'{"event_id": "c"}\n'], [])
        await writer.close()

    asyncio.run(scenario())
    assert [e["event_id"] for e in stored_lines(layout)] == ["a", "c"]


def test_backpressure_answers_429_with_retry_after(layout):
    async def scenario():
        service = Collector(layout, KEYS, Settings(max_pending_bytes=10))
        service.writer = LandingWriter(layout, max_pending_bytes=10)  # not started: nothing drains
        stuck = asyncio.ensure_future(service.writer.append([b"x" * 100 + b"\n"], []))
        await asyncio.sleep(0)
        with pytest.raises(RejectedRequest) as refused:
            await service._store([event("a")], lambda i: f"batch[{i}]")
        stuck.cancel()
        return refused.value

    refused = asyncio.run(scenario())
    assert refused.status == 429 and refused.headers == {"Retry-After": "1"}


def test_kill_9_mid_load_then_restart_every_acknowledged_event_is_there_once(layout):
    acknowledged: list[str] = []

    async def send(url: str, client_id: int, stop: asyncio.Event):
        async with httpx.AsyncClient(headers=T001, timeout=10) as client:
            for n in range(10_000):
                if stop.is_set():
                    return
                batch = [event(f"c{client_id}-{n}-{i}") for i in range(200)]
                try:
                    reply = await client.post(f"{url}/v1/batch", content=orjson.dumps(batch))
                except httpx.HTTPError:
                    return  # the server died under us: this batch was never acknowledged
                if reply.status_code == 200:
                    acknowledged.extend(e["event_id"] for e in batch)

    async def load_until_killed(url: str, process: subprocess.Popen):
        stop = asyncio.Event()
        senders = [asyncio.ensure_future(send(url, c, stop)) for c in range(4)]
        while len(acknowledged) < 20_000:
            await asyncio.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        stop.set()
        await asyncio.gather(*senders)

    # files stay open for a minute: the kill leaves them in incoming/
    with collector(layout, rotate_seconds=60) as running:
        asyncio.run(load_until_killed(running.url, running.process))
    left_open = list(layout.incoming_dir.glob("*.jsonl"))
    assert left_open, "the kill should leave an open file behind"
    with open(left_open[0], "ab") as torn:
        torn.write(b'{"event_id": "torn-write", "event_ty')  # a write the kill interrupted
    with collector(layout) as running:
        url = running.url
        assert "collector_recovered_files_total 1" in httpx.get(f"{url}/metrics").text
    stored = [e["event_id"] for e in stored_lines(layout)]
    assert len(stored) == len(set(stored)), "an event was stored twice"
    assert set(acknowledged) <= set(stored) and len(acknowledged) >= 20_000
    assert "torn-write" not in stored
    load(layout, pipelines.EVENTS)
    assert query(layout, "select count(*), count(distinct event_id) from raw_events.events")[0] == (len(stored),) * 2
