"""Retention: the policy file is refused naming the key at fault; loaded landing files are archived to
Parquet and removed with their ledger entries while files not yet loaded stay, whatever their age;
raw rows leave only once the marts took them; the asset applies it all. Real dlt loads and DuckDB
files, on a few small files and rows."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import orjson
import pytest

from ingestion import archive, pipelines
from ingestion.paths import DataLayout, write_atomically
from ingestion.sample_data.landing_files import MARKETING_COLUMNS
from ingestion.sources.landing import ledger
from orchestration.lifecycle import backup, retention
from orchestration.lifecycle.retention import Applied, Policy, RetentionConfigError, load_policy
from semantic.warehouse import Warehouse
from tests.ingestion.helpers import event_line, load, scalar
from tests.orchestration.helpers import platform_environment

NOW = datetime.now(UTC)
POLICY = {"landing": {"keep_days": 7}, "archive": {"keep_days": 90}, "raw": {"keep_days": 30},
          "marts": {"keep_days": 365}, "backups": {"keep_days": 30}}


def write_policy(path: Path, policy: dict | str) -> Path:
    path.write_text(policy if isinstance(policy, str) else orjson.dumps(policy).decode())
    return path


def landed(path: Path, data: bytes, days_ago: float) -> Path:
    write_atomically(path, data)
    moment = int((NOW - timedelta(days=days_ago)).timestamp() * 1e9)
    os.utime(path, ns=(moment, moment))
    return path


def test_the_repository_policy_is_valid():
    from orchestration.environment import RETENTION_CONFIG

    policy = load_policy(RETENTION_CONFIG)
    assert policy.archive.keep_days >= policy.backups.keep_days


@pytest.mark.parametrize(("policy", "named"), [
    ({**POLICY, "raw": {"keep_days": "ten"}}, "raw.keep_days: should be a valid integer (got 'ten')"),
    ({**POLICY, "raw": {"keep_days": 0}}, "raw.keep_days: should be greater than 0"),
    ({**POLICY, "marts": {"keep_days": True}}, "marts.keep_days"),
    ({**POLICY, "landing": {"keep_day": 7}}, "landing.keep_days: is missing"),
    ({**POLICY, "stagging": {"keep_days": 7}}, "stagging: is not a key of the retention config"),
    ({k: v for k, v in POLICY.items() if k != "backups"}, "backups: is missing"),
    ({**POLICY, "archive": {"keep_days": 14}}, "archive.keep_days: 14 days is less than backups.keep_days (30)"),
    ({**POLICY, "archive": {"keep_days": 60}, "backups": {"keep_days": None}}, "archive.keep_days"),
    ("landing: [7\n", "line 2: not valid YAML"),
    ("- 7\n", "expected a mapping of layers"),
])
def test_a_malformed_policy_is_refused_naming_the_key(tmp_path, policy, named):
    with pytest.raises(RetentionConfigError, match="retention.yml") as refused:
        load_policy(write_policy(tmp_path / "retention.yml", policy))
    assert named in str(refused.value)


def test_loaded_landing_files_are_archived_and_forgotten_and_nothing_unloaded_is_touched(tmp_path):
    layout = DataLayout(tmp_path / "data")
    layout.ensure()
    old = [landed(layout.events_dir / f"events_{n}.jsonl", event_line(f"e{n}") + b"\n", days_ago=10) for n in "ab"]
    recent = landed(layout.events_dir / "events_c.jsonl", event_line("ec") + b"\n", days_ago=1)
    spend = landed(layout.marketing_dir / "spend_tv.csv", (",".join(MARKETING_COLUMNS) + "\n2026-10-01,t001,tv,"
                                                           "tv_launch,100,3,12.50\n").encode(), days_ago=10)
    assert load(layout, pipelines.EVENTS) == {"events": 3} and load(layout, pipelines.MARKETING) == {"spend": 1}
    # landed long ago but never loaded: it stays, whatever its age
    unloaded = landed(layout.events_dir / "events_d.jsonl", event_line("ed") + b"\n", days_ago=30)
    quarantined = landed(layout.quarantine_dir / "q.jsonl", b'{"where": "batch[0]", "reason": "x"}\n', days_ago=10)
    destination = pipelines.duckdb_warehouse(layout.warehouse)
    columns = {t: scalar(layout, f"select count(*) from information_schema.columns where table_name = '{t}'")
               for t in ("events", "spend")}

    applied = Applied()
    retention.apply_landing(layout, destination, Policy.model_validate(POLICY), NOW, applied)

    assert applied.archived == {"events": ["events_a.jsonl", "events_b.jsonl"], "marketing": ["spend_tv.csv"],
                                "quarantine": ["q.jsonl"]}
    assert not any(p.exists() for p in (*old, spend, quarantined)) and recent.exists() and unloaded.exists()
    assert {a.name for a in archive.all_archived(layout)} == {"events_a.jsonl", "events_b.jsonl", "spend_tv.csv",
                                                              "q.jsonl"}
    events = pipelines.make_pipeline(pipelines.EVENTS, destination, layout.dlt_dir)
    assert set(ledger(events, "events", "events")) == {"events_c.jsonl"}
    marketing = pipelines.make_pipeline(pipelines.MARKETING, destination, layout.dlt_dir)
    assert ledger(marketing, "marketing", "spend") == {}
    # the pruning runs left the tables' schemas as they were
    assert columns == {t: scalar(layout, f"select count(*) from information_schema.columns where table_name = '{t}'")
                       for t in ("events", "spend")}
    # the next load takes the file that waited, and never the archived ones again
    assert load(layout, pipelines.EVENTS) == {"events": 1}
    assert scalar(layout, "select count(*) from raw_events.events") == 4


def test_a_pending_load_keeps_its_loaders_files(tmp_path):
    layout = DataLayout(tmp_path / "data")
    layout.ensure()
    landed(layout.events_dir / "events_a.jsonl", event_line("ea") + b"\n", days_ago=10)
    destination = pipelines.duckdb_warehouse(layout.warehouse)
    pipeline = pipelines.make_pipeline(pipelines.EVENTS, destination, layout.dlt_dir)
    pipeline.extract(pipelines.source_for(pipelines.EVENTS, layout))  # the ledger names it; its rows wait
    pipeline.normalize()
    applied = Applied()
    retention.apply_landing(layout, destination, Policy.model_validate(POLICY), NOW, applied)
    assert (layout.events_dir / "events_a.jsonl").exists() and not applied.archived
    assert applied.skipped == ["events: a load is pending (its files wait for the next run)"]


def raw_warehouse(path: Path) -> Warehouse:
    """Raw events, their quarantine and the mart's load cursor, as the pipeline leaves them."""
    conn = duckdb.connect(str(path))
    conn.execute("create schema raw_events; create schema marts; create schema quality")
    conn.execute("create table raw_events.events (event_id varchar, _loaded_at timestamptz)")
    conn.execute("create table raw_events.events_quarantine (source_file varchar, quarantined_at timestamptz)")
    conn.execute("create table marts.fct_events (event_id varchar, event_date date, loaded_at timestamp)")
    conn.execute("create table marts.metrics_per_minute (minute_at timestamp)")
    conn.execute("create table quality.quarantined_rows (source_table varchar, row_key varchar, "
                 "released_at timestamptz)")
    return Warehouse(conn, "duckdb")


