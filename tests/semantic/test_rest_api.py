"""The Cube-compatible REST API through the Python client and raw HTTP, against a real server.

Numbers are checked against the same aggregate computed directly in SQL on the marts.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import httpx
import orjson
import pytest

from ingestion.paths import DataLayout
from semantic.client import MetricsClient, MetricsError
from semantic.cube_query import MAX_LIMIT
from tests.conftest import SAMPLE_END, copy_of, sample_day
from tests.ingestion.helpers import query as sql
from tests.semantic.conftest import Server, publish, start_server

WRITER = """
import sys, duckdb
with duckdb.connect(sys.argv[1]) as conn:
    conn.execute("create or replace table marts.scratch as select 1 as x")
    print("writing", flush=True)
    sys.stdin.readline()
    conn.execute("drop table marts.scratch")
"""

# a range around the whole sample, in Cube's "from ... to ..." form
SPAN = (date(SAMPLE_END.year - 1, 1, 1), date(SAMPLE_END.year, 12, 31))
MONTHLY_REVENUE = {
    "measures": ["metrics.revenue", "metrics.orders"],
    "dimensions": ["metrics.tenant"],
    "timeDimensions": [{"dimension": "metrics.metric_time", "granularity": "month",
                        "dateRange": f"from {SPAN[0]} to {SPAN[1]}"}],
}


@pytest.fixture(scope="module")
def admin(server):
    with MetricsClient(server.url, server.admin) as client:
        yield client


def _money(value) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


def test_the_view_of_earlier_releases_still_answers_with_every_metric(admin):
    """`metrics.<member>` (one view of everything, before views) keeps working for the clients written
    against it, though /meta offers the views (test_views.py)."""
    for metric in ("revenue", "orders", "average_order_value", "active_users", "weekly_active_users",
                   "monthly_active_users", "sessions", "events", "conversion_rate", "mrr", "churn_rate",
                   "marketing_spend", "customer_acquisition_cost", "forecast_revenue"):
        assert admin.load({"measures": [f"metrics.{metric}"], "dimensions": ["metrics.tenant"],
                           "timeDimensions": [{"dimension": "metrics.metric_time", "granularity": "month"}]}).rows


def test_revenue_by_tenant_and_month_equals_sql(admin, published):
    result = admin.load({**MONTHLY_REVENUE, "order": [["metrics.metric_time", "asc"], ["metrics.tenant", "asc"]]})
    got = {(r["metrics.tenant"], r["metrics.metric_time.month"][:10]): (_money(r["metrics.revenue"]),
                                                                        int(r["metrics.orders"]))
           for r in result.rows}
    expected = {(t, m.isoformat()): (_money(rev), int(n)) for t, m, rev, n in sql(published, """
        select tenant_id, date_trunc('month', date_day)::date, sum(revenue), sum(orders)
        from marts.metrics_daily group by 1, 2""")}
    assert got == expected and got
    first = result.results[0]
    assert first["annotation"]["measures"]["metrics.revenue"]["type"] == "number"
    assert "metrics.metric_time.month" in first["annotation"]["timeDimensions"]
    assert first["query"]["timeDimensions"][0]["dateRange"] == [f"{SPAN[0]}T00:00:00.000",
                                                                f"{SPAN[1]}T23:59:59.999"]
    assert first["lastRefreshTime"].endswith("Z")


def test_forecast_revenue_next_to_actuals_equals_sql(admin, published):
    """The forecast mart's metric, by tenant and day, as a dashboard puts it beside actual revenue."""
    first, last = sample_day(-2), sample_day(-8)  # the second to the eighth day after the sample
    result = admin.load({
        "measures": ["metrics.forecast_revenue", "metrics.revenue"], "dimensions": ["metrics.tenant"],
        "timeDimensions": [{"dimension": "metrics.metric_time", "granularity": "day",
                            "dateRange": [first.isoformat(), last.isoformat()]}]})
    got = {(r["metrics.tenant"], r["metrics.metric_time.day"][:10]): _money(r["metrics.forecast_revenue"])
           for r in result.rows}
    expected = {(t, d.isoformat()): _money(v) for t, d, v in sql(published, f"""
        select tenant_id, forecast_date, sum(prediction) from marts.fct_forecasts
        where metric = 'revenue' and forecast_date between '{first}' and '{last}' group by 1, 2""")}
    assert got == expected and len(got) == 7 * len({t for t, _ in got})


