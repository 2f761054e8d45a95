"""Published read snapshots of a DuckDB warehouse: what the metrics server and the reports read.

DuckDB lets one process write a database file, and a reader that opens the file blocks that
writer. So after a run's data has passed its quality gates, the reader-facing schemas are
published into a DuckLake (DuckDB's lakehouse format, `duckdb-ext-ducklake` from PyPI): Parquet
files under `published/lake/`, listed by a catalog in `published/lake.sqlite` (SQLite, which
several processes may open at once, unlike a DuckDB file). Every commit to a DuckLake is a
snapshot that stays readable as it was; readers attach the snapshot that the `CURRENT` pointer
names, read-only, so a run that writes the next one never changes what they see. The pointer is
swapped atomically once the snapshot holds everything (rollups included); its version string
doubles as the data version that caches key on.

Why a DuckLake rather than a new database file per version: a micro-batch changes a few thousand
rows, and copying the whole published database to change them costs as much as the warehouse is
large (tens of gigabytes at a year of 10M events a day). In a DuckLake a micro-batch writes only
its rows (new Parquet files, and delete files for the rows it replaces), so its cost grows with
the batch. The small files micro-batches leave are merged once a table has `MERGE_AFTER_FILES`,
and the snapshots no reader can still hold (superseded more than `RETAIN_SECONDS` ago) are
expired and their files deleted: storage stays that of the current data.

A run that changed only a few tables (a micro-batch) publishes `Changes`: only those tables are
taken from the warehouse, and of an incremental table only the rows past the published newest
cursor value.

`rewrite` changes the current data outside a run where no older version may survive (erasing a
person's data). The change is one transaction, in which each table it changed is written anew:
a DuckLake delete only adds a delete file beside the data file that still holds the rows, and the
catalog's column statistics (each file's and each table's minimum and maximum, an erased id among
them) are only recomputed for new files and tables. Then every older snapshot is expired at once (a
reader still on one fails its next query and moves to the pointer's), the files only they used are
deleted, and the SQLite catalog is vacuumed: no file under `published/` holds the erased rows. A
table is rewritten whole, which costs what the table weighs; erasures are rare, and the alternative
leaves the person's id in the catalog.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from ingestion.paths import fsync
from semantic import duckdb_extensions
from semantic.duckdb_extensions import load_extension

# What readers may see: marts (and the forecasts and insights written beside them) and quality results.
PUBLISHED_SCHEMAS = ("marts", "ml", "quality")
# The catalog name the dbt-compiled SQL (and so MetricFlow's) uses: the warehouse file's stem.
CATALOG = "warehouse"
POINTER = "CURRENT"
LAKE_CATALOG, LAKE_DATA = "lake.sqlite", "lake"
# A snapshot superseded this long ago is held by no reader: readers move to the current one
# within a second, and their queries time out well before.
RETAIN_SECONDS = 600
# Merge a table's small files once it has this many (each micro-batch adds one or two).
MERGE_AFTER_FILES, SMALL_FILE_BYTES = 64, 8 << 20
EXTENSIONS = ("sqlite_scanner", "ducklake")


@dataclass(frozen=True)
class Snapshot:
    version: str
    snapshot_id: int  # the DuckLake snapshot readers attach
    tables: int
    catalog: Path  # the DuckLake's catalog file

    @property
    def published_dir(self) -> Path:
        return self.catalog.parent

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A read-only connection to this snapshot, attached under the warehouse's catalog name."""
        return attach(self.published_dir, self.snapshot_id)


@dataclass(frozen=True)
class Cursor:
    """How an incremental table changes: rows are added or replaced on `key`, each stamped with a
    `column` value (never null) newer than any row already there, so the rows past a snapshot's
    newest value are exactly what changed since.

    `row_time`, where a table declares one, is a time a row keeps for life: a row that replaces
    another has the same (an event re-sent keeps the time it happened; a minute's row its minute).
    The rows a batch replaces are then looked for from its new rows' earliest `row_time` on, which
    the scan prunes to the recent files, instead of among every key the table ever held."""

    key: str
    column: str
    row_time: str | None = None

    def replaced(self, target: str, new_rows: str) -> tuple[str, str]:
        """The statement that deletes the rows of `target` the rows of `new_rows` (a subquery
        selecting them, with one `?` for the cursor) replace, and the query of their earliest row
        time (its answer is the statement's second parameter); no such query without `row_time`."""
        keys = f'"{self.key}" in (select "{self.key}" {new_rows})'
        if self.row_time is None:
            return f"delete from {target} where {keys}", ""
        return (f'delete from {target} where "{self.row_time}" >= ? and {keys}',
                f'select min("{self.row_time}") {new_rows}')


