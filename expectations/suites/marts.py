"""Marts that metrics, forecasts and reports read: sane values, reconciliations, completeness, freshness.

dbt tests already hold keys and relationships; these hold the business rules across tables and
over time that a key test cannot see.
"""

from __future__ import annotations

from expectations.spec import Check, Frame, Severity, Suite

METRICS_DAILY = ("marts", "metrics_daily")
FCT_ORDERS = ("marts", "fct_orders")
FCT_EVENTS = ("marts", "fct_events")
MRR_TOLERANCE = 0.01  # relative difference allowed between the mart's MRR and the subscriptions' own
MAX_DATA_AGE_HOURS = 48

ORDERS = "select order_id, tenant_id, order_date, order_total, net_revenue from marts.fct_orders order by order_id"

METRICS = """
select tenant_id, date_day, revenue, orders, active_users, conversion_rate
from marts.metrics_daily
order by tenant_id, date_day
"""

ACTIVE_USERS = """
with monthly as (
    select tenant_id, date_trunc('month', event_date) as month, count(distinct user_id) as monthly_active_users
    from marts.fct_events
    group by 1, 2
)
select daily.tenant_id, daily.date_day, daily.active_users as daily_active_users,
       coalesce(monthly.monthly_active_users, 0) as monthly_active_users
from marts.metrics_daily as daily
left join monthly on monthly.tenant_id = daily.tenant_id and monthly.month = date_trunc('month', daily.date_day)
order by 1, 2
"""

MRR = """
with last_day as (select max(date_day) as date_day from marts.metrics_daily),
mart as (
    select tenant_id, sum(mrr) as mart_mrr
    from marts.metrics_daily join last_day using (date_day)
    group by 1
),
source as (
    select tenant_id, sum(mrr) as subscriptions_mrr
    from raw_app.subscriptions, last_day
    where status = 'active' and cast(started_at as date) <= last_day.date_day
    group by 1
)
select tenant_id, coalesce(mart_mrr, 0) as mart_mrr, coalesce(subscriptions_mrr, 0) as subscriptions_mrr,
       abs(coalesce(mart_mrr, 0) - coalesce(subscriptions_mrr, 0))
           / greatest(coalesce(subscriptions_mrr, 0), 1) as relative_difference
from mart full join source using (tenant_id)
order by 1
"""

TENANT_DAYS = """
with bounds as (select min(date_day) as first_day, max(date_day) as last_day from marts.metrics_daily),
grid as (
    select tenants.tenant_id, cast(days.d as date) as date_day
    from marts.dim_tenants as tenants, bounds,
         generate_series(bounds.first_day, bounds.last_day, interval 1 day) as days(d)
)
select grid.tenant_id, grid.date_day, count(metrics.tenant_id) as rows_in_metrics_daily
from grid
left join marts.metrics_daily as metrics using (tenant_id, date_day)
group by 1, 2
order by 1, 2
"""

FRESHNESS = """
select max(event_at) as newest_event_at,
       date_diff('second', max(event_at), timestamptz '{now}') / 3600.0 as data_age_hours
from marts.fct_events
"""

SUITE = Suite(
    name="marts",
    description=__doc__.split("\n\n")[0],
    frames=(
        Frame("orders", ORDERS, label=("order_id", "tenant_id", "order_date")),
        Frame("metrics", METRICS, label=("tenant_id", "date_day")),
        Frame("active_users", ACTIVE_USERS, label=("tenant_id", "date_day")),
        Frame("mrr", MRR, label=("tenant_id",)),
        Frame("tenant_days", TENANT_DAYS, label=("tenant_id", "date_day")),
        Frame("freshness", FRESHNESS, label=("newest_event_at",)),
    ),
    checks=(
        Check("order_totals_non_negative", FCT_ORDERS, "orders", "expect_column_values_to_be_between",
              {"column": "order_total", "min_value": 0}, Severity.CRITICAL,
              "No order in the mart has a negative total."),
        Check("net_revenue_non_negative", FCT_ORDERS, "orders", "expect_column_values_to_be_between",
              {"column": "net_revenue", "min_value": 0}, Severity.CRITICAL, "No order's net revenue is negative."),
        Check("revenue_non_negative", METRICS_DAILY, "metrics", "expect_column_values_to_be_between",
              {"column": "revenue", "min_value": 0}, Severity.CRITICAL, "Daily revenue is never negative."),
        Check("orders_non_negative", METRICS_DAILY, "metrics", "expect_column_values_to_be_between",
              {"column": "orders", "min_value": 0}, Severity.CRITICAL, "Daily order counts are never negative."),
        Check("conversion_rate_is_a_share", METRICS_DAILY, "metrics", "expect_column_values_to_be_between",
              {"column": "conversion_rate", "min_value": 0, "max_value": 1}, Severity.CRITICAL,
              "Conversion rate is a share of sessions, between 0 and 1."),
        Check("daily_active_users_within_monthly", METRICS_DAILY, "active_users",
              "expect_column_pair_values_a_to_be_greater_than_b",
              {"column_A": "monthly_active_users", "column_B": "daily_active_users", "or_equal": True},
              Severity.CRITICAL, "A day's active users never exceed the active users of its calendar month."),
        Check("mrr_reconciles_with_subscriptions", METRICS_DAILY, "mrr", "expect_column_values_to_be_between",
              {"column": "relative_difference", "max_value": MRR_TOLERANCE}, Severity.CRITICAL,
              f"Each tenant's MRR on the last day is within {MRR_TOLERANCE:.0%} of its active subscriptions' MRR."),
        Check("every_tenant_every_day", METRICS_DAILY, "tenant_days", "expect_column_values_to_be_between",
              {"column": "rows_in_metrics_daily", "min_value": 1, "max_value": 1}, Severity.CRITICAL,
              "metrics_daily has exactly one row for every tenant on every day of its range."),
        Check("newest_event_is_fresh", FCT_EVENTS, "freshness", "expect_column_values_to_be_between",
              {"column": "data_age_hours", "max_value": MAX_DATA_AGE_HOURS}, Severity.WARNING,
              f"The newest event in the marts is at most {MAX_DATA_AGE_HOURS} hours old."),
    ),
)
