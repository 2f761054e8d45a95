"""The SQL endpoint with the drivers BI tools and notebooks use, each as it talks to PostgreSQL:
psycopg 3 (text, binary, a named cursor), psycopg2 (a named cursor), asyncpg (prepares and describes
every statement, reads and sends binary) and pgjdbc (Debian's driver, from Java: DatabaseMetaData,
server-prepared binary statements, setDate, a fetch size, and the catalog queries Metabase and
DBeaver send through it). Every number is compared with the warehouse's marts."""

from __future__ import annotations

import asyncio
import subprocess
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import psycopg2
import pytest

from tests.ingestion.helpers import query as warehouse
from tests.semantic.sql_helpers import LAST_MONTH, connect, revenue_by_country, revenue_by_day, revenue_by_month

JDBC_JAR = "/usr/share/java/postgresql.jar"
JAVA_PROGRAM = Path(__file__).with_name("jdbc") / "JdbcChecks.java"


def _text(value: Decimal) -> str:
    return format(value.normalize(), "f") if value != value.to_integral() else str(int(value))


def test_psycopg_reads_text_and_binary_and_binds_typed_parameters(sql_endpoint, published):
    by_day = revenue_by_day(published)
    expected = {d: v for d, v in by_day.items() if d >= LAST_MONTH}
    with connect(sql_endpoint) as conn:
        for binary in (False, True):
            rows = conn.cursor(binary=binary).execute(
                "select metric_time, revenue from orders where metric_time >= %s order by 1", [LAST_MONTH]).fetchall()
            assert {d: v for d, v in rows} == expected
        # a binary cursor decodes each column by its type's OID: boolean, numeric, timestamp
        cursor = conn.cursor(binary=True)
        cursor.execute("select user__channel__is_paid, metric_time__hour, revenue from orders order by 2 desc, 1 "
                       "limit 2")
        assert [d.type_code for d in cursor.description] == [16, 1114, 1700]
        assert {type(v) for row in cursor.fetchall() for v in row} <= {bool, datetime, Decimal}


def test_named_cursors_of_psycopg_and_psycopg2_fetch_in_batches(sql_endpoint, published):
    expected = sorted(revenue_by_day(published).items())
    statement = "select metric_time, revenue from orders where metric_time >= %s order by 1"
    first = expected[0][0]
    with connect(sql_endpoint) as conn:  # DECLARE ... CURSOR in a transaction, FETCH FORWARD n, CLOSE
        for binary in (False, True):
            with conn.cursor(name=f"days_{binary}", binary=binary) as cursor:
                cursor.itersize = 7
                cursor.execute(statement, [first])
                assert cursor.fetchmany(3) == expected[:3]
                assert cursor.fetchall() == expected[3:]
    with psycopg2.connect(host="127.0.0.1", port=sql_endpoint.port, user="bi", dbname="metrics",
                          password=sql_endpoint.admin) as conn, conn.cursor("days") as cursor:
        cursor.itersize = 5
        cursor.execute(statement, [first])
        assert [(d, Decimal(v)) for d, v in cursor] == expected


def test_asyncpg_prepares_describes_and_reads_binary(sql_endpoint, published):
    expected = revenue_by_country(published)
    months = revenue_by_month(published)

    async def run():
        conn = await asyncpg.connect(host="127.0.0.1", port=sql_endpoint.port, user="bi", database="metrics",
                                     password=sql_endpoint.admin)
        try:
            statement = await conn.prepare("select user__country, revenue, revenue_orders from orders "
                                           "where user__country = $1")
            # parameter and column types are known before anything runs (Parse, Describe)
            parameters = [t.name for t in statement.get_parameters()]
            attributes = [(a.name, a.type.name) for a in statement.get_attributes()]
            rows = {r[0]: (r[1], r[2]) for country in expected for r in await statement.fetch(country)}
            by_month = await conn.fetch("select metric_time__month, revenue from orders "
                                        "where metric_time >= $1 and metric_time < $2 order by 1",
                                        min(months), LAST_MONTH + timedelta(days=40))
            async with conn.transaction():
                streamed = [r async for r in conn.cursor("select metric_time, revenue from orders order by 1",
                                                         prefetch=4)]
            return parameters, attributes, rows, by_month, streamed
        finally:
            await conn.close()

    parameters, attributes, rows, by_month, streamed = asyncio.run(run())
    assert parameters == ["text"]
    assert attributes == [("user__country", "text"), ("revenue", "numeric"), ("revenue_orders", "numeric")]
    assert {c: (r, int(n)) for c, (r, n) in rows.items()} == expected
    assert {r[0]: r[1] for r in by_month} == months
    assert {r[0]: r[1] for r in streamed} == revenue_by_day(published)