@dataclass(frozen=True)
class Changes:
    """What a run changed in the published schemas; everything else is kept from the current snapshot.

    `tables` ("schema.table") are taken from the warehouse: merged past their `Cursor`, or copied
    whole where they have none (or their columns changed). `schemas` are copied whole.
    """

    tables: Mapping[str, Cursor | None] = field(default_factory=dict)
    schemas: tuple[str, ...] = ()


@dataclass(frozen=True)
class Merged:
    """The rows a publish added to a cursor table (or replaced in it): those past `after` in `column`."""

    column: str
    after: object


# What `build` is told: the tables a snapshot took from the warehouse (None: all of them), and of
# those, the ones whose new rows were merged past their cursor.
Build = Callable[[duckdb.DuckDBPyConnection, frozenset[str] | None, Mapping[str, Merged]], object]


def attach(published_dir: Path, snapshot_id: int | None = None) -> duckdb.DuckDBPyConnection:
    """A connection with the published DuckLake attached under the warehouse's catalog name (and
    in use): the given snapshot, read-only, or (None) the latest, to write."""
    conn = duckdb_extensions.connect()
    try:
        attach_into(conn, published_dir, snapshot_id, CATALOG)
        conn.execute(f"use {CATALOG}")
    except BaseException:
        conn.close()
        raise
    return conn


def attach_into(conn: duckdb.DuckDBPyConnection, published_dir: Path, snapshot_id: int | None, alias: str) -> None:
    """Attach the published DuckLake to `conn` as `alias`. The data path is given every time, so a
    data directory that was moved or copied reads its own files."""
    for extension in EXTENSIONS:
        load_extension(conn, extension)
    options = [f"data_path '{published_dir / LAKE_DATA}/'", "override_data_path true"]
    if snapshot_id is not None:
        options += ["read_only", f"snapshot_version {int(snapshot_id)}"]
    conn.execute(f"attach 'ducklake:sqlite:{published_dir / LAKE_CATALOG}' as {alias} ({', '.join(options)})")


def publish(warehouse: Path, published_dir: Path, build: Build | None = None,
            changes: Changes | None = None) -> Snapshot:
    """Publish the published schemas of `warehouse` as a new snapshot and make it current.

    With `changes`, only the changed tables are taken from the warehouse (without a current
    snapshot, everything is). `build` adds derived tables (the metrics server's rollups) in the
    same transaction, so no reader ever sees the data without them. On any error the transaction
    is rolled back and the current snapshot stays.
    """
    published_dir.mkdir(parents=True, exist_ok=True)
    version = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    with _publishing(published_dir):
        base = current(published_dir) if changes is not None else None
        with attach(published_dir) as conn:
            conn.execute(f"attach '{warehouse}' as source (read_only)")
            conn.execute("begin")
            try:
                changed, merged = (_copy_all(conn), {}) if base is None else _apply(conn, changes)
                if build is not None:
                    build(conn, changed, merged)
                tables = _count_tables(conn)
                conn.execute("commit")
            except BaseException:
                conn.execute("rollback")
                raise
            conn.execute("detach source")
            _merge_small_files(conn, changed)
            snapshot_id = conn.execute(f"select id from {CATALOG}.current_snapshot()").fetchone()[0]
            snapshot = Snapshot(version, snapshot_id, tables, published_dir / LAKE_CATALOG)
            history = _point_to(published_dir, snapshot)
            _expire(conn, history)
        _remove_snapshot_files_of_earlier_releases(published_dir)
    return snapshot


def rewrite(published_dir: Path, change: Callable[[duckdb.DuckDBPyConnection], frozenset[str]]) -> Snapshot:
    """A new snapshot: the latest as `change` leaves it (one transaction; `change` returns the
    tables, "schema.table", it changed), made current, every older snapshot expired and its files
    deleted. On any error the transaction is rolled back and the current snapshot stays."""
    if current(published_dir) is None:
        raise FileNotFoundError(f"no published snapshot under {published_dir}: run the main job first")
    version = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    with _publishing(published_dir), attach(published_dir) as conn:
        conn.execute("begin")
        try:
            changed = change(conn)
            for table in sorted(changed):
                schema, name = table.split(".")
                target = f'{CATALOG}.{schema}."{name}"'
                conn.execute(f"create or replace table {target} as select * from {target}")
            tables = _count_tables(conn)
            conn.execute("commit")
        except BaseException:
            conn.execute("rollback")
            raise
        # what else has delete files (a rollup `change` rebuilt in place): rewritten without the rows
        conn.execute(f"call ducklake_rewrite_data_files('{CATALOG}', delete_threshold => 0)")
        snapshot_id = conn.execute(f"select id from {CATALOG}.current_snapshot()").fetchone()[0]
        snapshot = Snapshot(version, snapshot_id, tables, published_dir / LAKE_CATALOG)
        _point_to(published_dir, snapshot, keep_history=False)
        _expire(conn, [[snapshot_id, time.time()]])
    _vacuum_catalog(published_dir / LAKE_CATALOG)
    return snapshot