@pytest.mark.parametrize("timezone", ["UTC", "America/Los_Angeles", "Asia/Kolkata"])
def test_timezone_moves_day_boundaries_of_timestamped_facts(admin, published, timezone):
    """Cube's `timezone`: a day is midnight to midnight where the reader is, for orders as for events."""
    first, last = sample_day(26), sample_day(20)
    result = admin.load({
        "measures": ["metrics.revenue", "metrics.events"], "timezone": timezone,
        "timeDimensions": [{"dimension": "metrics.metric_time", "granularity": "day",
                            "dateRange": [first.isoformat(), last.isoformat()]}]})
    got = {r["metrics.metric_time.day"]: (_money(r["metrics.revenue"]), int(r["metrics.events"]))
           for r in result.rows}
    local_day = f"cast(timezone('{timezone}', {{column}} at time zone 'UTC') as date)"
    revenue = dict(sql(published, f"""
        select {local_day.format(column="ordered_at")} as day, sum(net_revenue) from marts.fct_orders
        group by 1 having day between '{first}' and '{last}'"""))
    events = dict(sql(published, f"""
        select {local_day.format(column="event_at")} as day, count(*) from marts.fct_events
        group by 1 having day between '{first}' and '{last}'"""))
    expected = {f"{day.isoformat()}T00:00:00.000": (_money(revenue[day]), events[day]) for day in revenue}
    assert got == expected and len(got) == 7
    assert result.results[0]["query"]["timezone"] == timezone


def test_or_filter_order_limit_offset_and_total(admin, published):
    query = {"measures": ["metrics.conversion_rate"], "dimensions": ["metrics.tenant"],
             "timeDimensions": [{"dimension": "metrics.metric_time", "granularity": "day"}],
             "filters": [{"or": [{"member": "metrics.tenant", "operator": "equals", "values": ["t001"]},
                                 {"member": "metrics.tenant", "operator": "equals", "values": ["t003"]}]}],
             "order": {"metrics.metric_time": "asc", "metrics.tenant": "asc"}, "limit": 10, "offset": 5,
             "total": True}
    first = admin.load(query).results[0]
    days = sql(published, "select count(*) from marts.metrics_daily where tenant_id in ('t001', 't003')")[0][0]
    assert first["total"] == days and len(first["data"]) == 10
    expected = sql(published, """
        select tenant_id, date_day, conversion_rate from marts.metrics_daily
        where tenant_id in ('t001', 't003') order by 2, 1 limit 10 offset 5""")
    for row, (tenant, day, rate) in zip(first["data"], expected, strict=True):
        assert (row["metrics.tenant"], row["metrics.metric_time.day"][:10]) == (tenant, day.isoformat())
        assert (rate is None and row["metrics.conversion_rate"] is None) or \
            abs(float(row["metrics.conversion_rate"]) - rate) < 1e-9


def test_relative_ranges_and_compare_date_range(admin):
    today = datetime.now(UTC).date()
    last_week = admin.load({"measures": ["metrics.events"], "timeDimensions": [
        {"dimension": "metrics.metric_time", "granularity": "day", "dateRange": "last 7 days"}]}).results[0]
    assert last_week["query"]["timeDimensions"][0]["dateRange"] == [
        f"{today - timedelta(days=7)}T00:00:00.000", f"{today - timedelta(days=1)}T23:59:59.999"]
    assert all(today - timedelta(days=7) <= date.fromisoformat(r["metrics.metric_time.day"][:10]) < today
               for r in last_week["data"])

    # the sample's last month and the one before it (35 days always reach into it)
    this_month = SAMPLE_END.replace(day=1)
    last_month = (this_month - timedelta(days=1)).replace(day=1)
    compared = admin.load({"measures": ["metrics.revenue"], "timeDimensions": [{
        "dimension": "metrics.metric_time", "granularity": "month",
        "compareDateRange": [[last_month.isoformat(), (this_month - timedelta(days=1)).isoformat()],
                             [this_month.isoformat(), SAMPLE_END.isoformat()]]}]})
    assert compared.query_type == "compareDateRangeQuery" and len(compared.results) == 2
    assert [r["data"][0]["metrics.metric_time.month"][:7] for r in compared.results] == [
        last_month.isoformat()[:7], this_month.isoformat()[:7]]