def test_raw_rows_leave_only_once_the_marts_took_them(tmp_path):
    ago = lambda days: NOW - timedelta(days=days)  # noqa: E731
    taken_through = ago(35)
    with raw_warehouse(tmp_path / "warehouse.duckdb") as warehouse:
        warehouse.executemany("insert into raw_events.events values (?, ?)", [
            ("taken", ago(50)), ("held", ago(50)), ("released-late", ago(50)), ("released", ago(50)),
            ("not-taken-yet", ago(32)), ("recent", ago(3))])
        warehouse.executemany("insert into quality.quarantined_rows values ('raw_events.events', ?, ?)",
                              [("held", None), ("released-late", ago(1)), ("released", ago(45))])
        warehouse.execute("insert into marts.fct_events values ('taken', ?, ?)",
                          [ago(50).date(), taken_through.replace(tzinfo=None)])
        warehouse.executemany("insert into raw_events.events_quarantine values (?, ?)", [("a", ago(31)),
                                                                                         ("b", ago(29))])
        warehouse.executemany("insert into marts.metrics_per_minute values (?)",
                              [(ago(400).replace(tzinfo=None),), (ago(2).replace(tzinfo=None),)])
        applied = Applied()
        retention.apply_raw(warehouse, Policy.model_validate(POLICY), NOW, applied)
        retention.apply_marts(warehouse, Policy.model_validate(POLICY), NOW, applied)
        kept = {r[0] for r in warehouse.rows("select event_id from raw_events.events")}
        assert kept == {"held", "released-late", "not-taken-yet", "recent"}
        assert warehouse.rows("select source_file from raw_events.events_quarantine") == [("b",)]
        assert warehouse.rows("select count(*) from marts.fct_events")[0][0] == 1  # 50 days: within 365
        assert warehouse.rows("select count(*) from marts.metrics_per_minute")[0][0] == 1
    assert applied.rows_deleted == {"raw_events.events": 2, "raw_events.events_quarantine": 1,
                                    "marts.fct_events": 0, "marts.metrics_per_minute": 1}