def _vacuum_catalog(catalog: Path) -> None:
    """Rewrite the SQLite catalog so that the pages of expired entries (file statistics hold column
    minimums and maximums, an erased id among them) leave the file. A reader attaching meanwhile
    makes SQLite answer busy: wait for it."""
    with contextlib.closing(sqlite3.connect(catalog, timeout=30)) as db:
        db.execute("vacuum")


def _count_tables(conn: duckdb.DuckDBPyConnection) -> int:
    return conn.execute(
        "select count(*) from information_schema.tables where table_catalog = ? and table_schema in "
        f"({', '.join('?' for _ in PUBLISHED_SCHEMAS)}) and table_type = 'BASE TABLE'",
        [CATALOG, *PUBLISHED_SCHEMAS]).fetchone()[0]


@contextlib.contextmanager
def _publishing(published_dir: Path) -> Iterator[None]:
    """One publisher at a time: the pointer must move in the order snapshots were committed."""
    with open(published_dir / ".publish.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _tables(conn: duckdb.DuckDBPyConnection, catalog: str, schema: str) -> list[str]:
    return [r[0] for r in conn.execute(
        "select table_name from information_schema.tables "
        "where table_catalog = ? and table_schema = ? and table_type = 'BASE TABLE'", [catalog, schema]).fetchall()]


def _copy_schema(conn: duckdb.DuckDBPyConnection, schema: str) -> list[str]:
    """Replace the published schema with the warehouse's: its tables rewritten, the ones gone dropped."""
    names = _tables(conn, "source", schema)
    conn.execute(f"create schema if not exists {CATALOG}.{schema}")
    for gone in set(_tables(conn, CATALOG, schema)) - set(names):
        conn.execute(f'drop table {CATALOG}.{schema}."{gone}"')
    for name in names:
        conn.execute(f'create or replace table {CATALOG}.{schema}."{name}" as select * from source.{schema}."{name}"')
    return [f"{schema}.{name}" for name in names]


def _copy_all(conn: duckdb.DuckDBPyConnection) -> None:
    for schema in PUBLISHED_SCHEMAS:
        _copy_schema(conn, schema)


def _columns(conn: duckdb.DuckDBPyConnection, catalog: str, schema: str, name: str) -> list[tuple[str, str]]:
    return conn.execute("select column_name, data_type from information_schema.columns where table_catalog = ? "
                        "and table_schema = ? and table_name = ? order by ordinal_position",
                        [catalog, schema, name]).fetchall()


def _apply(conn: duckdb.DuckDBPyConnection, changes: Changes) -> tuple[frozenset[str], dict[str, Merged]]:
    changed = [table for schema in changes.schemas for table in _copy_schema(conn, schema)]
    merged = {}
    for table, cursor in changes.tables.items():
        schema, name = table.split(".")
        source, target = f'source.{schema}."{name}"', f'{CATALOG}.{schema}."{name}"'
        columns = _columns(conn, "source", schema, name)
        if not columns:
            raise ValueError(f"changed table {table} is not in the warehouse")
        newest = None
        if cursor is not None and _columns(conn, CATALOG, schema, name) == columns:
            newest = conn.execute(f'select max("{cursor.column}") from {target}').fetchone()[0]
        if newest is None:
            conn.execute(f"create schema if not exists {CATALOG}.{schema}")
            conn.execute(f"create or replace table {target} as select * from {source}")
        else:
            past = f'from {source} where "{cursor.column}" > ?'
            delete, earliest = cursor.replaced(target, past)
            first = conn.execute(earliest, [newest]).fetchone()[0] if earliest else None
            if not earliest or first is not None:  # (a batch without new rows replaces nothing)
                conn.execute(delete, [first, newest] if earliest else [newest])
            conn.execute(f"insert into {target} select * {past}", [newest])
            merged[table] = Merged(cursor.column, newest)
        changed.append(table)
    return frozenset(changed), merged


def _merge_small_files(conn: duckdb.DuckDBPyConnection, changed: frozenset[str] | None) -> None:
    """Merge the small files of the tables a micro-batch added to, once there are enough of them:
    a new snapshot with the same rows, which readers attach from the pointer on.

    DuckLake merges only files without deleted rows, so the files some of whose rows were replaced
    are first rewritten without them. The rows micro-batches replace are recent ones (a minute
    recomputed, an event re-sent), which live in the recent small files; only files under
    `SMALL_FILE_BYTES` are merged, so the cost is that of the recent batches, never the table's."""
    for table in sorted(changed or ()):  # None: every table was just written whole
        schema, name = table.split(".")
        small = conn.execute(f"select count(*) from ducklake_list_files('{CATALOG}', ?, schema => ?) "
                             "where data_file_size_bytes < ?", [name, schema, SMALL_FILE_BYTES]).fetchone()[0]
        if small >= MERGE_AFTER_FILES:
            conn.execute(f"call ducklake_rewrite_data_files('{CATALOG}', ?, schema => ?, delete_threshold => 0)",
                         [name, schema])
            conn.execute(f"call ducklake_merge_adjacent_files('{CATALOG}', ?, schema => ?, max_file_size => ?)",
                         [name, schema, SMALL_FILE_BYTES])


def _point_to(published_dir: Path, snapshot: Snapshot, keep_history: bool = True) -> list[list]:
    """Make `snapshot` current; the snapshots superseded within `RETAIN_SECONDS` (which readers may
    still hold), with when they were, including the one just superseded (none without `keep_history`)."""
    previous = _read_pointer(published_dir) if keep_history else {}
    now = time.time()
    history = [h for h in previous.get("history", []) if now - h[1] < RETAIN_SECONDS]
    if "snapshot" in previous:
        history.append([previous["snapshot"], now])
    body = {"version": snapshot.version, "snapshot": snapshot.snapshot_id, "tables": snapshot.tables,
            "history": history}
    tmp = published_dir / f".{POINTER}.tmp"
    tmp.write_text(json.dumps(body) + "\n")
    fsync(tmp)
    os.replace(tmp, published_dir / POINTER)
    return [*history, [snapshot.snapshot_id, now]]


def _expire(conn: duckdb.DuckDBPyConnection, held: list[list]) -> None:
    """Expire every snapshot no reader may hold (the ones never made current, such as a merge's
    steps, included), and delete the files only they used."""
    keep = {snapshot_id for snapshot_id, _ in held}
    old = [r[0] for r in conn.execute(f"select snapshot_id from ducklake_snapshots('{CATALOG}')").fetchall()
           if r[0] not in keep]
    if old:
        conn.execute(f"call ducklake_expire_snapshots('{CATALOG}', versions => {old})")
        conn.execute(f"call ducklake_cleanup_old_files('{CATALOG}', cleanup_all => true)")


def _read_pointer(published_dir: Path) -> dict:
    try:
        body = json.loads((published_dir / POINTER).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}  # nothing published, or by a release that published database files (republished whole)
    return body if isinstance(body, dict) else {}


def _remove_snapshot_files_of_earlier_releases(published_dir: Path) -> None:
    for old in published_dir.glob("warehouse-*.duckdb*"):
        old.unlink(missing_ok=True)


def current(published_dir: Path) -> Snapshot | None:
    body = _read_pointer(published_dir)
    if "snapshot" not in body:
        return None
    return Snapshot(body["version"], int(body["snapshot"]), int(body["tables"]), published_dir / LAKE_CATALOG)


def connect_current(published_dir: Path) -> tuple[duckdb.DuckDBPyConnection, Snapshot]:
    """A read-only connection to the current snapshot, attached under the warehouse's catalog name."""
    snapshot = current(published_dir)
    if snapshot is None:
        raise FileNotFoundError(f"no published snapshot under {published_dir}: run the main job first")
    return snapshot.connect(), snapshot


def extract(published_dir: Path, tables: list[str], path: Path) -> Path:
    """A DuckDB file with these tables ("schema.table") of the current snapshot, for the reports
    (Evidence reads DuckDB files, not DuckLakes)."""
    conn, _ = connect_current(published_dir)
    with conn:
        return copy_tables(conn, lambda schema, name: f'{CATALOG}.{schema}."{name}"', tables, path)


def copy_tables(conn: duckdb.DuckDBPyConnection, source: Callable[[str, str], str], tables: list[str],
                path: Path) -> Path:
    """Write `tables` ("schema.table", read from `source(schema, name)` on `conn`) into a new DuckDB
    file at `path`, under their own schema names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    conn.execute(f"attach '{path}' as extract")
    try:
        for table in tables:
            schema, name = table.split(".")
            conn.execute(f"create schema if not exists extract.{schema}")
            conn.execute(f'create table extract.{schema}."{name}" as select * from {source(schema, name)}')
    finally:
        conn.execute("detach extract")
    return path
