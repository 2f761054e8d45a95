"""Cube's views over the governed metrics, through the real metrics server: what `/meta` offers
always works (every measure × dimension pair of every view, at every grain it lists), Cube's
aggregation types and formats, sub-day grains, date ranges with times, ungrouped queries,
filters on measures, rolling windows without a grain, and every bad input answered 400 (or 403
for a token) naming what is at fault."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import jwt
import orjson
import pytest

from semantic.client import MetricsClient, MetricsError
from tests.conftest import sample_day
from tests.ingestion.helpers import query as sql
from tests.semantic.conftest import SECRET

CUBE_AGG_TYPES = {"count", "countDistinct", "countDistinctApprox", "sum", "avg", "min", "max", "number",
                  "runningTotal"}


@pytest.fixture(scope="module")
def admin(server):
    with MetricsClient(server.url, server.admin) as client:
        yield client


@pytest.fixture(scope="module")
def views(admin) -> dict[str, dict]:
    return {cube["name"]: cube for cube in admin.meta()["cubes"]}


def _money(value) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


def test_meta_lists_views_of_the_metrics_with_cubes_types(views):
    assert {"orders", "events", "sessions", "subscriptions_daily", "marketing_spend", "users", "acquisition",
            "user_activity", "forecasts"} <= set(views)
    assert "metrics" not in views  # the view of earlier releases still answers, but is not offered
    measures = {m["name"]: m for cube in views.values() for m in cube["measures"]}
    assert {m["aggType"] for m in measures.values()} <= CUBE_AGG_TYPES
    assert measures["orders.revenue"]["aggType"] == "sum" and measures["orders.revenue"]["format"] == "currency"
    assert measures["orders.average_order_value"]["aggType"] == "number"
    assert measures["sessions.conversion_rate"]["format"] == "percent"
    assert measures["events.active_users"]["aggType"] == "countDistinct"
    assert measures["events.events"]["aggType"] == "count"  # MetricFlow loads a count as a sum of ones
    assert measures["user_activity.weekly_active_users"]["cumulative"] is True
    assert measures["subscriptions_daily.mrr"]["aggType"] == "number"  # a balance: the period's last day counts
    dimensions = {d["name"]: d for cube in views.values() for d in cube["dimensions"]}
    assert dimensions["acquisition.channel__is_paid"]["type"] == "boolean"
    assert dimensions["orders.user__country"]["type"] == "string"
    grains = {name: [g["name"] for g in dimensions[f"{name}.metric_time"]["granularities"]] for name in views}
    assert grains["orders"][:3] == ["minute", "hour", "day"] and "hour" not in grains["subscriptions_daily"]
    assert all(m["description"] for m in measures.values())
    assert all(cube["type"] == "view" and cube["description"] for cube in views.values())


def test_every_measure_dimension_pair_of_every_view_works(admin, views):
    """What a generic client builds from /meta alone: each measure with each dimension, and each
    measure at each grain of the view's time dimension, in one blending request per view."""
    for name, cube in views.items():
        dimensions = [d for d in cube["dimensions"] if d["type"] != "time"]
        time_dimension = next(d for d in cube["dimensions"] if d["type"] == "time")
        queries = [{"measures": [m["name"]], "dimensions": [d["name"]], "limit": 5}
                   for m in cube["measures"] for d in dimensions]
        queries += [{"measures": [m["name"]], "timeDimensions": [
            {"dimension": time_dimension["name"], "granularity": g["name"]}], "limit": 5}
            for m in cube["measures"] for g in time_dimension["granularities"]]
        queries.append({"measures": [m["name"] for m in cube["measures"]],
                        "dimensions": [d["name"] for d in dimensions], "limit": 5})
        result = admin.load(queries)
        assert result.query_type == "blendingQuery" and len(result.results) == len(queries), name


