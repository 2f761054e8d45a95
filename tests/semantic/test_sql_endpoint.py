"""The SQL endpoint over PostgreSQL's wire protocol, with real clients: psql, psycopg 3, psycopg2 and
SQLAlchemy. Governed metrics only, the token as password, the same tenancy as the REST API."""

from __future__ import annotations

import os
import subprocess
from decimal import Decimal

import psycopg
import pytest
import sqlalchemy as sa

from tests.conftest import SAMPLE_END
from tests.ingestion.helpers import query as sql


def _psql(server, token: str, statement: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PGPASSWORD": token, "PGCONNECT_TIMEOUT": "10"}
    return subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(server.port), "-U", "bi", "-d", "metrics",
                           "-A", "-t", "-F", "|", "-c", statement], env=env, capture_output=True, text=True,
                          timeout=60)


def _revenue_by_tenant(published) -> dict[str, Decimal]:
    return {t: Decimal(str(v)) for t, v in sql(published, "select tenant_id, sum(revenue) from marts.metrics_daily "
                                                          "group by 1")}


def test_psql_reads_metrics_equal_to_sql(sql_endpoint, published):
    out = _psql(sql_endpoint, sql_endpoint.admin, "select tenant, revenue from metrics order by tenant")
    assert out.returncode == 0, out.stderr
    got = {t: Decimal(v) for t, v in (line.split("|") for line in out.stdout.split())}
    assert got == _revenue_by_tenant(published)


def test_psycopg_binds_parameters_and_a_tenant_sees_only_its_rows(sql_endpoint, published):
    expected = _revenue_by_tenant(published)
    with psycopg.connect(host="127.0.0.1", port=sql_endpoint.port, user="bi", dbname="metrics",
                         password=sql_endpoint.token("t002")) as conn:
        assert conn.execute("select tenant, revenue from metrics").fetchall() == [("t002", expected["t002"])]
        for other in ("t001", "t003", "t001' or '1'='1"):
            assert conn.execute("select tenant, revenue from metrics where tenant = %s", [other]).fetchall() == []
        last_month = SAMPLE_END.replace(day=1).isoformat()
        rows = conn.execute("select metric_time__month, orders from metrics where metric_time >= %s order by 1",
                            [last_month]).fetchall()
        assert [r[0].isoformat() for r in rows] == [last_month]


@pytest.mark.parametrize("driver", ["psycopg2", "psycopg"])
def test_sqlalchemy_queries_the_endpoint(sql_endpoint, published, driver):
    engine = sa.create_engine(f"postgresql+{driver}://bi:{sql_endpoint.admin}@127.0.0.1:{sql_endpoint.port}/metrics")
    with engine.connect() as conn:
        rows = conn.execute(sa.text("select tenant, revenue, orders from metrics where tenant in ('t001', 't003') "
                                    "order by tenant")).fetchall()
    engine.dispose()
    expected = _revenue_by_tenant(published)
    assert [(t, r) for t, r, _ in rows] == [("t001", expected["t001"]), ("t003", expected["t003"])]


@pytest.mark.parametrize(("statement", "message"), [
    ("select * from raw_events.events", 'relation "raw_events.events" does not exist'),
    ("select revenue from marts.fct_orders", 'relation "marts.fct_orders" does not exist'),
    ("select sum(order_total) from fct_orders", 'relation "fct_orders" does not exist'),
    ("select revenue from metrics; drop table marts.fct_orders", "only SELECT is allowed here, not DROP"),
    ("select revenue from metrics union select order_total from marts.fct_orders",
     'relation "marts.fct_orders" does not exist'),
    ("select revenu from metrics", 'column "revenu" of relation "metrics" does not exist; did you mean \'revenue\''),
    ("select tenant from metrics", "select at least one metric"),
    ("select * from metrics", "SELECT * is not supported on metrics"),
])
def test_raw_tables_injection_and_bad_statements_are_refused(sql_endpoint, published, statement, message):
    before = sql(published, "select count(*) from marts.fct_orders")[0][0]
    out = _psql(sql_endpoint, sql_endpoint.admin, statement)
    assert out.returncode != 0 and message in out.stderr, out.stderr
    assert sql(published, "select count(*) from marts.fct_orders")[0][0] == before


def test_a_bad_token_is_refused_at_login(sql_endpoint):
    out = _psql(sql_endpoint, "not-a-token", "select revenue from metrics")
    assert out.returncode != 0 and "password authentication failed" in out.stderr


def test_psql_describes_the_metrics_table(sql_endpoint):
    """psql's `\\d` family reads the emulated catalog: the served tables are tables of schema public
    (`\\dv` finds no view), the database is the one connected to, and `\\d metrics` and `\\d+ metrics`
    list every member as a typed column."""
    for command in ("\\d", "\\dt"):
        listed = _psql(sql_endpoint, sql_endpoint.admin, command)
        assert listed.returncode == 0, listed.stderr
        rows = set(listed.stdout.split())
        assert {f"public|{t}|table|governed" for t in ("metrics", "orders", "events", "sessions", "marketing_spend",
                                                        "forecasts")} <= rows, rows
    assert _psql(sql_endpoint, sql_endpoint.admin, "\\dn").stdout.strip() == "public|governed"
    assert _psql(sql_endpoint, sql_endpoint.admin, "\\l").stdout.split("|")[:3] == ["metrics", "governed", "UTF8"]
    views = _psql(sql_endpoint, sql_endpoint.admin, "\\dv")
    assert views.returncode == 0 and "Did not find any relations" in views.stderr + views.stdout
    for command in ("\\d metrics", "\\d+ metrics"):
        described = _psql(sql_endpoint, sql_endpoint.admin, command)
        assert described.returncode == 0, described.stderr
        types = dict(line.split("|")[:2] for line in described.stdout.splitlines() if line.count("|") >= 4)
        assert types["revenue"] == "numeric" and types["forecast_revenue"] == "numeric"
        assert types["tenant"] == "text" and types["user__country"] == "text"
        assert types["metric_time"] == "date" and types["metric_time__month"] == "date"
    missing = _psql(sql_endpoint, sql_endpoint.admin, "\\d fct_orders")
    assert "Did not find any relation named" in missing.stderr + missing.stdout