def test_a_tenant_token_only_ever_sees_its_own_rows(server, published):
    own = {t: _money(v) for t, v in sql(published, "select tenant_id, sum(revenue) from marts.metrics_daily "
                                                   "group by 1")}
    with MetricsClient(server.url, server.token("t001")) as client:
        everything = client.load({"measures": ["metrics.revenue"]}).rows
        assert [_money(r["metrics.revenue"]) for r in everything] == [own["t001"]]
        by_tenant = client.load({"measures": ["metrics.revenue"], "dimensions": ["metrics.tenant"]}).rows
        assert [r["metrics.tenant"] for r in by_tenant] == ["t001"]
        asking_for_others = [
            [{"member": "metrics.tenant", "operator": "equals", "values": ["t002"]}],
            [{"member": "metrics.tenant", "operator": "notEquals", "values": ["t001"]}],
            [{"or": [{"member": "metrics.tenant", "operator": "equals", "values": ["t002"]},
                     {"member": "metrics.tenant", "operator": "set"}]}],
            [{"member": "metrics.tenant", "operator": "contains", "values": ["t"]}],
            [{"member": "metrics.tenant", "operator": "equals", "values": ["t001' or '1'='1"]}],
        ]
        for filters in asking_for_others:
            for measure in ("metrics.revenue", "metrics.events", "metrics.mrr", "metrics.new_users",
                            "metrics.forecast_revenue", "metrics.insights", "metrics.insight_drivers"):
                rows = client.load({"measures": [measure], "dimensions": ["metrics.tenant"],
                                    "filters": filters}).rows
                assert {r["metrics.tenant"] for r in rows} <= {"t001"}, (measure, filters, rows)
        users = client.load({"measures": ["metrics.new_users"], "dimensions": ["metrics.user__country"]}).rows
        expected = sql(published, "select count(*) from marts.dim_users where tenant_id = 't001'")[0][0]
        assert sum(int(r["metrics.new_users"]) for r in users) == expected


@pytest.mark.parametrize("header", [None, "not-a-jwt", "expired", "wrong-signature", "no-tenant"])
def test_bad_tokens_get_403_in_cubes_shape(server, header):
    import jwt

    value = {
        None: None, "not-a-jwt": "not-a-jwt",
        "expired": server.token("t001", ttl_seconds=-10),
        "wrong-signature": jwt.encode({"tenant_id": "t001"}, "another-secret-that-is-long-enough!!", "HS256"),
        "no-tenant": jwt.encode({"role": "tenant"}, "test-secret-that-is-long-enough-for-hs256", "HS256"),
    }[header]
    headers = {"Authorization": value} if value else {}
    response = httpx.get(f"{server.url}/cubejs-api/v1/load", headers=headers,
                         params={"query": orjson.dumps({"measures": ["metrics.revenue"]}).decode()})
    assert response.status_code == 403
    assert set(response.json()) == {"error"}


@pytest.mark.parametrize(("query", "message"), [
    ({"measures": ["metrics.revenu"]}, "measures[0]: unknown measure 'metrics.revenu'; did you mean 'metrics.revenue'"),
    ({"measures": ["metrics.revenue"], "dimensions": ["metrics.contry"]},
     "dimensions[0]: unknown dimension 'metrics.contry'; did you mean"),
    ({"measures": ["metrics.revenue"], "timeDimensions": [{"dimension": "metrics.metric_time",
                                                            "granularity": "fortnight"}]},
     "timeDimensions[0].granularity: unknown granularity 'fortnight'"),
    ({"measures": ["metrics.revenue"], "filters": [{"member": "metrics.tenant", "operator": "equals",
                                                     "values": [{"nested": 1}]}]},
     "filters[0].values[0]: expected a string"),
    ({"measures": ["metrics.revenue"], "filters": [{"member": "metrics.metric_time", "operator": "beforeDate",
                                                     "values": [12]}]},
     "filters[0].values[0]: expected a date string"),
    ({"measures": ["metrics.revenue"], "timeDimensions": [{"dimension": "metrics.metric_time",
                                                            "dateRange": ["2026-10-31", "2026-10-01"]}]},
     "timeDimensions[0].dateRange: the range starts (2026-10-31) after it ends (2026-10-01)"),
    ({"measures": ["metrics.revenue"], "timeDimensions": [{"dimension": "metrics.metric_time",
                                                            "dateRange": "the other week"}]},
     "dateRange 'the other week' is not a date range"),
    ({"measures": ["metrics.revenue"], "limit": MAX_LIMIT + 1}, f"limit: {MAX_LIMIT + 1} is above the maximum"),
    ({"measures": ["metrics.revenue"], "filters": [{"member": "metrics.tenant", "operator": "like",
                                                     "values": ["t"]}]},
     "filters[0].operator: unknown operator 'like'"),
])
def test_bad_queries_get_400_naming_the_part_at_fault(admin, query, message):
    with pytest.raises(MetricsError) as caught:
        admin.load(query)
    assert caught.value.status == 400
    assert message in caught.value.message


