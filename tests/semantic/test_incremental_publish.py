"""Publishing only what a run changed gives the same snapshot as publishing everything.

On a copy of the tiny sample's warehouse: a first snapshot is published in full, then the
warehouse changes as a micro-batch changes it (new events merged, minutes recomputed, quality
results added). The snapshot built from those changes must hold exactly what a full publish
holds, rebuild only the rollups that read a changed table, and refuse a change it cannot make
without touching the current snapshot.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime

import dagster as dg
import duckdb
import pytest

from expectations import store
from orchestration.assets.publish import dbt_tables, run_changes
from orchestration.environment import SEMANTIC_MANIFEST
from semantic import rollups, snapshots
from semantic.metricflow_engine import load_semantic_manifest
from semantic.publication import DuckDbSnapshots
from semantic.warehouse import Warehouse

CURSORS = {"marts.fct_events": snapshots.Cursor("event_id", "loaded_at", "event_at"),
           "marts.metrics_per_minute": snapshots.Cursor("metrics_per_minute_key", "last_loaded_at", "minute_at")}
MICRO_BATCH = snapshots.Changes(tables=CURSORS, schemas=("quality",))


@pytest.fixture
def warehouse(published, tmp_path):
    path = tmp_path / "warehouse.duckdb"
    shutil.copyfile(published.warehouse, path)
    return path


def publish(warehouse, published_dir, changes=None) -> snapshots.Snapshot:
    DuckDbSnapshots(warehouse, published_dir).publish(changes=changes, build=rollups.builder(SEMANTIC_MANIFEST))
    return snapshots.current(published_dir)


def micro_batch(path, tag: str = "new", late: bool = True) -> None:
    """New events merged into fct_events (their ids end in `tag`; `late`: copies of the first
    events, on the sample's first days; else events of the last second), a minute recomputed, a
    row updated in place, a result recorded."""
    with duckdb.connect(str(path)) as conn:
        newest = "(select max(loaded_at) from marts.fct_events) + interval 1 second"
        now = "" if late else ("(select max(event_at) from marts.fct_events) as event_at, "
                               "(select max(event_date) from marts.fct_events) as event_date, ")
        conn.execute(f"insert into marts.fct_events select * replace (event_id || '-{tag}' as event_id, {now}"
                     f"{newest} as loaded_at) from marts.fct_events where event_id not like '%-%' "
                     "order by event_id limit 50")
        conn.execute(f"update marts.fct_events set event_type = 'page_view', loaded_at = {newest} "
                     "where event_id = (select min(event_id) from marts.fct_events where event_type = 'error')")
        conn.execute("update marts.metrics_per_minute set events = events + 50, last_loaded_at = "
                     "(select max(loaded_at) from marts.fct_events) "
                     "where metrics_per_minute_key = "
                     "(select max(metrics_per_minute_key) from marts.metrics_per_minute)")
        warehouse = Warehouse(conn, "duckdb")
        store.ensure_tables(warehouse)
        store.record_results(warehouse, [(
            "new-run", "raw_events", "properties_match_schema", "raw_events/events", "critical", True,
            "0 of 50 rows break the rule", "", 0, 0, datetime.now(UTC))])


def differences(left: snapshots.Snapshot, right: snapshots.Snapshot) -> dict[str, int]:
    """Rows in one snapshot's table and not the other's, per table (rollups' build times aside)."""
    found = {}
    with duckdb.connect() as conn:
        snapshots.attach_into(conn, left.published_dir, left.snapshot_id, "l")
        snapshots.attach_into(conn, right.published_dir, right.snapshot_id, "r")
        tables = {t for db in ("l", "r") for t in conn.execute(
            "select schema_name || '.\"' || table_name || '\"' from duckdb_tables() where database_name = ?",
            [db]).fetchall()}
        for (table,) in tables:
            columns = "* exclude (built_at)" if table.endswith('"_catalog"') else "*"
            try:
                count = conn.execute(f"select count(*) from (select {columns} from l.{table} except all "
                                     f"select {columns} from r.{table}) union all select count(*) from "
                                     f"(select {columns} from r.{table} except all select {columns} from l.{table})"
                                     ).fetchall()
            except duckdb.CatalogException:
                count = [(-1,)]
            if any(n for (n,) in count):
                found[table] = count
    return found


def table_files(snapshot: snapshots.Snapshot, schema: str, table: str) -> set[str]:
    with snapshot.connect() as conn:
        return {path for (path,) in conn.execute(f"select data_file from ducklake_list_files('{snapshots.CATALOG}', "
                                                 "?, schema => ?)", [table, schema]).fetchall()}


def built_at(snapshot: snapshots.Snapshot) -> dict[str, object]:
    with snapshot.connect() as conn:
        return dict(conn.execute("select name, built_at from rollups._catalog").fetchall())


def test_a_micro_batchs_snapshot_equals_a_full_one(warehouse, tmp_path):
    first = publish(warehouse, tmp_path / "published")
    micro_batch(warehouse)
    incremental = publish(warehouse, tmp_path / "published", MICRO_BATCH)
    full = publish(warehouse, tmp_path / "full")
    assert differences(incremental, full) == {}
    assert differences(incremental, first)  # the changes did reach it
    assert incremental.tables == full.tables

    # daily_kpis reads fct_events: brought up to date; orders_by_customer does not: kept as built the first time
    before, after = built_at(first), built_at(incremental)
    assert after["orders_by_customer"] == before["orders_by_customer"]
    assert after["daily_kpis"] > before["daily_kpis"]
    # only the days of the new events were recomputed: the rollup's first file is still read
    assert table_files(first, "rollups", "daily_kpis") <= table_files(incremental, "rollups", "daily_kpis")


def test_new_events_recompute_their_days_from_those_days_rows(warehouse, tmp_path):
    """The refresh reads fct_events from the new events' day on (the rows of a view filtered on
    `event_at`, which the scan prunes on), and still gives a full publish's numbers."""
    first = publish(warehouse, tmp_path / "published")
    micro_batch(warehouse, late=False)
    incremental = publish(warehouse, tmp_path / "published", MICRO_BATCH)
    assert differences(incremental, publish(warehouse, tmp_path / "full")) == {}
    assert differences(incremental, first)
    with incremental.connect() as conn:  # the temporary views are gone with the refresh
        assert conn.execute("select count(*) from duckdb_views() where view_name like 'recent%'").fetchone() == (0,)


def test_a_refresh_reads_whole_the_tables_whose_rows_count_on_other_days(tmp_path):
    """A table read for a dimension another model's measures are grouped by (the users' country
    for orders), or by a metric that looks back (weekly active users), is read whole."""
    publication = DuckDbSnapshots(tmp_path / "warehouse.duckdb", tmp_path / "published")  # names its tables
    lookup = load_semantic_manifest(SEMANTIC_MANIFEST, publication.relation)
    by_name = {rollup.name: rollup for rollup in rollups.declared(lookup)}
    assert rollups._recent_rows(lookup, publication, by_name["daily_kpis"], {"marts.fct_events"}, "duckdb") == {
        "marts.fct_events": "event_at"}
    changed = {"marts.dim_users", "marts.fct_orders"}
    assert rollups._recent_rows(lookup, publication, by_name["orders_by_customer"], changed, "duckdb") == {
        "marts.fct_orders": "ordered_at"}
    looking_back = rollups.Rollup("active", ("tenant",), rollups.shapes(lookup, ["weekly_active_users", "events"]))
    assert rollups._recent_rows(lookup, publication, looking_back, {"marts.fct_events"}, "duckdb") == {}
    assert rollups._recent_rows(lookup, publication, by_name["daily_kpis"], {"marts.fct_events"}, "trino") == {}


def test_a_table_whose_columns_changed_is_copied_whole(warehouse, tmp_path):
    publish(warehouse, tmp_path / "published")
    with duckdb.connect(str(warehouse)) as conn:
        conn.execute("alter table marts.fct_events add column source_app varchar default 'web'")
    incremental = publish(warehouse, tmp_path / "published", MICRO_BATCH)
    assert differences(incremental, publish(warehouse, tmp_path / "full")) == {}


def test_a_change_it_cannot_make_leaves_the_current_snapshot(warehouse, tmp_path):
    published_dir = tmp_path / "published"
    first = publish(warehouse, published_dir)
    files = sorted((published_dir / "lake").rglob("*"))
    bad = snapshots.Changes(tables={"marts.fct_event": None})
    with pytest.raises(ValueError, match=r"changed table marts\.fct_event is not in the warehouse"):
        publish(warehouse, published_dir, bad)
    assert snapshots.current(published_dir).version == first.version
    assert sorted((published_dir / "lake").rglob("*")) == files


def test_without_a_current_snapshot_everything_is_published(warehouse, tmp_path):
    incremental = publish(warehouse, tmp_path / "published", MICRO_BATCH)
    assert differences(incremental, publish(warehouse, tmp_path / "full")) == {}


def test_only_runs_that_changed_nothing_but_dbt_models_publish_changes():
    manifest = json.loads((SEMANTIC_MANIFEST.parent / "manifest.json").read_text())
    tables = dbt_tables(manifest)
    assert {t: c for t, c in tables.items() if c} == CURSORS

    key = dg.AssetKey
    raw, stg = key(["raw_events", "events"]), key(["staging", "stg_events__events"])
    changes = run_changes({raw, stg, key(["marts", "fct_events"]), key(["marts", "metrics_per_minute"])}, tables)
    assert changes == MICRO_BATCH
    assert run_changes({raw, key(["marts", "metrics_daily"])}, tables).tables == {"marts.metrics_daily": None}
    # forecasts are not dbt models, and a run that changed no published table may publish on request
    assert run_changes({key(["marts", "fct_events"]), key(["ml", "forecast_daily"])}, tables) is None
    assert run_changes({raw, stg}, tables) is None


def test_a_publish_cursor_needs_a_single_column_key():
    node = {"resource_type": "model", "name": "fct_x", "schema": "marts", "alias": "fct_x",
            "config": {"meta": {"publish_cursor": "loaded_at"}, "unique_key": ["a", "b"]}}
    with pytest.raises(ValueError, match="dbt model fct_x: meta.publish_cursor needs a single-column unique_key"):
        dbt_tables({"nodes": {"model.p.fct_x": node}})
    node["config"] = {"meta": {"publish_row_time": "event_at"}, "unique_key": "a"}
    with pytest.raises(ValueError, match="dbt model fct_x: meta.publish_row_time needs meta.publish_cursor"):
        dbt_tables({"nodes": {"model.p.fct_x": node}})


def lake_files(published_dir) -> dict[str, int]:
    return {str(p.relative_to(published_dir)): p.stat().st_size
            for p in (published_dir / "lake").rglob("*.parquet")}


def test_a_micro_batch_writes_its_rows_not_the_table(warehouse, tmp_path):
    """Publishing a micro-batch adds files the size of its rows; the table's files are kept."""
    published_dir = tmp_path / "published"
    publish(warehouse, published_dir)
    before = lake_files(published_dir)
    micro_batch(warehouse)
    publish(warehouse, published_dir, MICRO_BATCH)
    after = lake_files(published_dir)
    added = {name: size for name, size in after.items() if name not in before}
    events = sum(size for name, size in before.items() if "/fct_events/" in name)
    assert set(before) <= set(after)  # a reader of the first snapshot still has its files
    assert sum(size for name, size in added.items() if "/fct_events/" in name) < events / 20


def test_snapshots_no_reader_holds_are_expired_and_small_files_merged(warehouse, tmp_path, monkeypatch):
    published_dir = tmp_path / "published"
    first = publish(warehouse, published_dir)
    reader = first.connect()  # holds the first snapshot while later ones are published
    with duckdb.connect(str(warehouse)) as conn:
        first_count = conn.execute("select count(*) from marts.fct_events").fetchone()[0]
    monkeypatch.setattr(snapshots, "MERGE_AFTER_FILES", 3)
    for number in range(4):
        micro_batch(warehouse, f"batch{number}")
        latest = publish(warehouse, published_dir, MICRO_BATCH)
    assert reader.execute("select count(*) from marts.fct_events").fetchone()[0] == first_count
    with latest.connect() as conn:
        small = conn.execute(f"select count(*) from ducklake_list_files('{snapshots.CATALOG}', 'fct_events', "
                             "schema => 'marts') where data_file_size_bytes < ?",
                             [snapshots.SMALL_FILE_BYTES]).fetchone()[0]
    assert small < 3  # merged once there were three

    monkeypatch.setattr(snapshots, "RETAIN_SECONDS", 0)  # no reader holds an older one any more
    reader.close()
    micro_batch(warehouse, "last")
    previous, latest = latest, publish(warehouse, published_dir, MICRO_BATCH)
    with latest.connect() as conn:
        kept = [r[0] for r in conn.execute(
            f"select snapshot_id from ducklake_snapshots('{snapshots.CATALOG}')").fetchall()]
        rows = conn.execute("select count(*) from marts.fct_events").fetchone()[0]
    assert kept == [previous.snapshot_id, latest.snapshot_id]  # the one just superseded may be mid-read
    assert differences(latest, publish(warehouse, tmp_path / "full")) == {}
    with duckdb.connect(str(warehouse)) as conn:
        assert rows == conn.execute("select count(*) from marts.fct_events").fetchone()[0]
