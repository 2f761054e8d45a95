"""Published read snapshots of the warehouse: what the metrics server and the reports read.

DuckDB lets one process write a database file, and a reader that opens the file blocks that
writer. So after a run's data has passed its quality gates, the reader-facing schemas are
copied into a new, immutable file, and a `CURRENT` pointer is swapped to it atomically.
Readers open whatever `CURRENT` names; a reader that is mid-query keeps its open file (an
older snapshot is unlinked, not overwritten), and the next query sees the new version.
The version string doubles as the data version that caches key on.

A run that changed only a few tables (a micro-batch) publishes `Changes`: the new snapshot starts
as a copy of the current one and takes only those tables from the warehouse, and of an
incremental table only the rows past the snapshot's newest cursor value. `rewrite` makes a new
version from the current one alone and removes every other (erasing a person's data).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class Cursor:
    """How an incremental table changes: rows are added or replaced on `key`, each stamped with a
    `column` value (never null) newer than any row already there, so the rows past a snapshot's
    newest value are exactly what changed since."""

    key: str
    column: str


@dataclass(frozen=True)
class Changes:
    """What a run changed in the published schemas; everything else is kept from the current snapshot.

    `tables` ("schema.table") are taken from the warehouse: merged past their `Cursor`, or copied
    whole where they have none (or their columns changed). `schemas` are copied whole.
    """

    tables: Mapping[str, Cursor | None] = field(default_factory=dict)
    schemas: tuple[str, ...] = ()


# What `build` is told: the tables a snapshot took from the warehouse, or None for all of them.
Build = Callable[[duckdb.DuckDBPyConnection, frozenset[str] | None], object]


def publish(warehouse: Path, published_dir: Path, keep: int = 3, build: Build | None = None,
            changes: Changes | None = None) -> Snapshot:
    """Copy the published schemas of `warehouse` into a new snapshot and make it current.

    With `changes`, the current snapshot is copied instead and only the changed tables are taken
    from the warehouse (without a current snapshot, everything is). `build` adds derived tables
    (the metrics server's rollups) to the new snapshot, opened under the warehouse's catalog
    name, before any reader can see it.
    """
    published_dir.mkdir(parents=True, exist_ok=True)
    version, path = _new(published_dir)
    try:
        changed = _copy(warehouse, path, published_dir, changes)
        tables = _finish(path, lambda conn: build(conn, changed) if build is not None else None)
    except BaseException:  # never current, so no reader has it open: the last good snapshot stays
        _discard(path)
        raise
    fsync(path)
    _point_to(published_dir, path.name)
    _prune(published_dir, keep)
    return Snapshot(version, path, tables)


def rewrite(published_dir: Path, change: Callable[[duckdb.DuckDBPyConnection], object]) -> Snapshot:
    """A new version made from the current snapshot by `change` (its connection has the copy
    attached under the warehouse's catalog name), made current; every other snapshot is removed.

    For a change every version a reader could still open must have, such as erasing a person's
    data: a reader that has an older file open keeps it until it closes it, none can open it again."""
    base = current(published_dir)
    if base is None:
        raise FileNotFoundError(f"no published snapshot under {published_dir}")
    version, path = _new(published_dir)
    try:
        shutil.copyfile(base.path, path)  # snapshots are checkpointed: the file is the whole database
        tables = _finish(path, change)
    except BaseException:
        _discard(path)
        raise
    fsync(path)
    _point_to(published_dir, path.name)
    _prune(published_dir, 1)
    return Snapshot(version, path, tables)


def _new(published_dir: Path) -> tuple[str, Path]:
    version = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return version, published_dir / f"warehouse-{version}.duckdb"


def _finish(path: Path, build: Callable[[duckdb.DuckDBPyConnection], object]) -> int:
    """Run `build` on the new snapshot and checkpoint it; its number of published tables."""
    with duckdb.connect() as conn:
        conn.execute(f"attach '{path}' as {CATALOG}")
        conn.execute(f"use {CATALOG}")
        build(conn)
        tables = conn.execute(
            "select count(*) from information_schema.tables where table_catalog = ? and table_schema in "
            f"({', '.join('?' for _ in PUBLISHED_SCHEMAS)}) and table_type = 'BASE TABLE'",
            [CATALOG, *PUBLISHED_SCHEMAS]).fetchone()[0]
        conn.execute(f"checkpoint {CATALOG}")
    return tables


def _discard(path: Path) -> None:
    path.unlink(missing_ok=True)
    Path(f"{path}.wal").unlink(missing_ok=True)


def _copy(warehouse: Path, path: Path, published_dir: Path, changes: Changes | None) -> frozenset[str] | None:
    """Fill the new snapshot file; the tables taken from the warehouse, or None when it took all."""
    base = current(published_dir) if changes is not None else None
    if base is not None:
        try:
            shutil.copyfile(base.path, path)  # snapshots are checkpointed: the file is the whole database
        except FileNotFoundError:
            base = None
    with duckdb.connect() as conn:
        conn.execute(f"attach '{warehouse}' as source (read_only)")
        conn.execute(f"attach '{path}' as snapshot")
        if base is None:
            for schema in PUBLISHED_SCHEMAS:
                _copy_schema(conn, schema)
            changed = None
        else:
            changed = _apply(conn, changes)
        conn.execute("checkpoint snapshot")
        conn.execute("detach snapshot")
    return changed


def _source_tables(conn: duckdb.DuckDBPyConnection, schema: str) -> list[str]:
    return [r[0] for r in conn.execute(
        "select table_name from information_schema.tables "
        "where table_catalog = 'source' and table_schema = ? and table_type = 'BASE TABLE'", [schema]).fetchall()]


def _copy_schema(conn: duckdb.DuckDBPyConnection, schema: str) -> list[str]:
    conn.execute(f"drop schema if exists snapshot.{schema} cascade")
    names = _source_tables(conn, schema)
    if names:
        conn.execute(f"create schema snapshot.{schema}")
    for name in names:
        conn.execute(f'create table snapshot.{schema}."{name}" as select * from source.{schema}."{name}"')
    return [f"{schema}.{name}" for name in names]


def _columns(conn: duckdb.DuckDBPyConnection, catalog: str, schema: str, name: str) -> list[tuple[str, str]]:
    return conn.execute("select column_name, data_type from information_schema.columns where table_catalog = ? "
                        "and table_schema = ? and table_name = ? order by ordinal_position",
                        [catalog, schema, name]).fetchall()


def _apply(conn: duckdb.DuckDBPyConnection, changes: Changes) -> frozenset[str]:
    changed = [table for schema in changes.schemas for table in _copy_schema(conn, schema)]
    for table, cursor in changes.tables.items():
        schema, name = table.split(".")
        source, target = f'source.{schema}."{name}"', f'snapshot.{schema}."{name}"'
        columns = _columns(conn, "source", schema, name)
        if not columns:
            raise ValueError(f"changed table {table} is not in the warehouse")
        newest = None
        if cursor is not None and _columns(conn, "snapshot", schema, name) == columns:
            newest = conn.execute(f'select max("{cursor.column}") from {target}').fetchone()[0]
        if newest is None:
            conn.execute(f"create schema if not exists snapshot.{schema}")
            conn.execute(f"create or replace table {target} as select * from {source}")
        else:
            past = f'from {source} where "{cursor.column}" > ?'
            conn.execute(f'delete from {target} where "{cursor.key}" in (select "{cursor.key}" {past})', [newest])
            conn.execute(f"insert into {target} select * {past}", [newest])
        changed.append(table)
    return frozenset(changed)


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
