"""What readers read: the data that passed the quality gates, published by the pipeline.

Readers (the metrics server, the SQL endpoint, the reports, the drift sensor) never read the
warehouse a run is writing. The last step of a run publishes the marts, forecasts, insights
and quality results, with the rollups built from them, and readers switch to the new version
whole, so they always see one consistent version that passed its gates. How depends on the
engine; `Environment.publication()` chooses by the dbt target:

- DuckDB (the embedded default): snapshots of a DuckLake (`snapshots.py`) and a pointer swapped
  atomically; a reader attaches the current snapshot under the warehouse's catalog name.
- PostgreSQL: schemas `published_<schema>` in the warehouse's own database, replaced in one
  transaction (Postgres' DDL is transactional: a reader sees the tables before or after it,
  never between), and a row per version in `published_meta.versions`. New tables are copied
  beside the live ones first and swapped in at the end, so readers wait only for the swap (and
  the rollups built after it, in the same transaction).

Both give readers a `Reader` (run SQL in the engine's dialect; MetricFlow's client on it), map
the dbt relations of the semantic manifest onto what they published (`relations`), and give the
reports a DuckDB file holding the published tables they read (`extract`): Evidence reads DuckDB files.
`rewrite` changes what readers read outside a run, where every version must change (erasing a
person's data): the DuckDB target changes the lake in one transaction and expires every older
snapshot, deleting their files; PostgreSQL changes its published schemas in one transaction.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import duckdb
import pyarrow as pa

from semantic import snapshots
from semantic.duckdb_extensions import load_extension
from semantic.warehouse import Warehouse

PUBLISHED_SCHEMAS = snapshots.PUBLISHED_SCHEMAS
BATCH_ROWS = 65_536  # rows per record batch a streamed result is read in
VERSION_FORMAT = "%Y%m%dT%H%M%S%fZ"


@dataclass(frozen=True)
class Version:
    version: str  # also the data version caches key on
    published_at: datetime
    location: str  # where it is, for people: a file, or a database's schemas
    tables: int = -1


def new_version() -> str:
    return datetime.now(UTC).strftime(VERSION_FORMAT)


def published_at(version: str) -> datetime:
    return datetime.strptime(version, VERSION_FORMAT).replace(tzinfo=UTC)


class Reader(Protocol):
    """Runs statements on one published version, each on its own cursor, from any thread."""

    engine: str  # "duckdb" or "postgres": the dialect of what it runs

    def run(self, sql: str, parameters: Sequence | dict | None = None, timezone: str = "UTC",
            fetch: bool = True) -> tuple[list[str], list[tuple]]: ...

    def stream(self, sql: str, timezone: str = "UTC",
               batch_rows: int = BATCH_ROWS) -> contextlib.AbstractContextManager[pa.RecordBatchReader]:
        """The statement's result as Arrow record batches, read from the engine as they are consumed
        (exports): never the whole result in memory. The statement has run when it is entered."""

    def close(self) -> None: ...


# What `publish` calls to add derived tables (the rollups) to a new version before readers see it:
# the version's connection, the Reader on it, how relations map, and the tables taken (None: all).
# With the tables whose new rows were merged past their cursor (`snapshots.Merged`).
Build = Callable[[Warehouse, Reader, "Publication", frozenset[str] | None, Mapping[str, snapshots.Merged]], object]
# What `rewrite` calls on the published data: its connection and how relations map; returns the
# published tables ("schema.table") it changed.
Change = Callable[[Warehouse, "Publication"], frozenset[str]]


class Publication(Protocol):
    engine: str

    def current(self) -> Version | None: ...

    def open(self) -> tuple[Reader, Version]:
        """A reader on the current version; FileNotFoundError before anything was published."""

    def publish(self, changes: snapshots.Changes | None = None, build: Build | None = None) -> Version: ...

    def rewrite(self, change: Change, build: Build | None = None) -> Version:
        """A new version: the current one as `change` leaves it, rollups rebuilt over what it
        changed; no reader can open an older version afterwards."""

    def relation(self, schema: str, table: str) -> tuple[str | None, str, str]:
        """(database, schema, table) under which readers find a published table."""

    def qualified(self, schema: str, table: str) -> str:
        """That relation as SQL, quoted."""

    def qualified_schema(self, schema: str) -> str:
        """The schema of a published table, as SQL."""

    def warehouse_table(self, schema: str, table: str) -> str:
        """The warehouse's "schema.table" that a published relation's schema and table copy."""

    def extract(self, tables: Sequence[str], path: Path) -> Path:
        """A new DuckDB file at `path` with these published tables of the current version
        ("schema.table", under their own schema names)."""


class DuckDbReader:
    """A published snapshot, attached read-only under the warehouse's catalog name.

    Each query runs on a cursor of its own (its own session, so readers on threads never share a
    time zone); `in_transaction` runs them on the connection, whose open transaction they must see
    (the rollups built while publishing)."""

    engine = "duckdb"

    def __init__(self, connection: duckdb.DuckDBPyConnection, in_transaction: bool = False):
        self.connection, self.in_transaction = connection, in_transaction

    def run(self, sql, parameters=None, timezone="UTC", fetch=True):
        cursor = self.connection if self.in_transaction else self.connection.cursor()
        try:
            # each cursor has its own session: the zone of one query never leaks into another
            cursor.execute("set TimeZone = '" + timezone.replace("'", "''") + "'")
            cursor.execute(sql, parameters)
            if not fetch:
                return [], []
            return [d[0] for d in cursor.description], cursor.fetchall()
        finally:
            if not self.in_transaction:
                cursor.close()

    @contextlib.contextmanager
    def stream(self, sql, timezone="UTC", batch_rows=BATCH_ROWS):
        cursor = self.connection.cursor()
        try:
            cursor.execute("set TimeZone = '" + timezone.replace("'", "''") + "'")
            cursor.execute(sql)
            yield cursor.fetch_record_batch(batch_rows)  # DuckDB's streaming result, batch by batch
        finally:
            cursor.close()

    def close(self) -> None:
        self.connection.close()


class DuckDbSnapshots:
    """Published snapshots of a DuckDB warehouse, in a DuckLake (see `snapshots.py`)."""

    engine = "duckdb"

    def __init__(self, warehouse: Path, published_dir: Path):
        self.warehouse, self.published_dir = warehouse, published_dir

    @staticmethod
    def _version(snapshot: snapshots.Snapshot) -> Version:
        return Version(snapshot.version, published_at(snapshot.version),
                       f"{snapshot.catalog} (snapshot {snapshot.snapshot_id})", snapshot.tables)

    def current(self) -> Version | None:
        snapshot = snapshots.current(self.published_dir)
        return None if snapshot is None else self._version(snapshot)

    def open(self) -> tuple[DuckDbReader, Version]:
        connection, snapshot = snapshots.connect_current(self.published_dir)
        return DuckDbReader(connection), self._version(snapshot)

    def publish(self, changes=None, build=None) -> Version:
        def on_snapshot(connection, changed, merged):
            if build is not None:
                build(Warehouse(connection, "duckdb"), DuckDbReader(connection, in_transaction=True), self, changed,
                      merged)

        return self._version(snapshots.publish(self.warehouse, self.published_dir, build=on_snapshot,
                                               changes=changes))

    def rewrite(self, change, build=None) -> Version:
        def on_snapshot(connection):
            warehouse = Warehouse(connection, "duckdb")
            changed = change(warehouse, self)
            if build is not None and changed:
                build(warehouse, DuckDbReader(connection, in_transaction=True), self, changed, {})
            return changed

        return self._version(snapshots.rewrite(self.published_dir, on_snapshot))

    def relation(self, schema, table):
        return snapshots.CATALOG, schema, table

    def qualified(self, schema, table):
        return f"{snapshots.CATALOG}.{schema}.{_identifier(table)}"

    def qualified_schema(self, schema):
        return f"{snapshots.CATALOG}.{schema}"

    def warehouse_table(self, schema, table):
        return f"{schema}.{table}"

    def extract(self, tables, path):
        return snapshots.extract(self.published_dir, list(tables), path)


class PostgresReader:
    """Connections to the warehouse's database, one per thread at a time (a pool)."""

    engine = "postgres"

    def __init__(self, dsn: str, size: int = 8):
        from psycopg2.pool import ThreadedConnectionPool

        self._pool = ThreadedConnectionPool(1, size, dsn)
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _connection(self) -> Iterator:
        connection = self._pool.getconn()
        connection.autocommit = True
        try:
            yield connection
        finally:
            self._pool.putconn(connection)

    def run(self, sql, parameters=None, timezone="UTC", fetch=True):
        with self._connection() as connection, connection.cursor() as cursor:
            cursor.execute("set time zone %s", [timezone])
            cursor.execute(sql, parameters)
            if not fetch:
                return [], []
            return [d[0] for d in cursor.description], cursor.fetchall()

    @contextlib.contextmanager
    def stream(self, sql, timezone="UTC", batch_rows=BATCH_ROWS):
        """A server-side cursor (a named one, in a read-only transaction), fetched `batch_rows` at a time."""
        with self._connection() as connection:
            connection.autocommit = False
            try:
                with connection.cursor() as session:
                    session.execute("set transaction read only")
                    session.execute("set local time zone %s", [timezone])
                with connection.cursor(name="semantic_stream") as cursor:
                    cursor.execute(sql)
                    first = cursor.fetchmany(batch_rows)
                    schema = pa.schema([(d.name, _arrow_type(d.type_code, timezone)) for d in cursor.description])

                    def batches():
                        rows = first
                        while rows:
                            yield pa.record_batch([_arrow_array(column, field.type) for column, field
                                                   in zip(zip(*rows, strict=True), schema, strict=True)],
                                                  schema=schema)
                            rows = cursor.fetchmany(batch_rows)

                    yield pa.RecordBatchReader.from_batches(schema, batches())
            finally:
                connection.rollback()
                connection.autocommit = True

    def close(self) -> None:
        self._pool.closeall()