def test_pgjdbc_metadata_prepared_statements_and_the_queries_of_metabase_and_dbeaver(sql_endpoint, published):
    """One JVM runs every JDBC check (tests/semantic/jdbc/JdbcChecks.java). Metabase's queries are those
    of src/metabase/driver/postgres.clj (get-tables-sql, current-user-table-privileges, enum-types,
    describe-fields-sql, describe-fks-sql, db-default-timezone, set-timezone-sql) and of its query
    processor (a breakout with SUM, a month breakout cast to date, a nested question, COUNT(*));
    DBeaver's are those of plugins/org.jkiss.dbeaver.ext.postgresql: PostgreDatabase.readDatabaseInfo,
    PostgreDatabase.SchemaCache, PostgreSchema.TableCache (tables and columns) and the data types of
    PostgreDatabase/PostgreDataTypeCache."""
    if not Path(JDBC_JAR).exists():
        pytest.fail(f"{JDBC_JAR} is missing: `make test` installs Debian's libpostgresql-jdbc-java", pytrace=False)
    end = LAST_MONTH.replace(year=LAST_MONTH.year + LAST_MONTH.month // 12, month=LAST_MONTH.month % 12 + 1)
    out = subprocess.run(
        ["java", "-cp", JDBC_JAR, str(JAVA_PROGRAM), f"jdbc:postgresql://127.0.0.1:{sql_endpoint.port}/metrics",
         "bi", sql_endpoint.admin, "orders", "user__country", "revenue", LAST_MONTH.isoformat(), end.isoformat()],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    checks = dict(line.split("\t", 1) for line in out.stdout.splitlines() if "\t" in line)
    rows = {name: [row.split(" | ") for row in value.split(" ; ")] if value else [] for name, value in checks.items()}
    assert checks["done"] == "ok"
    expected = revenue_by_country(published)
    # numeric values as PostgreSQL's text without trailing zeros (1026.1 for 1026.10)
    by_country = {c: _text(r) for c, (r, _) in sorted(expected.items())}

    # DatabaseMetaData
    assert checks["product"] == "PostgreSQL 15"
    assert checks["getCatalogs"] == "metrics"
    assert {"public", "pg_catalog", "information_schema"} <= {r[0] for r in rows["getSchemas"]}
    assert ["public", "orders", "TABLE"] in rows["getTables"] and ["public", "metrics", "TABLE"] in rows["getTables"]
    columns = {name: (int(kind), type_name) for name, kind, type_name in rows["getColumns"]}
    assert columns["revenue"] == (2, "numeric") and columns["user__country"] == (12, "text")  # NUMERIC, VARCHAR
    assert columns["metric_time"] == (91, "date") and columns["user__channel__is_paid"] == (-7, "bool")  # DATE, BIT
    assert columns["metric_time__hour"] == (93, "timestamp")
    for empty in ("getPrimaryKeys", "getImportedKeys", "getExportedKeys", "getIndexInfo"):
        assert rows[empty] == [], empty
    types = {name: int(kind) for name, kind in rows["getTypeInfo"]}
    assert types["numeric"] == 2 and types["date"] == 91 and types["text"] == 12 and types["int8"] == -5

    # the same PreparedStatement 7 times: text, then server-prepared and binary from the 5th
    first = min(by_country)
    assert {checks[f"prepared{i}"] for i in range(1, 8)} == {f"{first} | {by_country[first]}"}
    months = revenue_by_month(published)
    assert {checks[f"setDate{i}"] for i in range(1, 8)} == {
        f"date,numeric ; {LAST_MONTH} | {_text(months[LAST_MONTH])}"}
    assert rows["setInt"] == [[c, r] for c, r in list(by_country.items())[:2]]
    last_days = [d for d in revenue_by_day(published) if LAST_MONTH <= d < end]
    assert checks["fetchSize"] == str(len(last_days))
    assert checks["error"].startswith("ERROR 42703") and "no_such_column" in checks["error"]
    assert checks["inFailedTransaction"].startswith("ERROR 25P02")
    assert checks["afterRollback"] == "1"

    # Metabase
    assert checks["metabase.timezone"]
    tables = {(r[0], r[1]): r for r in rows["metabase.tables"]}
    assert tables[("public", "orders")][2] == "TABLE" and tables[("public", "orders")][3] != "null"
    privileges = {r[2]: r[3:] for r in rows["metabase.privileges"]}
    assert privileges["orders"] == ["f", "t", "f", "f"]  # update, select, insert, delete
    assert rows["metabase.enums"] == [] and rows["metabase.fks"] == []
    fields = {(r[4], r[0]): r for r in rows["metabase.fields"]}
    assert fields[("orders", "revenue")][1] == "numeric" and fields[("orders", "metric_time")][1] == "date"
    assert fields[("orders", "revenue")][6] != "null"  # the member's description, by col_description
    assert rows["metabase.sum"] == rows["metabase.nested"] == [[c, r] for c, r in by_country.items()]
    assert {date.fromisoformat(m): Decimal(r) for m, r in rows["metabase.month"]} == months
    placed = warehouse(published, "select count(*) from marts.fct_orders where order_status <> 'cancelled'")[0][0]
    assert checks["metabase.count"] == str(placed)  # COUNT(*) is the view's count measure, orders placed

    # DBeaver
    assert rows["dbeaver.database"][0][2] == "metrics"
    assert "public" in {r[2] for r in rows["dbeaver.schemas"]}
    assert "orders" in {r[2] for r in rows["dbeaver.tables"]}
    described = {r[2]: r[3] for r in rows["dbeaver.columns"]}  # attname -> atttypid
    assert described["revenue"] == "1700" and described["metric_time"] == "1082" and described["user__country"] == "25"
    assert {"numeric", "date", "text", "bool"} <= {r[2] for r in rows["dbeaver.types"]}
