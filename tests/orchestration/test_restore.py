"""Backup and point-in-time restore, end to end on a copy of the main job's data: a backup, events
that land after it (loaded and built into the marts), the warehouse destroyed, then restored as of now
from the backup and the landing files after it: every mart as it was. A time before the first backup
and a damaged backup are refused, and leave the warehouse as it was."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import duckdb
import pytest

from ingestion import pipelines
from ingestion.paths import DataLayout
from orchestration.environment import SEMANTIC_MANIFEST
from orchestration.lifecycle import backup, restore
from semantic import rollups, snapshots
from semantic.publication import DuckDbSnapshots
from tests.conftest import copy_of, dbt, sample_day
from tests.ingestion.helpers import load, scalar
from tests.orchestration.test_microbatch import land, page_views


def marts(layout: DataLayout) -> dict[str, list]:
    """Every mart's rows (sorted), without the time each row was loaded (a replay loads them again)."""
    with duckdb.connect(str(layout.warehouse), read_only=True) as conn:
        tables = [t for (t,) in conn.execute("select table_name from information_schema.tables where table_schema "
                                             "= 'marts' and table_type = 'BASE TABLE' order by 1").fetchall()]
        found = {}
        for table in tables:
            columns = [c for (c,) in conn.execute(
                "select column_name from information_schema.columns where table_schema = 'marts' and table_name = ? "
                "order by ordinal_position", [table]).fetchall() if not c.endswith("loaded_at")]
            found[table] = sorted(conn.execute(f"select {', '.join(columns)} from marts.{table}").fetchall(), key=repr)
    return found


def test_the_warehouse_is_destroyed_and_restored_from_a_backup_and_the_landing_files_after_it(main_run, tmp_path):
    layout = DataLayout(copy_of(main_run[0], tmp_path))
    backups_dir = layout.root / "backups"
    taken = backup.take(backup.Sources(layout, "duckdb", layout.root / "mlflow"), backups_dir)
    assert taken.manifest["mlflow"]["backed_up"] and "marts.fct_events" in taken.manifest["warehouse"]["tables"]
    day = datetime.combine(sample_day(1), datetime.min.time(), UTC) + timedelta(hours=9)
    late = land(layout, "events_after_backup.jsonl", page_views("after", 12, day))
    load(layout, pipelines.EVENTS)
    dbt(layout, "build", "--select", "source:events+", "--exclude-resource-type", "unit_test")
    original = marts(layout)
    assert sum(row[0].startswith("after-") for row in original["fct_events"]) == 12

    layout.warehouse.unlink()  # destroyed
    published = DuckDbSnapshots(layout.warehouse, layout.root / "published")
    now = datetime.now(UTC)
    restored = restore.restore(layout, backups_dir, now, now,
                               publish=lambda: published.publish(build=rollups.builder(SEMANTIC_MANIFEST)).version)

    assert restored.backup.path == taken.path and restored.replayed == {"events": [late.name]}
    assert restored.rows == {"raw_events.events": 12}
    assert marts(layout) == original
    # and published again from it, which is what readers read
    assert restored.published == published.current().version
    conn, _ = snapshots.connect_current(layout.root / "published")
    with conn:
        assert sorted(conn.execute("select event_id from marts.fct_events").fetchall()) \
            == sorted((row[0],) for row in original["fct_events"])
    # the loaders take their state from the restored warehouse: nothing is loaded twice
    assert load(layout, pipelines.EVENTS) == {}

    # a time before the first backup is refused, naming the earliest a restore can reach
    earliest = re.escape(f"the earliest time a restore can reach is {taken.taken_at.isoformat()}")
    with pytest.raises(restore.RestoreError, match=earliest):
        restore.restore(layout, backups_dir, taken.taken_at - timedelta(minutes=1), now)
    # a damaged backup is refused by its checksum, and the warehouse stays as it was
    damaged = taken.path / "warehouse" / "marts_fct_events.parquet"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    before = (backup.sha256(layout.warehouse), scalar(layout, "select count(*) from marts.fct_events"))
    with pytest.raises(restore.RestoreError, match="warehouse/marts_fct_events.parquet does not match its checksum"):
        restore.restore(layout, backups_dir, now, datetime.now(UTC))
    assert (backup.sha256(layout.warehouse), scalar(layout, "select count(*) from marts.fct_events")) == before
    assert not list((layout.root / "restore").iterdir())  # no work left behind
