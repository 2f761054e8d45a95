"""Micro-batches: the sensor's decisions on real landing files and a real Dagster instance, and the
micro-batch job run on a copy of the warehouse the batch job built (`main_run`): new and late
events, a replayed file, and a run that fails half-way and is retried. The job runs in the test's
process; the daemon launching it in a process of its own is tested with `dagster dev`
(test_ui_launch.py)."""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import orjson
import pytest

from ingestion.paths import DataLayout
from orchestration.definitions import defs
from orchestration.main import ensure_dagster_home
from orchestration.microbatch import (
    ATTEMPTS,
    BACKOFF_SECONDS,
    TRIGGER_TAG,
    LandingCursor,
    closed_files,
    decide,
    landing_files_sensor,
    microbatch_job,
    runs_in_flight,
)
from semantic import snapshots
from tests.conftest import NOW, copy_of
from tests.orchestration.helpers import platform_environment, run_in_process

# Events arrive a few minutes before the moment the runs take as now (the suite pins it).
ARRIVED = datetime.fromisoformat(NOW.replace("Z", "+00:00")).replace(microsecond=0) - timedelta(minutes=5)


def land(layout: DataLayout, name: str, events: list[dict]) -> Path:
    """Write a closed landing file as the collector does: into incoming/, then renamed into events/."""
    for directory in (layout.incoming_dir, layout.events_dir):
        directory.mkdir(parents=True, exist_ok=True)
    staging, closed = layout.incoming_dir / name, layout.events_dir / name
    staging.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    os.replace(staging, closed)
    return closed