def test_a_grain_finer_than_a_day_and_a_range_with_times(admin, published):
    day = sample_day(5)
    start, end = f"{day}T10:00:00", f"{day}T17:59:59"
    hourly = admin.load({"measures": ["orders.orders"], "timeDimensions": [
        {"dimension": "orders.metric_time", "granularity": "hour", "dateRange": [start, end]}]}).results[0]
    expected = dict(sql(published, """
        select strftime(date_trunc('hour', ordered_at), '%Y-%m-%dT%H:00:00.000'), count(*)
        from marts.fct_orders where order_status <> 'cancelled' and ordered_at >= ?::timestamptz
        and ordered_at < ?::timestamptz + interval 1 second group by 1""", f"{start}Z", f"{end}Z"))
    assert {r["orders.metric_time.hour"]: int(r["orders.orders"]) for r in hourly["data"]} == expected and expected
    assert hourly["query"]["timeDimensions"][0]["dateRange"] == [f"{start}.000", f"{end}.000"]
    revenue = admin.load({"measures": ["orders.revenue"], "timeDimensions": [
        {"dimension": "orders.metric_time", "dateRange": [start, end]}]}).rows
    in_window = sql(published, "select sum(net_revenue) from marts.fct_orders where ordered_at >= ?::timestamptz "
                               "and ordered_at < ?::timestamptz + interval 1 second", f"{start}Z", f"{end}Z")[0][0]
    assert _money(revenue[0]["orders.revenue"]) == _money(in_window)


def test_an_ungrouped_query_has_a_row_per_fact(admin, published):
    day = sample_day(3).isoformat()
    rows = admin.load({"measures": ["orders.revenue"], "dimensions": ["orders.order_id__order_status"],
                       "ungrouped": True, "timeDimensions": [{"dimension": "orders.metric_time",
                                                              "dateRange": [day, day]}]}).rows
    orders = sql(published, "select order_status, net_revenue from marts.fct_orders "
                            "where cast(ordered_at as date) = ?", day)
    assert sorted((r["orders.order_id__order_status"], _money(r["orders.revenue"])) for r in rows) == \
        sorted((status, _money(net)) for status, net in orders) and orders


def test_a_filter_on_a_measure_keeps_the_aggregated_rows_that_pass(admin, published):
    totals = {t: _money(v) for t, v in sql(published, "select tenant_id, sum(net_revenue) from marts.fct_orders "
                                                      "group by 1")}
    threshold = sorted(totals.values())[1]
    rows = admin.load({"measures": ["orders.revenue"], "dimensions": ["orders.tenant"], "total": True,
                       "filters": [{"member": "orders.revenue", "operator": "gte", "values": [str(threshold)]}]})
    kept = {r["orders.tenant"]: _money(r["orders.revenue"]) for r in rows.rows}
    assert kept == {t: v for t, v in totals.items() if v >= threshold} and rows.results[0]["total"] == len(kept)


def test_a_filter_on_a_dimension_two_entities_away_equals_its_group(admin):
    """orders -> user -> channel: the filter reaches as far as the group-by does."""
    grouped = {r["orders.user__channel__is_paid"]: _money(r["orders.revenue"]) for r in admin.load(
        {"measures": ["orders.revenue"], "dimensions": ["orders.user__channel__is_paid"]}).rows}
    for flag in (True, False):
        rows = admin.load({"measures": ["orders.revenue"], "filters": [
            {"member": "orders.user__channel__is_paid", "operator": "equals", "values": [str(flag).lower()]}]}).rows
        assert _money(rows[0]["orders.revenue"]) == grouped[flag], flag