def test_malformed_json_gets_400(server):
    headers = {"Authorization": server.admin}
    response = httpx.get(f"{server.url}/cubejs-api/v1/load", headers=headers, params={"query": "{measures: ["})
    assert response.status_code == 400 and response.json()["type"] == "UserError"
    assert response.json()["error"].startswith("query: not valid JSON")
    response = httpx.post(f"{server.url}/cubejs-api/v1/load", headers=headers, content=b"{not json")
    assert response.status_code == 400 and response.json()["error"].startswith("body: not valid JSON")


def test_injection_in_filter_values_executes_nothing(admin, published):
    before = sql(published, "select count(*) from marts.fct_orders")[0][0]
    for value in ("x'; drop table marts.fct_orders; --", "{{ Dimension('user__country') }}", "x' or 1=1 --",
                  "{% raw %}", "\\'; select 1; --"):
        rows = admin.load({"measures": ["metrics.revenue"], "dimensions": ["metrics.tenant"],
                           "filters": [{"member": "metrics.tenant", "operator": "equals", "values": [value]}]}).rows
        assert rows == []
        rows = admin.load({"measures": ["metrics.revenue"], "filters": [
            {"member": "metrics.tenant", "operator": "contains", "values": [value]}]}).rows
        assert rows in ([], [{"metrics.revenue": None}])
    assert sql(published, "select count(*) from marts.fct_orders")[0][0] == before


def test_sql_and_dry_run(admin):
    from_rollup = admin.sql(MONTHLY_REVENUE)
    assert "metric_query" in from_rollup and "rollups.daily_kpis" in from_rollup
    compiled = admin.sql({**MONTHLY_REVENUE, "dimensions": ["metrics.tenant__industry"]})
    assert "fct_orders" in compiled and "rollups" not in compiled
    dry = admin.dry_run(MONTHLY_REVENUE)
    assert dry["queryType"] == "regularQuery" and dry["normalizedQueries"][0]["measures"] == MONTHLY_REVENUE["measures"]


def test_continue_wait_then_the_answer(impatient_server):
    """A server that waits 0 s answers "Continue wait" to a new query; asking again gets the data."""
    query = orjson.dumps({"measures": ["metrics.sessions"], "dimensions": ["metrics.tenant"]}).decode()
    headers = {"Authorization": impatient_server.admin}
    url = f"{impatient_server.url}/cubejs-api/v1/load"
    first = httpx.get(url, headers=headers, params={"query": query, "queryType": "multi"})
    assert first.status_code == 200 and first.json() == {"error": "Continue wait"}
    for _ in range(100):
        body = httpx.get(url, headers=headers, params={"query": query, "queryType": "multi"}).json()
        if body.get("error") != "Continue wait":
            break
        time.sleep(0.05)
    assert len(body["results"][0]["data"]) == 3
    with MetricsClient(impatient_server.url, impatient_server.admin) as client:  # the client loops by itself
        assert len(client.load({"measures": ["metrics.orders"], "dimensions": ["metrics.tenant"]}).rows) == 3


@pytest.fixture
def own_server(published, tmp_path) -> Iterator[Server]:
    """A server over a copy of the published data, for a test that writes and publishes."""
    yield from start_server(DataLayout(copy_of(published.root, tmp_path)), tmp_path / "server.log")


def test_keeps_answering_from_its_snapshot_while_a_run_writes_and_switches_when_one_is_published(own_server):
    layout = own_server.layout
    with MetricsClient(own_server.url, own_server.admin) as admin:
        first = admin.load({"measures": ["metrics.revenue"]}).results[0]
        # another process writes the warehouse and holds its lock, as a pipeline run does
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(layout.warehouse)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert writer.stdout.readline().strip() == "writing"
            during = admin.load({"measures": ["metrics.revenue"], "dimensions": ["metrics.tenant"]}).results[0]
            assert during["lastRefreshTime"] == first["lastRefreshTime"] and len(during["data"]) == 3
        finally:
            writer.communicate("done\n", timeout=60)
        assert writer.returncode == 0
        publish(layout)
        time.sleep(0.6)  # the server looks for a new snapshot at most twice a second
        after = admin.load({"measures": ["metrics.revenue"]}).results[0]
    assert after["lastRefreshTime"] > first["lastRefreshTime"]
    assert after["data"] == first["data"]