def test_backups_and_the_archive_keep_what_a_restore_needs(tmp_path):
    layout = DataLayout(tmp_path / "data")
    layout.ensure()
    with raw_warehouse(layout.warehouse):
        pass
    backups_dir = tmp_path / "backups"
    sources = backup.Sources(layout, "duckdb", None)
    oldest = backup.take(sources, backups_dir, now=NOW - timedelta(days=40))
    kept = backup.take(sources, backups_dir, now=NOW - timedelta(days=20))
    newest = backup.take(sources, backups_dir, now=NOW - timedelta(days=10))
    for name, days in (("events_old.jsonl", 200), ("events_new.jsonl", 100)):
        archive.archive_file(layout, archive.EVENTS, landed(layout.events_dir / name, event_line(name) + b"\n", days))
    applied = Applied()
    policy = Policy.model_validate({**POLICY, "archive": {"keep_days": 60}})
    applied.backups_deleted = backup.prune(backups_dir, policy.backups.keep_days, NOW)
    assert applied.backups_deleted == [oldest.path.name]
    assert [b.path.name for b in backup.backups(backups_dir)] == [kept.path.name, newest.path.name]
    # both archived files are past 60 days, but the oldest backup's ledger holds neither: a restore
    # from it would replay them, so they stay
    retention.apply_archive(layout, backups_dir, policy, NOW, applied)
    assert applied.archive_deleted == []
    manifest = kept.path / backup.MANIFEST
    manifest.write_text(manifest.read_text().replace('"events": []', '"events": ["events_old.jsonl"]'))
    retention.apply_archive(layout, backups_dir, policy, NOW, applied)
    assert applied.archive_deleted == ["events/events_old.jsonl"]


def test_the_retention_asset_applies_the_policy_and_refuses_a_bad_one(tmp_path):
    from orchestration.assets.lifecycle import retention as retention_asset

    layout = DataLayout(tmp_path / "data")
    layout.ensure()
    landed(layout.events_dir / "events_a.jsonl", event_line("ea") + b"\n", days_ago=10)
    load(layout, pipelines.EVENTS)
    good = write_policy(tmp_path / "retention.yml", POLICY)
    with platform_environment(layout.root, {"PLATFORM_RETENTION_CONFIG": str(good)}):
        result = dg.materialize([retention_asset])
    [event] = result.get_asset_materialization_events()
    metadata = {k: v.value for k, v in event.materialization.metadata.items()}
    assert metadata["landing_files_archived"] == 1 and metadata["ledger_entries_pruned"] == 1
    bad = write_policy(tmp_path / "bad.yml", {**POLICY, "raw": {"keep_days": -1}})
    with platform_environment(layout.root, {"PLATFORM_RETENTION_CONFIG": str(bad)}):
        failed = dg.materialize([retention_asset], raise_on_error=False)
    [failure] = [e for e in failed.all_events if e.is_step_failure]
    assert "raw.keep_days: should be greater than 0" in failure.step_failure_data.user_failure_data.description
