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
from semantic.publication import DuckDbSnapshots
from semantic.warehouse import Warehouse

CURSORS = {"marts.fct_events": snapshots.Cursor("event_id", "loaded_at"),
           "marts.metrics_per_minute": snapshots.Cursor("metrics_per_minute_key", "last_loaded_at")}
MICRO_BATCH = snapshots.Changes(tables=CURSORS, schemas=("quality",))


@pytest.fixture
def warehouse(published, tmp_path):
    path = tmp_path / "warehouse.duckdb"
    shutil.copyfile(published.warehouse, path)
    return path


def publish(warehouse, published_dir, changes=None) -> snapshots.Snapshot:
    DuckDbSnapshots(warehouse, published_dir).publish(changes=changes, build=rollups.builder(SEMANTIC_MANIFEST))
    return snapshots.current(published_dir)


def micro_batch(path) -> None:
    """New events merged into fct_events, a minute recomputed, a row updated in place, a result recorded."""
    with duckdb.connect(str(path)) as conn:
        newest = "(select max(loaded_at) from marts.fct_events) + interval 1 second"
        conn.execute("insert into marts.fct_events select * replace (event_id || '-new' as event_id, "
                     f"{newest} as loaded_at) from marts.fct_events order by event_id limit 50")
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
        conn.execute(f"attach '{left.path}' as l (read_only)")
        conn.execute(f"attach '{right.path}' as r (read_only)")
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


def built_at(snapshot: snapshots.Snapshot) -> dict[str, object]:
    with duckdb.connect(str(snapshot.path), read_only=True) as conn:
        return dict(conn.execute("select name, built_at from rollups._catalog").fetchall())


def test_a_micro_batchs_snapshot_equals_a_full_one(warehouse, tmp_path):
    first = publish(warehouse, tmp_path / "published")
    micro_batch(warehouse)
    incremental = publish(warehouse, tmp_path / "published", MICRO_BATCH)
    full = publish(warehouse, tmp_path / "full")
    assert differences(incremental, full) == {}
    assert differences(incremental, first)  # the changes did reach it
    assert incremental.tables == full.tables

    # daily_kpis reads fct_events: rebuilt; orders_by_customer does not: kept as built the first time
    before, after = built_at(first), built_at(incremental)
    assert after["orders_by_customer"] == before["orders_by_customer"]
    assert after["daily_kpis"] > before["daily_kpis"]


def test_a_table_whose_columns_changed_is_copied_whole(warehouse, tmp_path):
    publish(warehouse, tmp_path / "published")
    with duckdb.connect(str(warehouse)) as conn:
        conn.execute("alter table marts.fct_events add column source_app varchar default 'web'")
    incremental = publish(warehouse, tmp_path / "published", MICRO_BATCH)
    assert differences(incremental, publish(warehouse, tmp_path / "full")) == {}


def test_a_change_it_cannot_make_leaves_the_current_snapshot(warehouse, tmp_path):
    published_dir = tmp_path / "published"
    first = publish(warehouse, published_dir)
    bad = snapshots.Changes(tables={"marts.fct_event": None})
    with pytest.raises(ValueError, match=r"changed table marts\.fct_event is not in the warehouse"):
        publish(warehouse, published_dir, bad)
    assert snapshots.current(published_dir).version == first.version
    assert sorted(p.name for p in published_dir.glob("warehouse-*")) == [first.path.name]


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
