"""Benchmark of publishing a micro-batch as the warehouse grows: the same batch published on a
warehouse and on one `--factor` times larger.

The larger warehouse is the given one with more history: every table a micro-batch changes
(those with a publish cursor: `fct_events`, `metrics_per_minute`) gets `factor - 1` copies of its
rows under new keys, each copy moved back in time by the span of the data, so it reads like a
longer-kept warehouse of the same traffic. Then each warehouse is published in full once, and
micro-batches of `--events` new events (and the minute rows they recompute) are published as the
micro-batch job publishes them (`Changes` with cursors, quality results, rollups rebuilt over what
changed). Printed per size: the publish time per micro-batch (median and max, with the rollups'
share), the files it added, one batch of late events (dated on the first days of the data, whose
days the rollups recompute from), and the baseline of the same run before DuckLake: copying the whole
published database file, which every micro-batch used to do before changing a single row.

    make bench-freshness                   # runs this after the freshness load, on its warehouse
    python -m bench.publish_scaling --warehouse data/warehouse.duckdb --factor 30
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import duckdb

from orchestration.assets.publish import dbt_tables
from orchestration.environment import SEMANTIC_MANIFEST
from semantic import rollups, snapshots
from semantic.publication import DuckDbSnapshots


def cursor_tables() -> dict[str, snapshots.Cursor]:
    manifest = json.loads((SEMANTIC_MANIFEST.parent / "manifest.json").read_text())
    return {table: cursor for table, cursor in dbt_tables(manifest).items() if cursor is not None}


def inflate(warehouse: Path, factor: int, cursors: dict[str, snapshots.Cursor]) -> None:
    """Add `factor - 1` earlier copies of the rows of every cursor table, under new keys."""
    with duckdb.connect(str(warehouse)) as conn:
        for table, cursor in cursors.items():
            schema, name = table.split(".")
            columns = conn.execute("select column_name, data_type from information_schema.columns "
                                   "where table_schema = ? and table_name = ?", [schema, name]).fetchall()
            times = [c for c, t in columns if t in ("DATE", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE")]
            first, last = conn.execute(f"select min({times[0]}), max({times[0]}) from {table}").fetchone()
            span = max(1, (last - first).days + 1)
            for copy in range(1, factor):
                shifted = [f'"{c}" - interval {copy * span} day as "{c}"' for c in times]
                conn.execute(f"insert into {table} select * replace ({', '.join(shifted)}, "
                             f"\"{cursor.key}\" || '-h{copy}' as \"{cursor.key}\") from {table} "
                             f"where \"{cursor.key}\" not like '%-h%'")


def micro_batch(warehouse: Path, number: int, events: int, late: bool = False) -> None:
    """`events` new events loaded after everything else, and the newest minute recomputed. The
    events happen at the newest event's time, as the collector's traffic arrives; `late` ones keep
    the time of the events they copy, on the last span's first days (an SDK's queue sent weeks
    later): the rollups are then recomputed from that day on."""
    with duckdb.connect(str(warehouse)) as conn:
        newest = "(select max(loaded_at) from marts.fct_events) + interval 1 second"
        now = "" if late else ("(select max(event_at) from marts.fct_events) as event_at, "
                               "(select max(event_date) from marts.fct_events) as event_date, ")
        conn.execute(f"insert into marts.fct_events select * replace (event_id || '-b{number}' as event_id, {now}"
                     f"{newest} as loaded_at) from marts.fct_events where event_id not like '%-%' "
                     f"order by event_id limit {events}")
        conn.execute(f"update marts.metrics_per_minute set events = events + {events}, last_loaded_at = "
                     "(select max(loaded_at) from marts.fct_events) where metrics_per_minute_key = "
                     "(select max(metrics_per_minute_key) from marts.metrics_per_minute)")


def measure(warehouse: Path, published_dir: Path, batches: int, events: int,
            cursors: dict[str, snapshots.Cursor]) -> dict[str, float]:
    publication = DuckDbSnapshots(warehouse, published_dir)
    build_rollups = rollups.builder(SEMANTIC_MANIFEST)
    started = time.perf_counter()
    publication.publish(build=build_rollups)
    full = time.perf_counter() - started
    changes = snapshots.Changes(tables=cursors, schemas=("quality",))
    rollup_seconds: list[float] = []

    def timed_rollups(*args):
        begin = time.perf_counter()
        try:
            return build_rollups(*args)
        finally:
            rollup_seconds.append(time.perf_counter() - begin)

    times, added = [], []
    for number in range(batches):
        micro_batch(warehouse, number, events)
        files = set((published_dir / snapshots.LAKE_DATA).rglob("*.parquet"))
        begin = time.perf_counter()
        publication.publish(changes=changes, build=timed_rollups)
        times.append(time.perf_counter() - begin)
        new = set((published_dir / snapshots.LAKE_DATA).rglob("*.parquet")) - files
        added.append(sum(p.stat().st_size for p in new if p.exists()))
    micro_batch(warehouse, batches, events, late=True)
    begin = time.perf_counter()
    publication.publish(changes=changes, build=build_rollups)
    late = time.perf_counter() - begin
    extract = snapshots.extract(published_dir, [f"{s}.{t}" for s, t in published_tables(published_dir)],
                                published_dir.parent / "published-copy.duckdb")
    begin = time.perf_counter()
    shutil.copyfile(extract, extract.with_suffix(".copy"))
    copy = time.perf_counter() - begin
    size = extract.stat().st_size
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        rows = conn.execute("select count(*) from marts.fct_events").fetchone()[0]
    return {"rows": rows, "full": full, "p50": statistics.median(times), "max": max(times), "late": late,
            "rollups": statistics.median(rollup_seconds), "added_kb": statistics.median(added) / 1024,
            "copy": copy, "db_mb": size / 2**20}


def published_tables(published_dir: Path) -> list[tuple[str, str]]:
    conn, _ = snapshots.connect_current(published_dir)
    with conn:
        return conn.execute("select table_schema, table_name from information_schema.tables where table_catalog = ? "
                            "and table_type = 'BASE TABLE'", [snapshots.CATALOG]).fetchall()


def report(warehouse: Path, factor: int, batches: int = 5, events: int = 500) -> None:
    cursors = cursor_tables()
    with tempfile.TemporaryDirectory(prefix="bench-publish-") as tmp:
        results = {}
        for size in (1, factor):
            copy = Path(tmp) / f"x{size}" / "warehouse.duckdb"
            copy.parent.mkdir()
            shutil.copyfile(warehouse, copy)
            if size > 1:
                inflate(copy, size, cursors)
            results[size] = measure(copy, copy.parent / "published", batches, events, cursors)
            shutil.rmtree(copy.parent)
    print(f"\npublishing a micro-batch of {events} events ({batches} batches per size; tables with a cursor: "
          f"{', '.join(cursors)}):")
    print(f"{'warehouse':>10} {'fct_events':>11} {'full publish s':>15} {'batch p50 s':>12} {'batch max s':>12} "
          f"{'rollups p50 s':>14} {'added KB':>9} {'late batch s':>13} | {'before: copy of the published db':>33}")
    for size, r in results.items():
        print(f"{str(size) + 'x':>10} {r['rows']:>11,} {r['full']:>15.1f} {r['p50']:>12.2f} {r['max']:>12.2f} "
              f"{r['rollups']:>14.2f} {r['added_kb']:>9.0f} {r['late']:>13.2f} | "
              f"{r['copy']:>10.2f} s of {r['db_mb']:>8.0f} MB")
    small, large = results[1], results[factor]
    print(f"{factor}x the warehouse: a micro-batch's publish took {large['p50'] / small['p50']:.1f}x as long "
          f"(copying the published database, as before: {large['copy'] / max(small['copy'], 1e-9):.1f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warehouse", type=Path, default=Path("data/warehouse.duckdb"))
    parser.add_argument("--factor", type=int, default=30)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--events", type=int, default=500)
    args = parser.parse_args()
    if not args.warehouse.exists():
        raise SystemExit(f"no warehouse at {args.warehouse}: run `make run` first")
    report(args.warehouse, args.factor, args.batches, args.events)


if __name__ == "__main__":
    main()
