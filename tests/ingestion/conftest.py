"""Fixtures of the collector's tests: one collector shared by the tests that only read its replies
and the files of their own event ids."""

from __future__ import annotations

import time

import orjson
import pytest

from ingestion.paths import DataLayout
from tests.ingestion.collector_process import Running, collector


@pytest.fixture(scope="session")
def shared_collector(tmp_path_factory) -> tuple[DataLayout, Running]:
    layout = DataLayout(tmp_path_factory.mktemp("shared-collector") / "data")
    with collector(layout, rotate_seconds=0.2) as running:
        yield layout, running


def _belongs(record: dict, prefix: str) -> bool:
    if "where" in record:  # a quarantine line: the refused event, or its text when it was not JSON
        held = record.get("event") if isinstance(record.get("event"), dict) else {}
        return str(held.get("event_id") or held.get("messageId") or "").startswith(prefix) or (
            prefix in record.get("raw", "") if prefix else True)
    return str(record.get("event_id") or record.get("message_id")).startswith(prefix)


def landed(directory, prefix: str = "") -> list[dict]:
    """The records in closed landing files (events, profiles or quarantine) whose id starts with `prefix`."""
    records = [orjson.loads(line) for path in sorted(directory.glob("*.jsonl"))
               for line in path.read_bytes().splitlines()]
    return [r for r in records if _belongs(r, prefix)]


def wait_landed(directory, prefix: str, count: int, timeout: float = 10) -> list[dict]:
    """Wait until `count` records of `prefix` are in closed files (the collector closes them every 0.2 s)."""
    deadline = time.monotonic() + timeout
    while True:
        found = landed(directory, prefix)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)
