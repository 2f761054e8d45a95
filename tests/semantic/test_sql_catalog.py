"""The SQL endpoint's system catalog, read as BI tools read it: SQLAlchemy's inspector (what Superset
lists datasets and columns with) and pandas, the queries of superset/db_engine_specs/postgres.py,
psql's describe commands, and pg_catalog / information_schema directly, with PostgreSQL's types and
OIDs for every column of the served tables."""

from __future__ import annotations

import os
import subprocess

import pandas as pd
import psycopg2
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from tests.semantic.sql_helpers import connect, revenue_by_country

VIEWS = ("orders", "events", "sessions", "marketing_spend", "forecasts")


def _engine(sql_endpoint, driver: str) -> sa.Engine:
    return sa.create_engine(f"postgresql+{driver}://bi:{sql_endpoint.admin}@127.0.0.1:{sql_endpoint.port}/metrics")


@pytest.mark.parametrize("driver", ["psycopg2", "psycopg"])
def test_sqlalchemy_inspector_and_pandas(sql_endpoint, published, driver):
    engine = _engine(sql_endpoint, driver)
    try:
        inspector = sa.inspect(engine)
        assert inspector.default_schema_name == "public"
        assert "public" in inspector.get_schema_names()
        tables = inspector.get_table_names()
        assert {*VIEWS, "metrics"} <= set(tables) and not any(t.startswith(("pg_", "sql_")) for t in tables)
        assert inspector.get_view_names() == [] and inspector.get_foreign_table_names() == []
        columns = {c["name"]: c for c in inspector.get_columns("orders")}
        assert isinstance(columns["revenue"]["type"], postgresql.NUMERIC)
        assert isinstance(columns["user__country"]["type"], postgresql.TEXT)
        assert isinstance(columns["metric_time"]["type"], postgresql.DATE)
        assert isinstance(columns["metric_time__hour"]["type"], postgresql.TIMESTAMP)
        assert isinstance(columns["user__channel__is_paid"]["type"], postgresql.BOOLEAN)
        assert columns["revenue"]["comment"]  # the measure's description
        assert inspector.get_pk_constraint("orders")["constrained_columns"] == []
        assert inspector.get_foreign_keys("orders") == [] and inspector.get_indexes("orders") == []
        assert inspector.get_table_comment("orders")["text"]
        assert inspector.has_table("orders") and not inspector.has_table("fct_orders")
        table = sa.Table("orders", sa.MetaData(), autoload_with=engine)
        with engine.connect() as conn:
            frame = pd.read_sql(sa.select(table.c.user__country, table.c.revenue), conn)
            one = pd.read_sql(sa.text("select revenue from orders where user__country = :country"), conn,
                              params={"country": "US"})
    finally:
        engine.dispose()
    expected = revenue_by_country(published)  # pandas reads numeric as float (coerce_float)
    assert {c: r for c, r in zip(frame.user__country, frame.revenue, strict=True)} == {
        c: pytest.approx(float(r)) for c, (r, _) in expected.items()}
    assert one.revenue.tolist() == [pytest.approx(float(expected["US"][0]))]


def test_the_queries_superset_sends(sql_endpoint, published):
    """superset/db_engine_specs/postgres.py, with Superset's default driver (psycopg2): get_catalog_names,
    get_prequeries (the schema picked in SQL Lab), get_cancel_query_id, estimate_statement_cost."""
    with psycopg2.connect(host="127.0.0.1", port=sql_endpoint.port, user="bi", dbname="metrics",
                          password=sql_endpoint.admin) as conn, conn.cursor() as cursor:
        cursor.execute("\nSELECT datname FROM pg_database\nWHERE datistemplate = false;\n            ")
        assert cursor.fetchall() == [("metrics",)]
        cursor.execute('set search_path = "public"')
        cursor.execute("SELECT pg_backend_pid()")
        assert isinstance(cursor.fetchone()[0], int)
        cursor.execute("EXPLAIN select user__country, revenue from orders")
        assert "Cube query on orders" in cursor.fetchone()[0]
        cursor.execute("select user__country, revenue from orders order by 1")
        assert dict(cursor.fetchall()) == {c: r for c, (r, _) in revenue_by_country(published).items()}


def test_catalog_tables_describe_the_served_tables_with_postgres_types(sql_endpoint):
    with connect(sql_endpoint, autocommit=True) as conn:
        types = dict(conn.execute("""
            select a.attname, a.atttypid::int from pg_catalog.pg_attribute a
            join pg_catalog.pg_class c on c.oid = a.attrelid join pg_catalog.pg_namespace n on n.oid = c.relnamespace
            where n.nspname = 'public' and c.relname = 'orders' and a.attnum > 0""").fetchall())
        assert types["revenue"] == 1700 and types["metric_time"] == 1082 and types["user__country"] == 25
        assert types["user__channel__is_paid"] == 16 and types["metric_time__hour"] == 1114
        described = dict(conn.execute("select column_name, data_type from information_schema.columns "
                                      "where table_schema = 'public' and table_name = 'orders'").fetchall())
        assert described["metric_time"] == "date" and described["revenue"] == "numeric"
        assert described["metric_time__hour"] == "timestamp without time zone"
        assert conn.execute("select format_type(1082, null), format_type(1700, -1)").fetchone() == ("date", "numeric")
        counted = conn.execute("select count(*) from pg_catalog.pg_namespace")
        assert counted.description[0].name == "count" and counted.fetchone() == (4,)
        assert {r[0] for r in conn.execute("select table_name from information_schema.tables "
                                           "where table_schema = 'public'")} >= {*VIEWS, "metrics"}
        oid = conn.execute("select 'orders'::regclass::oid").fetchone()[0]
        assert conn.execute("select obj_description(%s, 'pg_class')", [oid]).fetchone()[0]
        # nothing outside the emulated catalog can be read: no files, no other relations
        for statement in ("select * from read_csv('/etc/passwd')", "select * from duckdb_tables()"):
            with pytest.raises(Exception) as raised:
                conn.execute(statement)
            assert raised.value.sqlstate in ("42501", "42883", "42P01"), raised.value


def test_psql_describes_a_view_with_its_members(sql_endpoint):
    env = {**os.environ, "PGPASSWORD": sql_endpoint.admin, "PGCONNECT_TIMEOUT": "10"}
    out = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(sql_endpoint.port), "-U", "bi", "-d", "metrics",
                          "-A", "-F", "|", "-c", "\\d+ orders", "-c", "\\dt+ orders"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = [line.split("|") for line in out.stdout.splitlines()]
    columns = {line[0]: line for line in lines if len(line) >= 9}
    assert columns["revenue"][1] == "numeric" and columns["revenue"][8]  # type and description
    assert columns["metric_time__month"][1] == "date"
    assert any(line[:3] == ["public", "orders", "table"] for line in lines)