def test_a_rolling_window_without_a_grain_is_its_value_on_the_last_day(admin):
    first, last = sample_day(20).isoformat(), sample_day(6).isoformat()
    daily = admin.load({"measures": ["user_activity.weekly_active_users"], "dimensions": ["user_activity.tenant"],
                        "timeDimensions": [{"dimension": "user_activity.metric_time", "granularity": "day",
                                            "dateRange": [first, last]}]}).rows
    on_last_day = {r["user_activity.tenant"]: r["user_activity.weekly_active_users"] for r in daily
                   if r["user_activity.metric_time.day"].startswith(last)}
    query = {"measures": ["user_activity.weekly_active_users", "user_activity.active_users"],
             "dimensions": ["user_activity.tenant"],
             "timeDimensions": [{"dimension": "user_activity.metric_time", "dateRange": [first, last]}]}
    rows = admin.load(query).rows
    assert {r["user_activity.tenant"]: r["user_activity.weekly_active_users"] for r in rows} == on_last_day
    plain = admin.load({**query, "measures": ["user_activity.active_users"]}).rows
    assert {r["user_activity.tenant"]: r["user_activity.active_users"] for r in rows} == \
        {r["user_activity.tenant"]: r["user_activity.active_users"] for r in plain}


def test_relative_ranges_to_now(admin):
    before = datetime.now(UTC).replace(tzinfo=None, second=0, microsecond=0)
    reply = admin.load({"measures": ["orders.orders"], "timeDimensions": [
        {"dimension": "orders.metric_time", "dateRange": "from 7 days ago to now"}]}).results[0]
    start, end = (datetime.fromisoformat(v) for v in reply["query"]["timeDimensions"][0]["dateRange"])
    assert before - timedelta(days=7, minutes=1) <= start <= before - timedelta(days=7) + timedelta(minutes=2)
    assert before <= end <= before + timedelta(minutes=2)
    hours = admin.load({"measures": ["orders.orders"], "timeDimensions": [
        {"dimension": "orders.metric_time", "dateRange": "last 6 hours"}]}).results[0]["query"]
    start, end = (datetime.fromisoformat(v) for v in hours["timeDimensions"][0]["dateRange"])
    assert end - start == timedelta(hours=6) - timedelta(milliseconds=1)


BAD_QUERIES = {
    "a dimension a metric cannot be cut by (earlier releases' view)": (
        {"measures": ["metrics.revenue"], "dimensions": ["metrics.channel__is_paid"]},
        "dimensions[0]: 'metrics.channel__is_paid' does not apply to 'revenue'"),
    "an entity that cannot be a group-by": (
        {"measures": ["metrics.orders"], "dimensions": ["metrics.channel"]},
        "dimensions[0]: 'metrics.channel' does not apply to 'orders'"),
    "members of two views": (
        {"measures": ["orders.revenue"], "dimensions": ["events.event__event_type"]},
        "dimensions[0]: 'events.event__event_type' is in view 'events', not 'orders'"),
    "a boolean filtered with a word": (
        {"measures": ["acquisition.new_users"],
         "filters": [{"member": "acquisition.channel__is_paid", "operator": "equals", "values": ["maybe"]}]},
        "filters[0].values[0]: expected true or false, got 'maybe'"),
    "a boolean filtered with contains": (
        {"measures": ["acquisition.new_users"],
         "filters": [{"member": "acquisition.channel__is_paid", "operator": "contains", "values": ["t"]}]},
        "filters[0].operator: 'contains' applies to string dimensions only"),
    "a NUL character in a value": (
        {"measures": ["orders.revenue"],
         "filters": [{"member": "orders.user__country", "operator": "equals", "values": ["D\u0000E"]}]},
        "filters[0].values[0]: contains a NUL character"),
    "a member that is not a string": ({"measures": [123]}, "measures[0]: expected a member name (a string), got int"),
    "a dimension that is an object": (
        {"measures": ["orders.revenue"], "dimensions": [{"a": 1}]},
        "dimensions[0]: expected a member name (a string), got dict"),
    "a range beyond the calendar": (
        {"measures": ["orders.revenue"], "timeDimensions": [
            {"dimension": "orders.metric_time", "dateRange": "last 100000 years"}]},
        "timeDimensions[0].dateRange: -100000 years from"),
    "filters nested 40 deep": (
        {"measures": ["orders.revenue"], "filters": [
            functools.reduce(lambda inner, _: {"or": [inner]}, range(40), {
                "member": "orders.tenant", "operator": "equals", "values": ["t001"]})]},
        "nested deeper than 32 levels"),
    "an hour on daily facts": (
        {"measures": ["subscriptions_daily.mrr"], "timeDimensions": [
            {"dimension": "subscriptions_daily.metric_time", "granularity": "hour"}]},
        "timeDimensions[0].granularity: 'hour' is finer than the facts of view 'subscriptions_daily' go"),
    "a measure filter mixed with a dimension filter in one or": (
        {"measures": ["orders.revenue"], "dimensions": ["orders.tenant"], "filters": [{"or": [
            {"member": "orders.revenue", "operator": "gt", "values": [1]},
            {"member": "orders.tenant", "operator": "equals", "values": ["t001"]}]}]},
        "filters[0].or: mixes filters on measures and on dimensions"),
    "a segment": ({"measures": ["orders.revenue"], "segments": ["orders.big"]}, "segments: no segments are defined"),
    "ungrouped on a view without a row key": (
        {"measures": ["acquisition.customer_acquisition_cost"], "ungrouped": True},
        "ungrouped: view 'acquisition' has no row key"),
}


