"""Shared by the SQL endpoint's tests: connections to the endpoint, and the governed numbers computed
independently from the warehouse's marts (never through the endpoint or MetricFlow)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import psycopg

from tests.conftest import SAMPLE_END
from tests.ingestion.helpers import query as warehouse

LAST_MONTH = SAMPLE_END.replace(day=1)  # the first day of the sample's last month


def connect(endpoint, token: str | None = None, **kwargs) -> psycopg.Connection:
    return psycopg.connect(host="127.0.0.1", port=endpoint.port, user="bi", dbname="metrics",
                           password=token or endpoint.admin, **kwargs)


def revenue_by_country(published) -> dict[str, tuple[Decimal, int]]:
    """Net revenue and completed orders per user country (the orders view's revenue, revenue_orders)."""
    rows = warehouse(published, """
        select u.country, sum(o.net_revenue), sum(case when o.is_revenue then 1 else 0 end)
        from marts.fct_orders o join marts.dim_users u on u.user_id = o.user_id group by 1""")
    return {country: (Decimal(str(revenue)), int(count)) for country, revenue, count in rows}


def revenue_by_month(published) -> dict[date, Decimal]:
    rows = warehouse(published, "select date_trunc('month', order_date), sum(net_revenue) from marts.fct_orders "
                                "group by 1")
    return {month: Decimal(str(revenue)) for month, revenue in rows}


def revenue_by_day(published) -> dict[date, Decimal]:
    rows = warehouse(published, "select order_date, sum(net_revenue) from marts.fct_orders group by 1")
    return {day: Decimal(str(revenue)) for day, revenue in rows}
