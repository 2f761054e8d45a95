"""The collector benchmark's ceilings do the work they stand for: the least mapping writes the
collector's own lines, and the least de-duplication claims each id once across processes."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime

from bench import least_mapping
from bench.collector import MARK, TENANT, template
from bench.least_claims import Claims
from ingestion.collector.intake import Rules, split_batch, take_in, valid_utf8
from ingestion.collector.settings import Settings
from ingestion.privacy import Privacy


def test_the_least_mapping_writes_the_collectors_own_lines():
    body = template(100, "2026-11-20T10:04:00.000Z").replace(MARK, b"%010d" % 7)
    received = datetime(2026, 11, 20, 10, 4, 30, 250000, tzinfo=UTC)
    settings = Settings()
    raws, envelope = split_batch(body)
    rules = Rules(TENANT, received, settings.min_timestamp, settings.max_event_bytes, Privacy(settings.privacy))
    collector = take_in(raws, None, rules, envelope.sentAt, lambda i: f"batch[{i}]", valid_utf8(body))
    ids, lines = least_mapping.lines(body, received, TENANT)
    assert ids == collector.event_ids and len(ids) == 100
    assert lines == collector.event_lines


def _claim(path: str, ids: list[str], results) -> None:
    results.put(int(Claims(path, slots=1 << 10).claim(ids).sum()))


def test_the_least_claims_take_each_id_once_across_processes(tmp_path, monkeypatch):
    """Processes under one PYTHONHASHSEED, as the benchmark starts its workers; a table of 1,024 slots,
    so that ids probe past others' slots and ids of one batch probe the same slot."""
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    path, context = str(tmp_path / "claims"), multiprocessing.get_context("spawn")
    results = context.Queue()
    claimed = []
    for ids in ([f"a{i}" for i in range(100)], [f"a{i}" for i in range(50, 400)], [f"a{i}" for i in range(450)]):
        worker = context.Process(target=_claim, args=(path, ids, results))
        worker.start()
        worker.join(timeout=60)
        claimed.append(results.get(timeout=5))
    assert claimed == [100, 300, 50]
    assert int((Claims(path, slots=1 << 10).table != 0).sum()) == 450
