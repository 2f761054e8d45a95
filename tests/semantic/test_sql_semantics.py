"""What SQL over the governed tables means, checked against the warehouse's marts: aggregate wrappers
over measures and subquery wrappers evaluated as Cube's SQL API does (each metric with its own
aggregation, never a sum of ratios), date_trunc and now() - interval, time filters on a grain meaning
whole periods; and every bad input the issue lists answered with an ErrorResponse naming the part at
fault, on a connection that stays usable."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from tests.conftest import NOW, SAMPLE_END
from tests.ingestion.helpers import query as warehouse
from tests.semantic.sql_helpers import LAST_MONTH, connect, revenue_by_country, revenue_by_day, revenue_by_month


def _rows(conn, statement: str, *params) -> list[tuple]:
    return conn.execute(statement, params or None).fetchall()


def test_aggregate_wrappers_use_each_measures_own_aggregation(sql_endpoint, published):
    """SUM(revenue), MEASURE(revenue) and the bare column are the same measure; SUM of a ratio (average
    order value) is the ratio at the query's grain, as Cube's SQL API evaluates it, not a sum of ratios;
    COUNT(*) is the view's count measure."""
    expected = revenue_by_country(published)
    with connect(sql_endpoint) as conn:
        for statement in ("select user__country, sum(revenue), sum(revenue_orders) from orders group by 1",
                          "select user__country, measure(revenue), measure(revenue_orders) from orders group by 1",
                          "select user__country, revenue, revenue_orders from orders"):
            assert {c: (r, int(n)) for c, r, n in _rows(conn, statement)} == expected, statement
        ratios = dict(_rows(conn, "select user__country, sum(average_order_value) from orders group by 1"))
        assert ratios == dict(_rows(conn, "select user__country, avg(average_order_value) from orders group by 1"))
        for country, (revenue, count) in expected.items():
            assert abs(ratios[country] - revenue / count) < Decimal("1e-6"), country
        daily = _rows(conn, "select metric_time, average_order_value from orders where user__country = 'US'")
        assert abs(sum(v for _, v in daily if v is not None) - ratios["US"]) > 1  # summing ratios would differ
        placed = warehouse(published, "select count(*) from marts.fct_orders where order_status <> 'cancelled'")
        assert _rows(conn, "select count(*) from orders") == [(placed[0][0],)]
        assert _rows(conn, "select count(*) from orders") == _rows(conn, "select measure(orders) from orders")


def test_subquery_wrappers_as_superset_and_metabase_send_them(sql_endpoint, published):
    """Superset wraps a virtual dataset's SQL as `(...) AS virtual_table` (superset/models/helpers.py
    get_sqla_query), with PostgresBaseEngineSpec's `_time_grain_expressions` (DATE_TRUNC) and
    `convert_dttm` (TO_TIMESTAMP) from superset/db_engine_specs/postgres.py, and counts rows with
    COUNT(*); Metabase's nested questions select from `(...) AS "source"`. A measure aggregated over the
    subquery is evaluated again at the outer grain, with the subquery's filters."""
    months = revenue_by_month(published)
    countries = revenue_by_country(published)
    dataset = "select metric_time, user__country, revenue, average_order_value from orders"
    start, end = min(months), LAST_MONTH + timedelta(days=40)
    with connect(sql_endpoint) as conn:
        chart = _rows(conn, f"""
            SELECT DATE_TRUNC('month', metric_time) AS metric_time, SUM(revenue) AS "SUM(revenue)"
            FROM ({dataset}) AS virtual_table
            WHERE metric_time >= TO_TIMESTAMP('{start} 00:00:00.000000', 'YYYY-MM-DD HH24:MI:SS.US')
              AND metric_time < TO_TIMESTAMP('{end} 00:00:00.000000', 'YYYY-MM-DD HH24:MI:SS.US')
            GROUP BY DATE_TRUNC('month', metric_time) ORDER BY "SUM(revenue)" DESC LIMIT 10000""")
        assert {m: v for m, v in chart} == months
        assert [v for _, v in chart] == sorted(months.values(), reverse=True)
        ratio = _rows(conn, f"""SELECT user__country AS user__country, SUM(average_order_value) AS aov
            FROM ({dataset}) AS virtual_table GROUP BY user__country ORDER BY aov DESC""")
        for country, aov in ratio:
            revenue, count = countries[country]
            assert abs(aov - revenue / count) < Decimal("1e-6")
        # COUNT(*) counts the subquery's rows: one per (day, country) that has orders
        rows = _rows(conn, dataset)
        assert _rows(conn, f"SELECT COUNT(*) AS count FROM ({dataset}) AS virtual_table") == [(len(rows),)]
        nested = _rows(conn, f"""SELECT "source"."user__country" AS "user__country", SUM("source"."revenue") AS "sum"
            FROM ({dataset}) AS "source" WHERE "source"."user__country" IN ('US', 'DE')
            GROUP BY "source"."user__country" ORDER BY "source"."user__country" ASC""")
        assert nested == [(c, countries[c][0]) for c in ("DE", "US")]
        # summing a ratio over the rows of a subquery that cannot be re-evaluated is refused
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="average_order_value"):
            conn.execute(f"select sum(average_order_value) from ({dataset} limit 5) t")


