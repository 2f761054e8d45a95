"""A connection to a warehouse whatever its engine, and the one place that knows their dialects.

The platform's own SQL (the quality suites' frames, the summaries, rollups, publishing) is
written once, in DuckDB's dialect (the embedded default). On another engine it is translated by
sqlglot when it runs, placeholders included (`?` becomes psycopg2's `%s`), with the few
rewrites sqlglot does not make itself (`_postgres`). MetricFlow's SQL is not translated: it is
compiled for the engine in the first place. `Environment.warehouse()` opens one of these for the
current dbt target; the published data (`publication.py`) uses the same translation.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import sqlglot
from sqlglot import exp

SOURCE_DIALECT = "duckdb"
_PLACEHOLDER = "\x00placeholder\x00"


# DuckDB's json_type() names, as Postgres can tell them from json_typeof() (a number is an
# integer when its text has no fraction or exponent).
_POSTGRES_JSON_TYPE = """case json_typeof({value})
    when 'string' then 'VARCHAR' when 'boolean' then 'BOOLEAN' when 'object' then 'OBJECT'
    when 'array' then 'ARRAY' when 'null' then 'NULL'
    when 'number' then case when ({value} #>> '{{}}') ~ '^-?[0-9]+$' then 'BIGINT' else 'DOUBLE' end end"""


def _json_key(path: exp.Expression) -> str:
    """The key of a one-level JSON path (`$.name`), the only kind the platform's SQL uses."""
    text = path.name if isinstance(path, exp.Literal) else path.sql(dialect=SOURCE_DIALECT).strip("'")
    if not text.startswith("$.") or any(c in text[2:] for c in ".[*"):
        raise ValueError(f"JSON path {text!r}: only one-level paths ($.name) translate to other engines")
    return text[2:]


def _postgres(node: exp.Expression) -> exp.Expression:
    """What sqlglot does not translate from DuckDB to Postgres: JSON on text columns (dlt keeps
    JSON as text there), and json_type's type names."""
    if isinstance(node, exp.JSONType):
        value = f"(cast({node.this.sql(dialect='postgres')} as json) -> '{_json_key(node.expression)}')"
        return sqlglot.parse_one(_POSTGRES_JSON_TYPE.format(value=value), read="postgres")
    if isinstance(node, exp.JSONExtractScalar | exp.JSONExtract) and not isinstance(node.this, exp.Cast):
        node.set("this", exp.cast(node.this, "json"))
    return node


@lru_cache(maxsize=512)
def translate(sql: str, dialect: str) -> str:
    """`sql` (DuckDB's dialect) in `dialect`'s, with `?` placeholders in the DB-API driver's style."""
    if dialect == SOURCE_DIALECT:
        return sql
    statements = sqlglot.parse(sql, read=SOURCE_DIALECT)
    rendered = []
    for tree in statements:
        if tree is None:
            continue
        if dialect == "postgres":
            tree = tree.transform(_postgres)
        tree = tree.transform(lambda node: exp.Var(this=_PLACEHOLDER) if isinstance(node, exp.Placeholder) else node)
        text = tree.sql(dialect=dialect)
        # psycopg2 formats with %: literal percent signs are doubled, placeholders become %s
        rendered.append(text.replace("%", "%%").replace(_PLACEHOLDER, "%s"))
    return ";\n".join(rendered)


class Warehouse:
    """A DB-API connection and its dialect; statements are written in DuckDB's and translated.
    Outside a transaction each statement commits on its own, so one that fails (a frame on a
    missing table) leaves the connection usable for the next, on every engine.

    Statements run on a cursor of the connection, except on DuckDB, where a cursor is another
    connection to the database with a transaction of its own: there they run on the connection
    itself, so a caller's open transaction (publishing) includes them."""

    def __init__(self, connection, dialect: str):
        self.connection, self.dialect = connection, dialect

    def sql(self, statement: str) -> str:
        return translate(statement, self.dialect)

    @contextlib.contextmanager
    def _cursor(self) -> Iterator:
        if self.dialect == SOURCE_DIALECT:
            yield self.connection
            return
        cursor = self.connection.cursor()
        try:
            yield cursor
        finally:
            cursor.close()

    def execute(self, statement: str, parameters: Sequence = ()) -> None:
        with self._cursor() as cursor:
            cursor.execute(self.sql(statement), list(parameters))

    def executemany(self, statement: str, rows: Iterable[Sequence]) -> None:
        rows = [list(row) for row in rows]
        if not rows:
            return
        with self._cursor() as cursor:
            cursor.executemany(self.sql(statement), rows)

    def rows(self, statement: str, parameters: Sequence = ()) -> list[tuple]:
        return self.query(statement, parameters)[1]

    def query(self, statement: str, parameters: Sequence = ()) -> tuple[list[str], list[tuple]]:
        """The result's column names and rows."""
        with self._cursor() as cursor:
            cursor.execute(self.sql(statement), list(parameters))
            return [d[0] for d in cursor.description], [tuple(row) for row in cursor.fetchall()]

    def frame(self, statement: str, parameters: Sequence = ()) -> pd.DataFrame:
        """The result as a DataFrame with pandas' types (DuckDB's own conversion where it runs;
        elsewhere decimals become floats and dates datetimes, as DuckDB gives them)."""
        if self.dialect == SOURCE_DIALECT:
            return self.connection.execute(statement, list(parameters)).df()
        with self._cursor() as cursor:
            cursor.execute(self.sql(statement), list(parameters))
            columns = [d[0] for d in cursor.description]
            frame = pd.DataFrame([tuple(row) for row in cursor.fetchall()], columns=columns)
        for column in frame.select_dtypes(include="object").columns:
            values = frame[column].dropna()
            if len(values) and all(isinstance(v, Decimal) for v in values):
                frame[column] = frame[column].astype(float)
            elif len(values) and all(type(v) is date for v in values):
                frame[column] = pd.to_datetime(frame[column])
        return frame

    def replace_table(self, schema: str, name: str, frame: pd.DataFrame) -> int:
        """Replace `schema.name` with the frame's rows, in one transaction: readers see the old
        table or the new one, never half of it. Returns the rows written."""
        if self.dialect == SOURCE_DIALECT:
            self.connection.execute(f"create schema if not exists {schema}")
            self.connection.register("incoming", frame)
            try:
                self.connection.execute(f"create or replace table {schema}.{name} as select * from incoming")
            finally:
                self.connection.unregister("incoming")
            return len(frame)
        import sqlalchemy  # pandas writes to other engines through SQLAlchemy, on this connection

        # sqlglot's dialect is "postgres", SQLAlchemy's "postgresql" (it dropped the alias in 1.4)
        engine = sqlalchemy.create_engine("postgresql+psycopg2://", creator=lambda: self.connection,
                                          poolclass=sqlalchemy.pool.StaticPool)
        self.connection.autocommit = False  # one transaction for the drop, the create and the rows
        try:
            with engine.begin() as conn:
                conn.execute(sqlalchemy.text(f"create schema if not exists {schema}"))
                frame.to_sql(name, conn, schema=schema, if_exists="replace", index=False)
        finally:
            self.connection.autocommit = True
        return len(frame)

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *_) -> None:
        self.close()