def page_views(prefix: str, count: int, at: datetime, tenant: str = "t001") -> list[dict]:
    return [{"event_id": f"{prefix}-{i}", "event_type": "page_view",
             "timestamp": (at + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"), "tenant_id": tenant,
             "user_id": f"{tenant}-u{i % 7}", "session_id": f"{prefix}-s{i // 10}", "properties": {"path": "/p"},
             "context": {"device": "mobile"}} for i in range(count)]


# --- the sensor's decisions -------------------------------------------------------------------


def test_new_files_launch_one_run_and_advance_the_cursor(tmp_path):
    land(DataLayout(tmp_path), "a.jsonl", [])
    land(DataLayout(tmp_path), "b.jsonl", [])
    (tmp_path / "landing" / "events" / "open.part").write_text("not closed")
    files = closed_files(tmp_path / "landing" / "events")
    assert sorted(f.name for f in files) == ["a.jsonl", "b.jsonl"]

    request, cursor = decide(LandingCursor(), files, in_flight=[])
    assert isinstance(request, dg.RunRequest) and request.tags["landing/new_files"] == "2"
    skip, same = decide(cursor, files, in_flight=[])
    assert isinstance(skip, dg.SkipReason) and same == cursor
    assert LandingCursor.parse(cursor.serialize()) == cursor


def test_files_that_arrive_while_a_run_is_in_flight_wait_and_go_in_one_run(tmp_path):
    layout = DataLayout(tmp_path)
    land(layout, "first.jsonl", [])
    _, cursor = decide(LandingCursor(), closed_files(layout.events_dir), in_flight=[])
    for n in range(5):
        land(layout, f"during-{n}.jsonl", [])
    files = closed_files(layout.events_dir)
    skip, kept = decide(cursor, files, in_flight=["run-1"])
    assert isinstance(skip, dg.SkipReason) and "5 new files wait" in skip.skip_message and kept == cursor
    request, _ = decide(kept, files, in_flight=[])
    assert request.tags["landing/new_files"] == "5"


def test_a_file_renamed_out_of_order_is_still_new(tmp_path):
    layout = DataLayout(tmp_path)
    land(layout, "late-writer.jsonl", [])
    older = closed_files(layout.events_dir)[0]
    land(layout, "fast-writer.jsonl", [])
    newest = [f for f in closed_files(layout.events_dir) if f.name == "fast-writer.jsonl"]
    _, cursor = decide(LandingCursor(), newest, in_flight=[])  # the sensor saw only the newer file
    assert cursor.new_files([older, *newest]) == [older]


def test_files_the_loaders_ledger_holds_are_not_new_and_the_cursor_moves_past_them(tmp_path):
    """A batch run (`make run`) loaded them without the sensor seeing them: no micro-batch for them."""
    layout = DataLayout(tmp_path)
    land(layout, "loaded.jsonl", [])
    land(layout, "fresh.jsonl", [])
    files = closed_files(layout.events_dir)
    request, _ = decide(LandingCursor(), files, in_flight=[], loaded={"loaded.jsonl"})
    assert request.tags["landing/new_files"] == "1" and request.tags["landing/first_file"] == "fresh.jsonl"
    skip, after = decide(LandingCursor(), files, in_flight=["run-1"], loaded={"loaded.jsonl", "fresh.jsonl"})
    assert "2 landing files the sensor had not seen were loaded by an earlier run" in skip.skip_message
    assert after.new_files(files) == []


def test_in_flight_runs_of_any_job_are_read_from_the_instance():
    """A batch run holds the warehouse as much as a micro-batch does."""
    with dg.instance_for_test() as instance:
        assert runs_in_flight(instance) == []
        run_id = str(uuid.uuid4())
        instance.add_run(dg.DagsterRun(job_name="batch_job", run_id=run_id, status=dg.DagsterRunStatus.STARTED))
        instance.add_run(dg.DagsterRun(job_name=microbatch_job.name, run_id=str(uuid.uuid4()),
                                       status=dg.DagsterRunStatus.SUCCESS))
        assert runs_in_flight(instance) == [run_id]
        # the insight alerts' sensor waits for its own job's runs only
        assert runs_in_flight(instance, microbatch_job.name) == []
        assert runs_in_flight(instance, "batch_job") == [run_id]
        instance.report_run_failed(instance.get_run_by_id(run_id), "gone")
        assert runs_in_flight(instance) == []


def test_after_repeated_failures_new_files_wait_before_the_next_attempt(tmp_path):
    layout = DataLayout(tmp_path)
    land(layout, "a.jsonl", [])
    files = closed_files(layout.events_dir)
    failing = LandingCursor(failures=ATTEMPTS - 1, failed_at=1_000.0)
    request, _ = decide(failing, files, in_flight=[], now=1_001.0)
    assert isinstance(request, dg.RunRequest)  # an attempt left
    given_up = LandingCursor(failures=ATTEMPTS, failed_at=1_000.0)
    skip, kept = decide(given_up, files, in_flight=[], now=1_000.0 + BACKOFF_SECONDS - 1)
    assert isinstance(skip, dg.SkipReason) and "failed" in skip.skip_message and kept == given_up
    request, after = decide(given_up, files, in_flight=[], now=1_000.0 + BACKOFF_SECONDS + 1)
    assert isinstance(request, dg.RunRequest) and after.failures == 0
    assert LandingCursor.parse(given_up.serialize()) == given_up


# --- the micro-batch job on a built warehouse -------------------------------------------------


@pytest.fixture
def platform(main_run, tmp_path) -> DataLayout:
    return DataLayout(copy_of(main_run[0], tmp_path))


def microbatch(layout: DataLayout, expect_success: bool = True) -> str:
    return run_in_process(layout.root, job=microbatch_job.name, expect_success=expect_success)


def published(layout: DataLayout, sql: str) -> list[tuple]:
    conn, _ = snapshots.connect_current(layout.root / "published")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


RECOMPUTED = """
    select cast(date_trunc('minute', event_at) as varchar) || '|' || tenant_id, count(*), count(distinct visitor_id),
           sum(case when event_type = 'page_view' then 1 else 0 end), max(loaded_at)
    from marts.fct_events group by all
"""
MART = "select metrics_per_minute_key, events, visitors, page_views, last_loaded_at from marts.metrics_per_minute"


def test_new_and_late_events_reach_the_published_real_time_mart(platform):
    """Through the sensor, as the daemon evaluates it: it runs the micro-batch in its own process,
    recorded on the instance, and advances its cursor once the run succeeded."""
    now = ARRIVED
    three_days_ago = now - timedelta(days=3)
    before = dict(published(platform, "select metrics_per_minute_key, events from marts.metrics_per_minute"))
    # the daemon's sensor has seen the sample's files (the batch job loaded them): its cursor is past them
    seen = LandingCursor().advanced(closed_files(platform.events_dir))
    land(platform, "collector-a-000001.jsonl", page_views("now", 50, now))
    land(platform, "collector-a-000002.jsonl", page_views("late", 20, three_days_ago, tenant="t002"))
    with platform_environment(platform.root) as env:
        ensure_dagster_home(env)
        with dg.DagsterInstance.get() as instance:
            context = dg.build_sensor_context(instance=instance, repository_def=defs.get_repository_def(),
                                              cursor=seen.serialize())
            result = landing_files_sensor(context)
            [run] = instance.get_run_records(dg.RunsFilter(job_name=microbatch_job.name))
            assert run.dagster_run.status == dg.DagsterRunStatus.SUCCESS
            assert run.dagster_run.tags[TRIGGER_TAG] == "landing_files_sensor"
            assert f"micro-batch run {run.dagster_run.run_id} took 2 new files" in result.skip_message
            assert LandingCursor.parse(context.cursor).new_files(closed_files(env.layout.events_dir)) == []

    rows = published(platform, "select event_id, event_date from marts.fct_events "
                               "where event_id like 'now-%' or event_id like 'late-%'")
    assert len(rows) == 70
    assert {d for e, d in rows if e.startswith("late-")} == {three_days_ago.date()}  # its own day
    # the incrementally merged mart equals the mart computed from scratch over every event
    assert sorted(published(platform, MART)) == sorted(published(platform, RECOMPUTED))
    late_minute = f"{three_days_ago.strftime('%Y-%m-%d %H:%M')}:00|t002"
    after = dict(published(platform, "select metrics_per_minute_key, events from marts.metrics_per_minute"))
    assert after[late_minute] == before.get(late_minute, 0) + sum(
        1 for e in page_views("late", 20, three_days_ago) if e["timestamp"][:16] == three_days_ago.isoformat()[:16])


def test_the_first_evaluation_after_a_batch_run_launches_nothing_for_the_files_it_loaded(platform):
    """`make dev` after `make run`: the sensor has no cursor yet, the sample's landing files are all in the
    loader's ledger, so no micro-batch runs and the cursor moves past them."""
    assert closed_files(platform.events_dir)
    with platform_environment(platform.root) as env:
        ensure_dagster_home(env)
        with dg.DagsterInstance.get() as instance:
            context = dg.build_sensor_context(instance=instance, repository_def=defs.get_repository_def())
            result = landing_files_sensor(context)
            assert "loaded by an earlier run" in result.skip_message
            assert not instance.get_run_records(dg.RunsFilter(job_name=microbatch_job.name))
            assert LandingCursor.parse(context.cursor).new_files(closed_files(env.layout.events_dir)) == []


def test_replaying_a_file_changes_nothing(platform):
    now = ARRIVED
    original = land(platform, "collector-b-000001.jsonl", page_views("replay", 30, now))
    microbatch(platform)
    state = sorted(published(platform, MART)), published(platform, "select count(*) from marts.fct_events")
    shutil.copy(original, platform.incoming_dir / "copy.jsonl")  # the same events under another name
    os.replace(platform.incoming_dir / "copy.jsonl", platform.events_dir / "collector-b-000002.jsonl")
    os.utime(original)  # and the original file touched again
    microbatch(platform)
    assert (sorted(published(platform, MART)), published(platform, "select count(*) from marts.fct_events")) == state


def test_a_run_that_fails_half_way_is_retried_and_every_event_is_there_once(platform):
    now = ARRIVED
    land(platform, "collector-c-000001.jsonl", page_views("retry", 40, now))
    version_before = snapshots.current(platform.root / "published").version
    with duckdb.connect(str(platform.warehouse)) as conn:  # fct_events' relationship test will fail after its merge
        conn.execute("alter table marts.dim_tenants rename to dim_tenants_aside")
    out = microbatch(platform, expect_success=False)
    assert "FAILED step dbt_models" in out
    with duckdb.connect(str(platform.warehouse), read_only=True) as conn:
        assert conn.execute("select count(*) from raw_events.events where event_id like 'retry-%'").fetchone() == (40,)
    assert snapshots.current(platform.root / "published").version == version_before  # readers kept the last good

    with duckdb.connect(str(platform.warehouse)) as conn:
        conn.execute("alter table marts.dim_tenants_aside rename to dim_tenants")
    microbatch(platform)  # the retry: nothing new to load or merge into fct_events, the rest catches up
    assert published(platform, "select count(*), count(distinct event_id) from marts.fct_events "
                               "where event_id like 'retry-%'") == [(40, 40)]
    assert sorted(published(platform, MART)) == sorted(published(platform, RECOMPUTED))