@pytest.mark.parametrize("name", BAD_QUERIES)
def test_each_bad_query_is_a_400_naming_what_is_at_fault(admin, name):
    query, message = BAD_QUERIES[name]
    with pytest.raises(MetricsError) as error:
        admin.load(query)
    assert error.value.status == 400 and message in error.value.message, error.value.message


def test_a_body_nested_500_deep_is_a_400(server):
    """Deeper than Python's recursion would allow a naive reading: refused at the depth limit, not a crash."""
    leaf = '{"member": "orders.tenant", "operator": "equals", "values": ["t001"]}'
    body = '{"query": {"measures": ["orders.revenue"], "filters": [' + '{"or": [' * 500 + leaf + "]}" * 500 + "]}}"
    reply = httpx.post(f"{server.url}/cubejs-api/v1/load", content=body,
                       headers={"Authorization": server.admin, "Content-Type": "application/json"})
    assert reply.status_code == 400 and reply.json() == {
        "error": "filters[0]: filters nested deeper than 32 levels", "type": "UserError"}


def _token(payload: dict) -> str:
    return jwt.encode(payload, SECRET, algorithm="HS256")


@pytest.mark.parametrize(("payload", "valid_for", "message"), [
    ({"tenant_id": "t001"}, None, "Invalid token: it has no expiry (exp)"),
    ({"tenant_id": "t001"}, 400 * 24 * 3600, "valid for more than the allowed"),
    ({"tenant_id": "t999"}, 600, "tenant 't999' is not one the published data knows"),
])
def test_tokens_that_never_expire_last_too_long_or_name_an_unknown_tenant_are_refused(server, payload, valid_for,
                                                                                       message):
    if valid_for is not None:
        payload = {**payload, "exp": int(time.time()) + valid_for}
    reply = httpx.get(f"{server.url}/cubejs-api/v1/load", headers={"Authorization": _token(payload)},
                      params={"query": orjson.dumps({"measures": ["orders.revenue"]}).decode()})
    assert reply.status_code == 403 and message in reply.json()["error"]


def test_the_servers_start_without_the_pipeline(published):
    """The metrics server and the SQL endpoint import neither dlt nor Dagster nor the orchestration
    package: they read the published data and the semantic manifest only."""
    probe = ("import sys\nfrom semantic import pgwire, server\nserver.app_from_environment()\n"
             "print(sorted(m for m in ('dlt', 'dagster', 'orchestration') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "PLATFORM_DATA_DIR": str(published.root), "SEMANTIC_API_SECRET": SECRET})
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr[-2000:]