TARGETS = ("duckdb", "postgres", "spark")
# Why the steps that read and write the warehouse through a connection (the quality gates, forecasts,
# experiment analysis, publishing, the metrics server, the reports) do not run on the spark target:
# its engine lives inside dbt's process for the length of a build (dbt-spark's session method), and
# the catalog is an embedded metastore only one process may open.
SPARK_UNSUPPORTED = ("not supported on the spark target: Spark runs inside dbt's process (dbt-spark's session "
                     "method), so the platform has no connection to it between builds")


class UnsupportedTarget(ValueError):
    """What the chosen target cannot do, in one line that says why."""


@dataclass(frozen=True)
class WarehouseTarget:
    """Which warehouse the platform runs on (the dbt target) and how to reach it: the one place
    that reads DBT_TARGET and the credentials (the PG* variables, as profiles.yml does), for the
    pipeline and the servers alike."""

    target: str
    duckdb_path: Path  # the embedded default's file (data/warehouse.duckdb)
    postgres_dsn: str
    # the spark target's folder (data/spark): dlt's Parquet sources, the tables, the metastore
    spark_dir: Path | None = None

    @classmethod
    def from_environment(cls, env: Mapping[str, str], data_dir: Path) -> WarehouseTarget:
        target = env.get("DBT_TARGET", "duckdb")
        if target not in TARGETS:
            raise ValueError(f"DBT_TARGET={target!r}: the platform runs on {' or '.join(TARGETS)}")
        dsn = "postgresql://{user}:{password}@{host}:{port}/{db}".format(
            user=env.get("PGUSER", "analytics"), password=quote(env.get("PGPASSWORD", ""), safe=""),
            host=env.get("PGHOST", "localhost"), port=env.get("PGPORT", "5432"), db=env.get("PGDATABASE", "analytics"))
        return cls(target, data_dir / "warehouse.duckdb", dsn, data_dir / "spark")

    def check_engine(self, env: Mapping[str, str]) -> None:
        """Fail in one line, before a build starts, when the target's engine cannot run here: Spark
        needs Java (PySpark starts it from JAVA_HOME, else from PATH) and a master it can parse (the
        profile's spark.master; Spark's own refusal would end dbt with a traceback)."""
        if self.target != "spark":
            return
        master = env.get("PLATFORM_SPARK_MASTER", "local[2]")
        if not (master == "yarn" or master.startswith(("local", "spark://", "k8s://"))):
            raise UnsupportedTarget(f"PLATFORM_SPARK_MASTER={master!r}: Spark's master is local[N], "
                                    "spark://host:port, k8s://host:port or yarn")
        java_home = env.get("JAVA_HOME")
        java = Path(java_home, "bin", "java") if java_home else shutil.which("java", path=env.get("PATH"))
        if not java or not Path(java).exists():
            where = f"JAVA_HOME={java_home} has no bin/java" if java_home else "no java on PATH"
            raise UnsupportedTarget(f"the spark target needs Java 17 or later ({where}): install Debian's "
                                    "default-jre-headless (apt-get install default-jre-headless) or set JAVA_HOME")

    @property
    def spark_sources(self) -> Path:
        """Where dlt writes the sources for Spark: one folder of Parquet files per table."""
        return self.spark_dir / "sources"

    @property
    def spark_tables(self) -> Path:
        """Spark's warehouse folder: a table is the Parquet files under <schema>.db/<table>."""
        return self.spark_dir / "warehouse"

    def connect(self, read_only: bool = True) -> Warehouse:
        """The warehouse as a connection that speaks its dialect; read-only where the engine has it."""
        if self.target == "duckdb":
            import duckdb

            return Warehouse(duckdb.connect(str(self.duckdb_path), read_only=read_only), "duckdb")
        if self.target == "spark":
            if not read_only:
                raise UnsupportedTarget(f"writing to the warehouse is {SPARK_UNSUPPORTED}")
            return spark_tables_reader(self.spark_tables)
        import psycopg2

        connection = psycopg2.connect(self.postgres_dsn)
        connection.autocommit = True
        return Warehouse(connection, "postgres")

    def publication(self, published_dir: Path):
        """Where what readers read is published for this target (`publication.py`)."""
        from semantic.publication import DuckDbSnapshots, PostgresSchemas

        if self.target == "spark":
            raise UnsupportedTarget(f"publishing for readers is {SPARK_UNSUPPORTED}")
        if self.target == "duckdb":
            return DuckDbSnapshots(self.duckdb_path, published_dir)
        return PostgresSchemas(self.postgres_dsn)

    @property
    def location(self) -> str:
        """Where it is, for people (no password)."""
        if self.target == "spark":
            return str(self.spark_tables)
        return str(self.duckdb_path) if self.target == "duckdb" else self.postgres_dsn.split("@")[-1]


def spark_tables_reader(tables: Path) -> Warehouse:
    """The spark target's tables, read: DuckDB in memory with one view per table over the Parquet
    files Spark wrote (<schema>.db/<table>/part-*.parquet), so the platform's summaries read what a
    build made without starting a Spark session (seconds) or opening its single-user metastore."""
    import duckdb

    connection = duckdb.connect()
    for folder in sorted(tables.glob("*.db/*")):
        if folder.is_dir() and any(folder.glob("*.parquet")):
            schema, table = folder.parent.name.removesuffix(".db"), folder.name
            connection.execute(f'create schema if not exists "{schema}"')
            files = str(folder / "*.parquet").replace("'", "''")
            connection.execute(f"create view \"{schema}\".\"{table}\" as select * from read_parquet('{files}')")
    return Warehouse(connection, "duckdb")
