"""kill -9 harness: the whole collector is killed several times under load; batches left unanswered
are retried after each restart, and some acknowledged ones are resent. Every acknowledged id is
stored exactly once, and a retry of an acknowledged batch is answered as duplicates."""

from __future__ import annotations

import asyncio
import random

import httpx
import orjson

from ingestion import pipelines
from ingestion.collector.id_index import IdIndex
from ingestion.collector.landing_writer import LandingUnavailable, LandingWriter
from ingestion.paths import DataLayout
from tests.ingestion.collector_process import collector
from tests.ingestion.conftest import landed
from tests.ingestion.helpers import load, query

T001 = {"Authorization": "Bearer key-t001"}
CRASHES = 3


def batch(number: int, size: int = 20) -> bytes:
    return orjson.dumps({"batch": [
        {"type": "track", "event": "feature_used", "messageId": f"crash-{number}-{i}", "userId": f"u{i}",
         "properties": {"feature": "search"}} for i in range(size)]})


async def send(url: str, queue: list[int], acknowledged: dict[int, dict], unanswered: list[int]) -> None:
    async with httpx.AsyncClient(headers=T001, timeout=10) as client:
        while queue:
            number = queue.pop()
            try:
                reply = await client.post(f"{url}/v1/batch", content=batch(number))
            except httpx.HTTPError:
                unanswered.append(number)  # the collector died under us: never acknowledged, retried later
                return
            if reply.status_code == 200:
                acknowledged[number] = reply.json()
            else:
                unanswered.append(number)


async def load_then_kill(running, queue, acknowledged, unanswered, kill_after: int) -> None:
    senders = [asyncio.ensure_future(send(running.url, queue, acknowledged, unanswered)) for _ in range(4)]
    while len(acknowledged) < kill_after and queue:
        await asyncio.sleep(0.01)
    running.kill_9()
    await asyncio.gather(*senders)


def test_kill_9_several_times_every_acknowledged_id_is_stored_exactly_once(tmp_path):
    layout = DataLayout(tmp_path / "data")
    acknowledged: dict[int, dict] = {}
    unanswered: list[int] = []
    numbers = iter(range(10_000))
    rng = random.Random(7)
    resent: list[int] = []
    for crash in range(CRASHES):
        with collector(layout, rotate_seconds=60) as running:  # files stay open: the kill leaves them in incoming/
            # first the retries: unanswered batches, and a few acknowledged ones sent again
            again = sorted(rng.sample(sorted(acknowledged), min(5, len(acknowledged))))
            for number in unanswered + again:
                reply = httpx.post(f"{running.url}/v1/batch", content=batch(number), headers=T001)
                assert reply.status_code == 200, reply.text
                if number in acknowledged:
                    assert reply.json()["duplicates"] == 20 and reply.json()["accepted"] == 0
                    resent.append(number)
                acknowledged.setdefault(number, reply.json())
            unanswered.clear()
            queue = [next(numbers) for _ in range(400)]
            queue.reverse()
            asyncio.run(load_then_kill(running, queue, acknowledged, unanswered, len(acknowledged) + 60 + 40 * crash))
        assert list(layout.incoming_dir.glob("*.jsonl")), f"crash {crash}: the kill should leave open files"
        with open(sorted(layout.incoming_dir.glob("collector-*.jsonl"))[-1], "ab") as torn:
            torn.write(b'{"event_id": "torn-write", "event_ty')  # a write the kill interrupted
    left_open = len(list(layout.incoming_dir.glob("*.jsonl")))  # one per landing writer that had written
    with collector(layout) as running:
        for number in unanswered:
            assert httpx.post(f"{running.url}/v1/batch", content=batch(number), headers=T001).status_code == 200
            acknowledged[number] = {}
        assert f"collector_recovered_files_total {float(left_open)}" in httpx.get(f"{running.url}/metrics").text
    assert len(resent) >= 5
    stored = [e["event_id"] for e in landed(layout.events_dir)]
    assert len(stored) == len(set(stored)), "an event was stored twice"
    expected = {f"crash-{n}-{i}" for n in acknowledged for i in range(20)}
    assert expected <= set(stored) and "torn-write" not in stored
    assert not list(layout.incoming_dir.glob("*.jsonl"))
    load(layout, pipelines.EVENTS)
    assert query(layout, "select count(*), count(distinct event_id) from raw_events.events")[0] == (len(stored),) * 2


def test_a_full_disk_fails_the_round_and_cuts_nothing_into_the_file(tmp_path):
    layout = DataLayout(tmp_path / "data")
    index = IdIndex(layout.collector_dir / "ids", 7)
    writer = LandingWriter(layout, index, max_bytes=1 << 20, max_age=60)
    writer.write_round([b'{"event_id": "a"}\n'], [], [], ["a"])
    writer.rotate(force=True)
    full = layout.incoming_dir / f"{writer.events.prefix}-{writer.events.sequence + 1:06d}.jsonl"
    full.symlink_to("/dev/full")  # the next file the writer opens: every write fails with ENOSPC
    try:
        writer.write_round([b'{"event_id": "b"}\n'], [], [], ["b"])
        raise AssertionError("the round should fail")
    except LandingUnavailable as exc:
        assert "No space left" in str(exc)
    assert not full.exists() and not full.is_symlink()  # the failed file was dropped; the next round opens another
    writer.write_round([b'{"event_id": "c"}\n'], [], [], ["c"])
    writer.close()
    assert [e["event_id"] for e in landed(layout.events_dir)] == ["a", "c"]
    again = IdIndex(layout.collector_dir / "ids", 7)
    again.load()
    assert "a" in again and "c" in again and "b" not in again  # only stored ids were journaled


def test_the_id_journal_skips_a_torn_line_and_forgets_days_past_the_window(tmp_path):
    from datetime import UTC, date, datetime

    index = IdIndex(tmp_path / "ids", 7)
    index.journal(["old"], datetime(2026, 11, 1, 12, tzinfo=UTC))
    index.journal(["kept-1", "kept-2"], datetime(2026, 11, 10, 23, 59, tzinfo=UTC))
    index.close()
    with open(tmp_path / "ids" / "2026-11-10.ids", "ab") as torn:
        torn.write(b'["torn')
    fresh = IdIndex(tmp_path / "ids", 7)
    assert fresh.load(date(2026, 11, 17)) == 2  # 11-10 is kept through 11-17; 11-01 is gone
    assert "kept-1" in fresh and "old" not in fresh
    assert not (tmp_path / "ids" / "2026-11-01.ids").exists()
    assert fresh.expire(date(2026, 11, 18)) == 2 and "kept-1" not in fresh