# PostgreSQL's type OIDs as Arrow types; numeric keeps 9 decimals (an aggregate's numeric has no
# declared scale); what is not listed is text
_PG_ARROW = {16: pa.bool_(), 20: pa.int64(), 21: pa.int64(), 23: pa.int64(), 700: pa.float64(), 701: pa.float64(),
             1700: pa.decimal128(38, 9), 1082: pa.date32(), 1114: pa.timestamp("us")}


def _arrow_type(oid: int, timezone: str) -> pa.DataType:
    return pa.timestamp("us", tz=timezone) if oid == 1184 else _PG_ARROW.get(oid, pa.string())


def _arrow_array(values: tuple, kind: pa.DataType) -> pa.Array:
    if pa.types.is_decimal(kind):  # whatever scale the values have, cut to the column's
        return pa.array(values).cast(kind, safe=False)
    if pa.types.is_string(kind):
        return pa.array([None if v is None else str(v) for v in values], kind)
    return pa.array(values, kind)


class PostgresSchemas:
    """Published schemas (`published_<schema>`) in a PostgreSQL warehouse's own database."""

    engine = "postgres"
    META = "published_meta"
    PREFIX = "published_"

    def __init__(self, dsn: str):
        self.dsn = dsn

    def _connect(self, autocommit: bool = True):
        import psycopg2

        connection = psycopg2.connect(self.dsn)
        connection.autocommit = autocommit
        return connection

    @property
    def _database(self) -> str:
        return self.dsn.rsplit("/", 1)[-1].split("?")[0]

    def current(self) -> Version | None:
        import psycopg2

        try:
            with contextlib.closing(self._connect()) as connection, connection.cursor() as cursor:
                cursor.execute(f"select version, tables from {self.META}.versions order by version desc limit 1")
                row = cursor.fetchone()
        except psycopg2.errors.UndefinedTable:
            return None
        if row is None:
            return None
        return Version(row[0], published_at(row[0]), f"{self._database}: {self.PREFIX}*", row[1])

    def open(self) -> tuple[PostgresReader, Version]:
        version = self.current()
        if version is None:
            raise FileNotFoundError(f"nothing published in {self._database} yet: run the main job")
        return PostgresReader(self.dsn), version

    def relation(self, schema, table):
        return None, f"{self.PREFIX}{schema}", table

    def qualified(self, schema, table):
        return f"{self.PREFIX}{schema}.{_identifier(table)}"

    def qualified_schema(self, schema):
        return f"{self.PREFIX}{schema}"

    def warehouse_table(self, schema, table):
        return f"{schema.removeprefix(self.PREFIX)}.{table}"

    def publish(self, changes=None, build=None) -> Version:
        """Copy what changed beside the live tables, then swap, build the rollups and record the
        version, all in one transaction."""
        version = new_version()
        connection = self._connect(autocommit=False)
        try:
            warehouse = Warehouse(connection, "postgres")
            warehouse.execute(f"create schema if not exists {self.META}")
            warehouse.execute(f"create table if not exists {self.META}.versions (version varchar primary key, "
                              "published_at timestamptz not null, tables integer not null)")
            source = self._source_tables(warehouse)
            taken, merged = self._stage(warehouse, source, changes)
            if build is not None:
                build(warehouse, _TransactionReader(connection), self,
                      None if changes is None else frozenset(taken), merged)
            tables = sum(len(names) for names in source.values())
            warehouse.execute(f"insert into {self.META}.versions values (?, ?, ?)",
                              [version, published_at(version), tables])
            connection.commit()
        except BaseException:
            connection.rollback()
            raise
        finally:
            connection.close()
        return Version(version, published_at(version), f"{self._database}: {self.PREFIX}*", tables)

    @staticmethod
    def _source_tables(warehouse: Warehouse) -> dict[str, list[str]]:
        rows = warehouse.rows("select table_schema, table_name from information_schema.tables where table_type = "
                              "'BASE TABLE' and table_schema in (" + ", ".join("?" for _ in PUBLISHED_SCHEMAS) + ")",
                              list(PUBLISHED_SCHEMAS))
        found: dict[str, list[str]] = {schema: [] for schema in PUBLISHED_SCHEMAS}
        for schema, table in rows:
            found[schema].append(table)
        return found

    def _stage(self, warehouse: Warehouse, source: dict[str, list[str]],
               changes: snapshots.Changes | None) -> tuple[list[str], dict[str, snapshots.Merged]]:
        """Bring the published schemas to the warehouse's tables (all, or those `changes` names);
        the tables taken, and those whose new rows were merged past their cursor."""
        for schema in PUBLISHED_SCHEMAS:
            warehouse.execute(f"create schema if not exists {self.PREFIX}{schema}")
        published = self._published_tables(warehouse)
        if changes is None:
            whole = [f"{s}.{t}" for s, names in source.items() for t in names]
            merged: dict[str, snapshots.Cursor] = {}
        else:
            whole = [f"{s}.{t}" for s in changes.schemas for t in source.get(s, [])]
            merged = {t: c for t, c in changes.tables.items() if c is not None and t in published}
            whole += [t for t, c in changes.tables.items() if t not in merged]
        for table in whole:  # copied beside the live table first: readers are not held up by the copy
            schema, name = table.split(".")
            warehouse.execute(f'drop table if exists {self.PREFIX}{schema}."{name}__next"')
            warehouse.execute(f'create table {self.PREFIX}{schema}."{name}__next" as select * from {schema}."{name}"')
        for table in whole:
            schema, name = table.split(".")
            warehouse.execute(f'drop table if exists {self.qualified(schema, name)}')
            warehouse.execute(f'alter table {self.PREFIX}{schema}."{name}__next" rename to "{name}"')
        since = {}
        for table, cursor in merged.items():  # new rows only: row locks, no reader waits
            schema, name = table.split(".")
            target = self.qualified(schema, name)
            newest = warehouse.rows(f'select max("{cursor.column}") from {target}')[0][0]
            if newest is None:
                warehouse.execute(f'insert into {target} select * from {schema}."{name}"')
                continue
            past = f'from {schema}."{name}" where "{cursor.column}" > ?'
            delete, earliest = cursor.replaced(target, past)
            first = warehouse.rows(earliest, [newest])[0][0] if earliest else None
            if not earliest or first is not None:  # (a batch without new rows replaces nothing)
                warehouse.execute(delete, [first, newest] if earliest else [newest])
            warehouse.execute(f"insert into {target} select * {past}", [newest])
            since[table] = snapshots.Merged(cursor.column, newest)
        if changes is None:  # a table the warehouse no longer has is no longer published
            for table in published - set(whole):
                schema, name = table.split(".")
                warehouse.execute(f"drop table if exists {self.qualified(schema, name)}")
        return [*whole, *merged], since

    def rewrite(self, change, build=None) -> Version:
        """The change, the rollups over what it changed and a new version row, in one transaction."""
        version = new_version()
        connection = self._connect(autocommit=False)
        try:
            warehouse = Warehouse(connection, "postgres")
            changed = change(warehouse, self)
            if build is not None and changed:
                build(warehouse, _TransactionReader(connection), self, changed, {})
            tables = len(self._published_tables(warehouse))
            warehouse.execute(f"insert into {self.META}.versions values (?, ?, ?)",
                              [version, published_at(version), tables])
            connection.commit()
        except BaseException:
            connection.rollback()
            raise
        finally:
            connection.close()
        return Version(version, published_at(version), f"{self._database}: {self.PREFIX}*", tables)

    def _published_tables(self, warehouse: Warehouse) -> set[str]:
        rows = warehouse.rows("select table_schema, table_name from information_schema.tables where table_schema in ("
                              + ", ".join("?" for _ in PUBLISHED_SCHEMAS) + ")",
                              [f"{self.PREFIX}{s}" for s in PUBLISHED_SCHEMAS])
        return {f"{schema.removeprefix(self.PREFIX)}.{table}" for schema, table in rows}

    def extract(self, tables, path):
        """The published tables, read through DuckDB's postgres extension (from its PyPI wheel)."""
        with duckdb.connect() as conn:
            load_extension(conn, "postgres_scanner")
            conn.execute(f"attach '{_libpq(self.dsn)}' as published (type postgres, read_only)")
            return snapshots.copy_tables(conn, lambda schema, name: f'published.{self.PREFIX}{schema}."{name}"',
                                         list(tables), path)


class _TransactionReader:
    """A Reader on the publishing transaction itself: the rollups it builds read the tables it
    is publishing, before anyone else can."""

    engine = "postgres"

    def __init__(self, connection):
        self.connection = connection

    def run(self, sql, parameters=None, timezone="UTC", fetch=True):
        with self.connection.cursor() as cursor:
            cursor.execute("set local time zone %s", [timezone])
            cursor.execute(sql, parameters)
            if not fetch:
                return [], []
            return [d[0] for d in cursor.description], cursor.fetchall()

    def close(self) -> None:
        """The transaction belongs to `publish`."""


def _identifier(name: str) -> str:
    """A table name as SQL: quoted unless it is a plain lower-case name (dbt's names are)."""
    return name if re.fullmatch(r"[a-z_][a-z0-9_]*", name) else '"' + name.replace('"', '""') + '"'


def _libpq(dsn: str) -> str:
    """A postgresql:// URI as libpq's key=value string, which DuckDB's postgres extension reads."""
    from psycopg2.extensions import parse_dsn

    return " ".join(f"{key}={value}" for key, value in parse_dsn(dsn).items() if value != "")

