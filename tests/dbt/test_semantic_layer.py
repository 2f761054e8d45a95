"""The governed metrics: MetricFlow validates the definitions (semantics and against the built
warehouse), and the numbers it computes equal the same aggregates written directly in SQL."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess

import pytest

from ingestion.paths import DataLayout
from orchestration.environment import tool
from tests.conftest import DBT_DIR
from tests.ingestion.helpers import query

REQUIRED_METRICS = {
    "revenue", "orders", "average_order_value", "active_users", "weekly_active_users", "monthly_active_users",
    "sessions", "events", "conversion_rate", "mrr", "churn_rate", "marketing_spend", "customer_acquisition_cost",
    "forecast_revenue", "forecast_orders", "forecast_active_users",
}


def mf(layout, *args: str) -> str:
    env = {**os.environ, "PLATFORM_WAREHOUSE": str(layout.warehouse), "DBT_TARGET": "duckdb",
           "DBT_PROFILES_DIR": str(DBT_DIR), "DBT_TARGET_PATH": str(layout.root / "mf-target")}
    proc = subprocess.run([tool("mf"), *args], cwd=DBT_DIR, env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return proc.stdout


def mf_query(layout, metrics: list[str], group_by: list[str]) -> list[dict]:
    out = layout.root / "mf-query.csv"
    mf(layout, "query", "--metrics", ",".join(metrics), "--group-by", ",".join(group_by), "--csv", str(out),
       "--quiet")
    with open(out) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def warehouse(built, tmp_path_factory) -> DataLayout:
    """A copy of the built warehouse: MetricFlow's CLI opens it for writing, which would lock the
    shared one against the other tests' readers."""
    layout = DataLayout(tmp_path_factory.mktemp("metricflow"))
    shutil.copyfile(built[0].warehouse, layout.warehouse)
    return layout


# Warnings MetricFlow gives that the YAML cannot avoid on dbt-core 1.11 (dbt_project/README.md says why)
KNOWN_WARNINGS = (
    "Cumulative metric 'weekly_active_users' should not have both a measure and a metric as inputs",
    "Cumulative metric 'monthly_active_users' should not have both a measure and a metric as inputs",
    "configuring a time spine at or below the smallest time dimension granularity is recommended",
)


def test_definitions_validate_against_the_warehouse(warehouse):
    layout = warehouse
    out = mf(layout, "validate-configs", "--show-all")
    assert "ERRORS: 0" in out
    assert out.count("Successfully validated") >= 6  # semantics, then models, dimensions, entities, measures, metrics
    warnings = [line for line in out.splitlines() if "WARNING:" in line]
    unexplained = [w for w in warnings if not any(known in w for known in KNOWN_WARNINGS)]
    assert not unexplained


def test_every_governed_metric_is_listed(warehouse):
    layout = warehouse
    listed = mf(layout, "list", "metrics")
    missing = [m for m in REQUIRED_METRICS if f"• {m}:" not in listed]
    assert not missing, listed[-3000:]


def test_metric_values_equal_direct_sql(warehouse):
    layout = warehouse
    rows = mf_query(layout, ["revenue", "orders", "conversion_rate", "mrr"], ["metric_time__month", "tenant"])
    got = {(r["metric_time__month"][:10], r["tenant"]): r for r in rows}
    expected = query(layout, """
        with monthly as (
            select date_trunc('month', date_day) as month, tenant_id, max(date_day) as last_day,
                   sum(revenue) as revenue, sum(orders) as orders
            from marts.metrics_daily group by 1, 2
        ),
        sessions as (
            select date_trunc('month', session_date) as month, tenant_id,
                   avg(case when is_converted then 1.0 else 0 end) as conversion_rate
            from marts.fct_sessions group by 1, 2
        )
        select cast(monthly.month as date), monthly.tenant_id, monthly.revenue, monthly.orders,
               sessions.conversion_rate, daily.mrr
        from monthly
        join sessions using (month, tenant_id)
        join marts.metrics_daily as daily on daily.date_day = monthly.last_day and daily.tenant_id = monthly.tenant_id
    """)
    assert len(expected) == len(got)
    for month, tenant, revenue, orders, conversion, mrr in expected:
        row = got[(str(month), tenant)]
        assert float(row["revenue"]) == pytest.approx(float(revenue), abs=0.01)
        assert int(float(row["orders"])) == orders
        assert float(row["conversion_rate"]) == pytest.approx(float(conversion), rel=1e-9)
        assert float(row["mrr"]) == pytest.approx(float(mrr), abs=0.01)


def test_weekly_active_users_count_distinct_users_over_seven_days(warehouse):
    layout = warehouse
    rows = mf_query(layout, ["weekly_active_users"], ["metric_time__day"])
    got = {r["metric_time__day"][:10]: int(float(r["weekly_active_users"])) for r in rows}
    day = sorted(got)[20]
    (expected,) = query(layout, f"""
        select count(distinct user_id) from marts.fct_events
        where event_date between date '{day}' - interval 6 day and date '{day}'
    """)[0]
    assert got[day] == expected


def test_customer_acquisition_cost_by_channel_joins_spend_and_signups(warehouse):
    layout = warehouse
    rows = mf_query(layout, ["marketing_spend", "new_users", "customer_acquisition_cost"], ["channel"])
    got = {r["channel"]: r for r in rows}
    spend = dict(query(layout, "select channel, sum(spend) from marts.fct_marketing_spend group by 1"))
    signups = dict(query(layout, "select acquisition_channel, count(*) from marts.dim_users group by 1"))
    assert set(got) == set(spend) | set(signups)
    for channel, row in got.items():
        assert float(row["new_users"] or 0) == signups.get(channel, 0)
        assert float(row["marketing_spend"] or 0) == pytest.approx(float(spend.get(channel, 0)), abs=0.01)
        if channel in spend and signups.get(channel):
            assert float(row["customer_acquisition_cost"]) == pytest.approx(
                float(spend[channel]) / signups[channel], rel=1e-6)


@pytest.mark.parametrize("grain", ["week", "quarter", "year"])
def test_every_granularity(warehouse, grain):
    layout = warehouse
    rows = mf_query(layout, ["revenue"], [f"metric_time__{grain}"])
    total = sum(float(r["revenue"] or 0) for r in rows)
    (expected,) = query(layout, "select sum(net_revenue) from marts.fct_orders")[0]
    assert total == pytest.approx(float(expected), abs=0.01)
    assert len({r[f"metric_time__{grain}"] for r in rows}) == len(rows)


def test_forecast_revenue_sums_the_tenant_forecasts(warehouse):
    layout = warehouse
    rows = mf_query(layout, ["forecast_revenue", "forecast_orders"], ["metric_time__day"])
    got = {r["metric_time__day"][:10]: (float(r["forecast_revenue"]), float(r["forecast_orders"])) for r in rows}
    expected = query(layout, """
        select cast(forecast_date as date),
               sum(case when metric = 'revenue' then prediction end),
               sum(case when metric = 'orders' then prediction end)
        from ml.forecast_daily where tenant_id <> 'all' group by 1""")
    assert len(got) == len(expected) == 28
    for day, revenue, orders in expected:
        assert got[str(day)] == (pytest.approx(revenue), pytest.approx(orders))
