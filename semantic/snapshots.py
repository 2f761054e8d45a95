"""Published read snapshots of the warehouse: what the metrics server and the reports read.

DuckDB lets one process write a database file, and a reader that opens the file blocks that
writer. So after a run's data has passed its quality gates, the reader-facing schemas are
copied into a new, immutable file, and a `CURRENT` pointer is swapped to it atomically.
Readers open whatever `CURRENT` names; a reader that is mid-query keeps its open file (an
older snapshot is unlinked, not overwritten), and the next query sees the new version.
The version string doubles as the data version that caches key on.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from ingestion.paths import fsync

# What readers may see: marts (and the forecasts and insights written beside them) and quality results.
PUBLISHED_SCHEMAS = ("marts", "ml", "quality")
# The catalog name the dbt-compiled SQL (and so MetricFlow's) uses: the warehouse file's stem.
CATALOG = "warehouse"
POINTER = "CURRENT"


@dataclass(frozen=True)
class Snapshot:
    version: str
    path: Path
    tables: int


def publish(warehouse: Path, published_dir: Path, keep: int = 3,
            build: Callable[[duckdb.DuckDBPyConnection], object] | None = None) -> Snapshot:
    """Copy the published schemas of `warehouse` into a new snapshot and make it current.

    `build` adds derived tables (the metrics server's rollups) to the new snapshot, opened under
    the warehouse's catalog name, before any reader can see it.
    """
    published_dir.mkdir(parents=True, exist_ok=True)
    version = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = published_dir / f"warehouse-{version}.duckdb"
    tables = 0
    with duckdb.connect() as conn:
        conn.execute(f"attach '{warehouse}' as source (read_only)")
        conn.execute(f"attach '{path}' as snapshot")
        for schema in PUBLISHED_SCHEMAS:
            names = [r[0] for r in conn.execute(
                "select table_name from information_schema.tables "
                "where table_catalog = 'source' and table_schema = ? and table_type = 'BASE TABLE'",
                [schema]).fetchall()]
            if not names:
                continue
            conn.execute(f"create schema snapshot.{schema}")
            for name in names:
                conn.execute(f'create table snapshot.{schema}."{name}" as select * from source.{schema}."{name}"')
                tables += 1
        conn.execute("checkpoint snapshot")
        conn.execute("detach snapshot")
    if build is not None:
        try:
            with duckdb.connect() as conn:
                conn.execute(f"attach '{path}' as {CATALOG}")
                conn.execute(f"use {CATALOG}")
                build(conn)
                conn.execute(f"checkpoint {CATALOG}")
        except BaseException:  # never current, so no reader has it open: the last good snapshot stays
            path.unlink(missing_ok=True)
            Path(f"{path}.wal").unlink(missing_ok=True)
            raise
    fsync(path)
    _point_to(published_dir, path.name)
    _prune(published_dir, keep)
    return Snapshot(version, path, tables)


def current(published_dir: Path) -> Snapshot | None:
    pointer = published_dir / POINTER
    if not pointer.exists():
        return None
    name = pointer.read_text().strip()
    return Snapshot(name.removeprefix("warehouse-").removesuffix(".duckdb"), published_dir / name, -1)


def connect_current(published_dir: Path) -> tuple[duckdb.DuckDBPyConnection, Snapshot]:
    """A read-only connection to the current snapshot, attached under the warehouse's catalog name."""
    snapshot = current(published_dir)
    if snapshot is None:
        raise FileNotFoundError(f"no published snapshot under {published_dir}: run the main job first")
    conn = duckdb.connect()
    conn.execute(f"attach '{snapshot.path}' as {CATALOG} (read_only)")
    conn.execute(f"use {CATALOG}")
    return conn, snapshot


def _point_to(published_dir: Path, name: str) -> None:
    tmp = published_dir / f".{POINTER}.tmp"
    tmp.write_text(name + "\n")
    fsync(tmp)
    os.replace(tmp, published_dir / POINTER)


def _prune(published_dir: Path, keep: int) -> None:
    """Unlink all but the newest `keep` snapshots; open readers keep their file until they close it."""
    snapshots = sorted(published_dir.glob("warehouse-*.duckdb"))
    for old in snapshots[:-keep]:
        old.unlink(missing_ok=True)
        Path(f"{old}.wal").unlink(missing_ok=True)
