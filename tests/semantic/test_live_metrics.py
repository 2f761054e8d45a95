"""The real-time mart's per-minute facts as governed metrics (the `live` view), through the real
metrics server and SQL endpoint over the published tiny sample: at minute and hour grain, with the
tenant isolation of every metric, and equal per tenant and day to the day-level metrics that
measure the same thing."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

import psycopg
import pytest

from semantic.client import MetricsClient
from tests.conftest import SAMPLE_END, sample_day
from tests.ingestion.helpers import query as sql

SPAN = [f"{sample_day(60)}", f"{SAMPLE_END}"]
# live metric -> the event_type whose day-level `events` it counts
BY_EVENT_TYPE = {"live.live_page_views": "page_view", "live.live_errors": "error", "live.live_signups": "signup",
                 "live.live_checkouts": "checkout_completed", "live.live_sessions_started": "session_start"}


@pytest.fixture(scope="module")
def admin(server):
    with MetricsClient(server.url, server.admin) as client:
        yield client


def _by_day(view: str, grain: str = "day") -> dict:
    return {"dimension": f"{view}.metric_time", "granularity": grain, "dateRange": SPAN}


def _key(row: dict, view: str, *dimensions: str) -> tuple:
    return (*(row[f"{view}.{d}"] for d in dimensions), row[f"{view}.metric_time.day"][:10])


def test_the_live_view_offers_the_per_minute_facts_down_to_the_minute(admin):
    live = next(cube for cube in admin.meta()["cubes"] if cube["name"] == "live")
    assert {m["name"] for m in live["measures"]} == {
        "live.live_events", "live.live_visitors", "live.live_sessions_started", "live.live_page_views",
        "live.live_signups", "live.live_checkouts", "live.live_gross_revenue", "live.live_errors"}
    time = next(d for d in live["dimensions"] if d["type"] == "time")
    assert [g["name"] for g in time["granularities"]][:3] == ["minute", "hour", "day"]
    assert "live.tenant" in {d["name"] for d in live["dimensions"]}


def test_live_metrics_agree_with_the_day_level_metrics_per_tenant_and_day(admin, published):
    live = admin.load({"measures": ["live.live_events", "live.live_gross_revenue", *BY_EVENT_TYPE],
                       "dimensions": ["live.tenant"], "timeDimensions": [_by_day("live")]}).rows
    events = admin.load({"measures": ["events.events"], "dimensions": ["events.tenant", "events.event__event_type"],
                         "timeDimensions": [_by_day("events")]}).rows
    orders = admin.load({"measures": ["orders.gross_revenue", "orders.revenue"], "dimensions": ["orders.tenant"],
                         "timeDimensions": [_by_day("orders")]}).rows
    assert len(live) > 60  # three tenants over the sample's weeks

    per_type = defaultdict(int)
    for row in events:
        per_type[_key(row, "events", "tenant", "event__event_type")] += int(row["events.events"])
        per_type[_key(row, "events", "tenant") + ("*",)] += int(row["events.events"])
    for row in live:
        tenant, day = _key(row, "live", "tenant")
        assert int(row["live.live_events"]) == per_type[(tenant, day, "*")], (tenant, day)
        for member, event_type in BY_EVENT_TYPE.items():
            assert int(row[member]) == per_type[(tenant, event_type, day)], (member, tenant, day)
    assert {_key(r, "live", "tenant") for r in live} == {(t, d) for t, d, kind in per_type if kind == "*"}

    # revenue at checkout is gross: equal to the orders' gross revenue, and above the net revenue
    # exactly by the orders refunded or cancelled since
    gross = {_key(r, "orders", "tenant"): (Decimal(r["orders.gross_revenue"]), Decimal(r["orders.revenue"] or 0))
             for r in orders}
    undone = {(t, str(d)): v for t, d, v in sql(published, """
        select tenant_id, order_date, sum(order_total) from marts.fct_orders
        where order_status <> 'completed' group by 1, 2""")}
    for row in live:
        key = _key(row, "live", "tenant")
        live_gross = Decimal(row["live.live_gross_revenue"])
        assert live_gross == gross.get(key, (Decimal(0), Decimal(0)))[0], key
        assert live_gross - gross.get(key, (Decimal(0), Decimal(0)))[1] == undone.get(key, Decimal(0)), key
    assert undone  # the sample has refunds: the two revenues do differ


def test_live_visitors_are_distinct_at_every_grain(admin, published):
    day = sample_day(1)
    rows = admin.load({"measures": ["live.live_visitors"], "dimensions": ["live.tenant"], "timeDimensions": [
        {"dimension": "live.metric_time", "granularity": "minute", "dateRange": [f"{day}", f"{day}"]}],
        "limit": 50000}).rows
    per_minute = {(r["live.tenant"], r["live.metric_time.minute"][:16]): int(r["live.live_visitors"]) for r in rows}
    expected = {(t, m): v for t, m, v in sql(published, """
        select tenant_id, strftime(minute_at, '%Y-%m-%dT%H:%M'), visitors from marts.metrics_per_minute
        where cast(minute_at as date) = ?""", day)}
    assert per_minute == expected and expected  # the mart's own distinct count, minute by minute
    daily = admin.load({"measures": ["live.live_visitors"], "dimensions": ["live.tenant"], "timeDimensions": [
        {"dimension": "live.metric_time", "dateRange": [f"{day}", f"{day}"]}]}).rows
    distinct = dict(sql(published, "select tenant_id, count(distinct visitor_id) from marts.fct_events "
                                   "where event_date = ? group by 1", day))
    assert {r["live.tenant"]: int(r["live.live_visitors"]) for r in daily} == distinct
    assert sum(distinct.values()) < sum(per_minute.values())  # a visitor of several minutes counts once


def test_a_tenant_reads_its_own_live_metrics_by_hour_over_rest_and_by_minute_over_sql(server, sql_endpoint,
                                                                                      published):
    day = sample_day(2)
    hourly = {h: int(n) for h, n in sql(published, """
        select strftime(date_trunc('hour', minute_at), '%Y-%m-%dT%H:00:00.000'), sum(events)
        from marts.metrics_per_minute where tenant_id = 't002' and cast(minute_at as date) = ? group by 1""", day)}
    with MetricsClient(server.url, server.token("t002")) as t002:
        rows = t002.load({"measures": ["live.live_events"], "filters": [
            {"member": "live.tenant", "operator": "equals", "values": ["t001", "t002"]}], "timeDimensions": [
            {"dimension": "live.metric_time", "granularity": "hour", "dateRange": [f"{day}", f"{day}"]}]}).rows
    assert {r["live.metric_time.hour"]: int(r["live.live_events"]) for r in rows} == hourly and hourly

    # an afternoon, to the minute: times of day bound minute-grain facts exactly
    start, end = f"{day} 12:00:00", f"{day} 17:30:00"
    per_minute = sql(published, """
        select minute_at, events, revenue from marts.metrics_per_minute
        where tenant_id = 't001' and minute_at >= cast(? as timestamp) and minute_at < cast(? as timestamp)
        order by 1""", start, end)
    with psycopg.connect(host="127.0.0.1", port=sql_endpoint.port, user="bi", dbname="metrics",
                         password=sql_endpoint.token("t001")) as conn:
        got = conn.execute("select metric_time__minute, live_events, live_gross_revenue from live "
                           "where metric_time__minute >= %s and metric_time__minute < %s order by 1",
                           [start, end]).fetchall()
        other = conn.execute("select tenant, live_events from live where tenant = 't002'").fetchall()
    assert [(m, int(e), Decimal(r)) for m, e, r in got] == [(m, e, r) for m, e, r in per_minute] and per_minute
    assert other == []
