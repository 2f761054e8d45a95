"""Incremental frames: per-row gates read only the events loaded since they last ran.

The runner is driven directly (real Great Expectations, a real DuckDB file) with a clock set by
the test, so each validation's rows are exact: new loads are read once, rows held in the
quarantine are read again until they pass, and a changed rule reads everything again.
"""

from __future__ import annotations

import dataclasses
import weakref
from datetime import UTC, datetime, timedelta

import duckdb
import pytest

from expectations.runner import Runner
from expectations.spec import Frame, Incremental
from expectations.suites.raw_events import SUITE
from semantic.warehouse import Warehouse

T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)
ROW_GATES = {"timestamps_not_in_future", "properties_match_schema"}


@pytest.fixture(scope="module")
def gx_root(tmp_path_factory):
    return tmp_path_factory.mktemp("gx")


@pytest.fixture
def conn(tmp_path):
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as conn:
        conn.execute("create schema raw_events")
        conn.execute('create table raw_events.events (event_id varchar, event_type varchar, "timestamp" timestamptz, '
                     "properties varchar, _loaded_at timestamptz)")
        yield conn


def load(conn, loaded_at: datetime, *events: tuple[str, datetime, str]) -> None:
    """Page views (event_id, timestamp, path property as JSON) loaded at `loaded_at`."""
    conn.executemany("insert into raw_events.events values (?, 'page_view', ?, ?, ?)",
                     [(event_id, at, f'{{"path": {path}}}', loaded_at) for event_id, at, path in events])


def validate(conn, gx_root, now: datetime, suite=SUITE, run_id: str = "run") -> dict[str, object]:
    outcomes = Runner(Warehouse(conn, "duckdb"), gx_root, run_id, now=now).validate(suite, only=ROW_GATES)
    return {o.check.name: o for o in outcomes}


def held(conn) -> set[tuple[str, str]]:
    return set(conn.execute("select expectation, row_key from quality.quarantined_rows "
                            "where released_at is null").fetchall())


def test_each_load_is_read_once(conn, gx_root):
    load(conn, T0, ("a", T0, '"/"'), ("b", T0, '"/pricing"'))
    first = validate(conn, gx_root, T0 + timedelta(minutes=1))
    assert first["properties_match_schema"].observed == "0 of 2 rows break the rule"

    again = validate(conn, gx_root, T0 + timedelta(minutes=2))
    assert again["properties_match_schema"].observed.startswith("0 of 0 rows (loaded after 2026-11-01 12:00:00 UTC")

    load(conn, T0 + timedelta(minutes=3), ("c", T0, "7"))  # path is a number: breaks the schema
    third = validate(conn, gx_root, T0 + timedelta(minutes=4))
    schema = third["properties_match_schema"]
    assert not schema.success and schema.observed.startswith("1 of 1 rows (loaded after")
    assert schema.newly_held == 1 and held(conn) == {("properties_match_schema", "c")}
    assert all(o.gate_passed for o in validate(conn, gx_root, T0 + timedelta(minutes=5)).values())


def test_held_rows_are_read_again_and_released_once_they_pass(conn, gx_root):
    """A future-dated event loaded long ago is released once the clock catches up with it."""
    ahead = T0 + timedelta(hours=3)
    load(conn, T0, ("early", T0, '"/"'), ("ahead", ahead, '"/"'))
    first = validate(conn, gx_root, T0)
    assert first["timestamps_not_in_future"].newly_held == 1
    assert held(conn) == {("timestamps_not_in_future", "ahead")}

    load(conn, T0 + timedelta(minutes=1), ("later", T0, '"/"'))
    still = validate(conn, gx_root, T0 + timedelta(hours=1))["timestamps_not_in_future"]
    assert still.observed.startswith("1 of 2 rows (loaded after")  # the new row and the held one
    assert (still.still_held, still.released) == (1, 0)

    caught_up = validate(conn, gx_root, ahead)["timestamps_not_in_future"]
    assert caught_up.success and caught_up.released == 1 and held(conn) == set()


def test_a_changed_rule_reads_every_row_again(conn, gx_root):
    load(conn, T0, ("a", T0, '"/"'), ("b", T0, '"/pricing"'))
    validate(conn, gx_root, T0)
    load(conn, T0 + timedelta(minutes=1), ("c", T0, '"/docs"'))

    # page views now need their path as a number (a made-up stricter rule): the old rows fail it too
    check = next(c for c in SUITE.checks if c.name == "properties_match_schema")
    stricter = dataclasses.replace(check, kwargs={**check.kwargs, "value_set": ["page_view(path:BIGINT)"]})
    suite = dataclasses.replace(SUITE, checks=tuple(stricter if c is check else c for c in SUITE.checks))
    outcome = validate(conn, gx_root, T0 + timedelta(minutes=2), suite=suite)["properties_match_schema"]
    assert outcome.observed == "3 of 3 rows break the rule"
    assert {key for _, key in held(conn)} == {"a", "b", "c"}


def test_an_incremental_frame_must_say_where_its_rows_are_filtered():
    with pytest.raises(ValueError, match="frame 'events' is incremental but its query has no {rows}"):
        Frame("events", "select event_id, _loaded_at from raw_events.events", incremental=Incremental("_loaded_at"))


class RecordingWarehouse(Warehouse):
    """The warehouse connection, remembering (weakly) each frame it hands out."""

    def __init__(self, conn):
        super().__init__(conn, "duckdb")
        self.frames: list[weakref.ref] = []

    def frame(self, statement, parameters=()):
        frame = super().frame(statement, parameters)
        self.frames.append(weakref.ref(frame))
        return frame


def test_no_frame_is_kept_once_validated(conn, gx_root):
    """A frame can be every row of a table: the runner (and Great Expectations' engine under it) lets each
    go once its outcomes are taken, so a suite never holds its frames together (docs/scaling.md)."""
    load(conn, T0, ("a", T0, '"/"'), ("b", T0 + timedelta(days=1), '"/"'))
    warehouse = RecordingWarehouse(conn)
    runner = Runner(warehouse, gx_root, "run", now=T0 + timedelta(minutes=1))
    outcomes = runner.validate(SUITE)
    assert {o.check.name for o in outcomes} == {c.name for c in SUITE.checks}
    assert len(warehouse.frames) >= 4  # every frame this table's columns can give
    assert [ref() for ref in warehouse.frames] == [None] * len(warehouse.frames)
