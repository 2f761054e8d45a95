"""The landing archive: a landing file kept as Parquet comes back byte for byte with its landing time,
can be queried by its keys, loses a person's lines on request, and refuses to read back when damaged."""

from __future__ import annotations

import os

import duckdb
import pyarrow.compute as pc
import pytest

from ingestion import archive
from ingestion.paths import DataLayout
from tests.ingestion.helpers import event_line

LANDED_NS = 1_790_000_000_123_456_789


@pytest.fixture
def landed(tmp_path) -> tuple[DataLayout, os.PathLike]:
    layout = DataLayout(tmp_path / "data")
    layout.events_dir.mkdir(parents=True)
    path = layout.events_dir / "events_x.jsonl"
    # every kind of line a loader meets: events of two people, CRLF, a line that is not JSON, bad UTF-8
    path.write_bytes(event_line("e1") + b"\n" + event_line("e2", user_id="u0000002") + b"\r\n"
                     + b"not json \xff\xfe\n" + event_line("e3", anonymous_id="a9", user_id=None))
    os.utime(path, ns=(LANDED_NS, LANDED_NS))
    return layout, path


def test_an_archived_file_comes_back_byte_for_byte(landed):
    layout, path = landed
    original = path.read_bytes()
    entry = archive.archive_file(layout, archive.EVENTS, path)
    path.unlink()
    [found] = archive.archived(layout, archive.EVENTS)
    assert (found.name, found.lines, found.bytes) == ("events_x.jsonl", 4, len(original))
    assert found.landed_ns == entry.landed_ns == LANDED_NS
    assert archive.contents(found) == original
    back = archive.restore_file(found, layout.events_dir)
    assert back.read_bytes() == original and back.stat().st_mtime_ns == LANDED_NS
    # queryable by its keys, as the docstring says
    with duckdb.connect() as conn:
        rows = conn.execute(f"select line_number, event_id, user_id, anonymous_id from read_parquet("
                            f"'{found.path}') order by 1").fetchall()
    assert rows == [(1, "e1", "u0000001", None), (2, "e2", "u0000002", None), (3, None, None, None),
                    (4, "e3", None, "a9")]


def test_a_persons_lines_leave_the_archive_and_the_landing_file(landed):
    layout, path = landed
    landing_copy = path.with_name("events_y.jsonl")
    landing_copy.write_bytes(path.read_bytes())
    os.utime(landing_copy, ns=(LANDED_NS, LANDED_NS))
    entry = archive.archive_file(layout, archive.EVENTS, path)
    removed = archive.rewrite_without(entry, lambda t: pc.fill_null(pc.equal(t["user_id"], "u0000002"), False))
    assert removed == 1
    [after] = archive.archived(layout, archive.EVENTS)
    assert after.erased_lines == 1 and after.landed_ns == LANDED_NS
    assert b"u0000002" not in archive.contents(after) and archive.contents(after).count(b"\n") == 2
    assert archive.rewrite_landing_file(landing_copy, lambda line: b'"u0000002"' in line) == 1
    assert b"u0000002" not in landing_copy.read_bytes() and landing_copy.stat().st_mtime_ns == LANDED_NS


def test_a_damaged_archive_file_is_refused(landed):
    layout, path = landed
    entry = archive.archive_file(layout, archive.EVENTS, path)
    data = bytearray(entry.path.read_bytes())
    data[len(data) // 3] ^= 0xFF
    entry.path.write_bytes(bytes(data))
    with pytest.raises(archive.ArchiveError, match=entry.path.name):
        archive.contents(archive.describe(entry.path))