def test_time_functions_and_whole_periods(sql_endpoint, published):
    """date_trunc('month', metric_time) groups by the month grain; now() - interval '7 days' is now as the
    platform takes it (PLATFORM_NOW); a condition on a grain's column means whole periods."""
    months = revenue_by_month(published)
    days = revenue_by_day(published)
    mid_month = LAST_MONTH + timedelta(days=14)
    previous = min(months)
    with connect(sql_endpoint) as conn:
        by_month = "select date_trunc('month', metric_time), sum(revenue) from orders group by 1"
        assert dict(_rows(conn, by_month)) == months
        # all of the month, not its first day
        assert _rows(conn, "select metric_time__month, revenue from orders where metric_time__month = %s",
                     LAST_MONTH) == [(LAST_MONTH, months[LAST_MONTH])]
        # no month starts on or after the 15th but the next: never a partial month labelled as a whole one
        assert _rows(conn, "select metric_time__month, revenue from orders where metric_time__month >= %s",
                     mid_month) == []
        assert _rows(conn, "select metric_time__month, revenue from orders where metric_time__month > %s "
                           "order by 1", previous) == sorted((m, v) for m, v in months.items() if m > previous)
        assert _rows(conn, "select metric_time__month, revenue from orders where metric_time__month <= %s "
                           "order by 1", mid_month) == sorted(months.items())
        assert _rows(conn, "select metric_time__month, revenue from orders where metric_time__month = %s",
                     mid_month) == []
        now = datetime.fromisoformat(NOW.replace("Z", "+00:00"))
        week = _rows(conn, "select metric_time, revenue from orders where metric_time >= now() - interval '7 days' "
                           "order by 1")
        first = (now - timedelta(days=7)).date() + timedelta(days=1)  # a day starting at or after that moment
        assert week == sorted((d, v) for d, v in days.items() if d >= first)
        assert week and week[-1][0] == SAMPLE_END


def test_session_statements_and_probes_tools_send(sql_endpoint):
    with connect(sql_endpoint, autocommit=True) as conn:
        assert _rows(conn, "select current_database()") == [("metrics",)]
        cursor = conn.execute("SELECT 1 AS x")
        assert cursor.fetchall() == [(1,)] and cursor.description[0].name == "x"
        assert conn.execute("select version()").fetchone()[0].startswith("PostgreSQL 15")
        assert _rows(conn, "SHOW search_path") == [('"$user", public',)]
        conn.execute("SET TIME ZONE 'Europe/Berlin'")
        assert _rows(conn, "SHOW TimeZone") == [("Europe/Berlin",)]
        assert _rows(conn, "select current_setting('TimeZone')") == [("Europe/Berlin",)]
        conn.execute("RESET ALL")
        assert _rows(conn, "SHOW TimeZone") == [("UTC",)]
        cursor = conn.execute("select metric_time, revenue from orders limit 0")
        assert cursor.fetchall() == [] and [d.type_code for d in cursor.description] == [1082, 1700]
        plan = [line for (line,) in _rows(conn, "EXPLAIN select user__country, revenue from orders")]
        assert "Cube query on orders" in plan[0] and any("select" in line.lower() for line in plan[1:])
        conn.execute("BEGIN")
        conn.execute("SAVEPOINT a")
        conn.execute("ROLLBACK TO SAVEPOINT a")
        conn.execute("COMMIT")
        conn.execute("DISCARD ALL")
        count = conn.execute("select count(*) from pg_catalog.pg_namespace")
        assert count.description[0].name == "count" and count.fetchone()[0] == 4


@pytest.mark.parametrize(("statement", "sqlstate", "names"), [
    ("select 'abc from orders", "42601", "unterminated quoted string at or near \"'abc from orders\""),
    ("select revenue from orders where " + " or ".join(f"user__country = 'C{i}'" for i in range(1000)), "54001",
     "WHERE has 1,000 conditions"),
    ("select new_users from acquisition where channel__is_paid = 'maybe'", "22P02",
     'channel__is_paid = \'maybe\': invalid input syntax for type boolean: "maybe"'),
    ("select channel__is_paid, revenue from metrics", "42P10",
     "'metrics.channel__is_paid' does not apply to 'revenue'"),
    ("select revenu from orders", "42703", 'column "revenu" of relation "orders" does not exist; did you mean'),
    ("select user__country, count(distinct revenue) from orders group by 1", "42803",
     "measure aggregation type doesn't match: revenue is a sum measure"),
    ("select user__country, revenue from orders group by upper(user__country)", "42803",
     "GROUP BY UPPER(user__country)"),
    ("select revenue from orders join events on true", "0A000", "JOIN is not supported"),
    ("delete from orders", "25006", "only SELECT is allowed here, not DELETE"),
    ("select * from marts.fct_orders", "42P01", 'relation "marts.fct_orders" does not exist'),
    ("select revenue from orders where metric_time__month = 'soon'", "22007", "metric_time__month = 'soon'"),
    ("fetch forward 5 from nowhere", "34000", 'cursor "nowhere" does not exist'),
    ("show no_such_setting", "42704", 'unrecognized configuration parameter "no_such_setting"'),
])
def test_bad_statements_get_an_error_naming_the_part_at_fault(sql_endpoint, statement, sqlstate, names):
    with connect(sql_endpoint, autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as raised:
            conn.execute(statement)
        assert raised.value.sqlstate == sqlstate, raised.value
        assert names in str(raised.value), raised.value
        assert conn.execute("select 1 as still_here").fetchone() == (1,)  # the connection survives


def test_a_statement_is_cancelled_on_request_or_timeout(sql_endpoint):
    """psycopg's cancel() sends PostgreSQL's CancelRequest on a second connection; statement_timeout."""
    endless = "select count(*) from generate_series(1, 100000000000)"
    with connect(sql_endpoint, autocommit=True) as conn:
        conn.execute("SET statement_timeout = '200ms'")
        with pytest.raises(psycopg.errors.QueryCanceled, match="statement timeout"):
            conn.execute(endless)
        conn.execute("SET statement_timeout = 0")
        timer = threading.Timer(0.5, conn.cancel)
        timer.start()
        with pytest.raises(psycopg.errors.QueryCanceled, match="user request"):
            conn.execute(endless)
        timer.join()
        assert conn.execute("select 1").fetchone() == (1,)


def test_bad_input_on_the_extended_protocol_and_in_transactions(sql_endpoint, published):
    """Parameters that are not of their declared type, an error inside a transaction block (refused until
    ROLLBACK, as PostgreSQL does), and a statement too large: errors, never a dropped connection."""
    with connect(sql_endpoint) as conn:
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            conn.execute("select revenue from orders limit %s", ["ten"])
        conn.rollback()
        with pytest.raises(psycopg.errors.UndefinedColumn):
            conn.execute("select nothing from orders")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("select 1")
        conn.rollback()
        assert conn.execute("select count(*) from orders").fetchone()[0] > 0
        with pytest.raises(psycopg.errors.ProgramLimitExceeded):
            conn.execute("select '" + "x" * (65 * 1024 * 1024) + "'")
        conn.rollback()
        assert conn.execute("select 1").fetchone() == (1,)


def test_a_tenant_sees_only_its_rows_through_subqueries_and_the_catalog(sql_endpoint, published):
    expected = {t: Decimal(str(v)) for t, v in warehouse(
        published, "select tenant_id, sum(net_revenue) from marts.fct_orders group by 1")}
    tenant = sorted(expected)[1]
    with connect(sql_endpoint, sql_endpoint.token(tenant)) as conn:
        assert _rows(conn, "select tenant, revenue from orders") == [(tenant, expected[tenant])]
        assert _rows(conn, "select sum(revenue) from (select tenant, metric_time, revenue from orders) t") == [
            (expected[tenant],)]
        assert _rows(conn, "select count(*) from (select tenant, revenue from orders) t") == [(1,)]
        assert _rows(conn, "select revenue from orders where tenant <> %s", tenant) in ([], [(None,)])
