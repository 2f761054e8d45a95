"""Insights that explain themselves: drivers (segments and components, through the semantic layer),
lead/lag relationships that survive a multiple-comparison correction and hold out of sample, and
priorities with a recommendation. The decomposition's rules on hand-made numbers; the rest on the
tiny sample's main run (the session's shared one) through MetricFlow on its warehouse.

Attribution accuracy on the default sample, where the injected anomalies are large enough to be
detected, is `make bench-insights`' (bench/insights.py): the tiny sample's are not detected.
"""

from __future__ import annotations

import json
import re
from datetime import date, timedelta

import duckdb
import numpy as np
import pandas as pd
import pytest

from ingestion.paths import DataLayout
from ml import correlations, drivers, priorities
from reports import messages
from semantic.metricflow_engine import engine_on, engine_on_warehouse
from semantic.publication import DuckDbReader
from semantic.settings import SEMANTIC_MANIFEST
from semantic.warehouse import Warehouse
from tests.ml.test_detection import JARGON


def _change(metric="active_users", actual=60.0, expected=100.0, tenant="t001", day=date(2026, 10, 20)):
    return drivers.Change("k", tenant, metric, day, actual, expected, (day,),
                          tuple(day - timedelta(days=7 * k) for k in range(1, 5)))


def test_a_change_carried_by_one_segment_names_it_with_its_share_and_a_spread_change_names_none():
    usual = pd.Series({"desktop": 50.0, "mobile": 45.0, "tablet": 5.0})
    noise = pd.Series(2.0, index=usual.index)
    # mobile lost everything; the others held
    parts = drivers.decompose(pd.Series({"desktop": 50.0, "mobile": 0.0, "tablet": 5.0}), usual, noise, 55.0, 100.0)
    named = drivers.standing_out(parts)
    assert named["segment"].tolist() == ["mobile"]
    assert named["share"].iloc[0] == pytest.approx(45 / 45) and named["usual_share"].iloc[0] == pytest.approx(0.45)
    sentence = drivers.segment_sentence("Active users", None, -45.0, "device", named, per_day=False)
    assert sentence == "100% of the drop is device mobile, where active users fell from 45 to 0."
    # every segment down by the same 45 %: nothing stands out
    spread = drivers.decompose(usual * 0.55, usual, noise, 55.0, 100.0)
    assert drivers.standing_out(spread).empty


def test_a_segment_with_no_volume_before_is_new_and_its_share_needs_no_division_by_it():
    usual = pd.Series({"US": 80.0, "DE": 20.0, "BR": 0.0})
    parts = drivers.decompose(pd.Series({"US": 80.0, "DE": 20.0, "BR": 60.0}), usual, pd.Series(dtype=float),
                              160.0, 100.0)
    brazil = parts.set_index("segment").loc["BR"]
    assert bool(brazil["is_new"]) and brazil["usual_share"] == 0.0 and brazil["share"] == pytest.approx(1.0)
    assert np.isfinite(parts[["share", "usual_share", "noise_ratio"]].to_numpy()).all()
    sentence = drivers.segment_sentence("Orders", None, 60.0, "country", drivers.standing_out(parts), per_day=False)
    assert sentence == "100% of the rise is country Brazil, which is new: none in the weeks before, 60 now."
    # nothing at all before, in any segment: every part is new, and nothing is divided by zero
    empty = drivers.decompose(pd.Series({"US": 5.0}), pd.Series({"US": 0.0}), pd.Series(dtype=float), 5.0, 0.0)
    assert bool(empty["is_new"].iloc[0]) and empty["share"].iloc[0] == pytest.approx(1.0)


DEVICE_BY_COUNTRY = drivers.Dimension.of(drivers.Dimension("user__device", "device"),
                                         drivers.Dimension("user__country", "country"))


def _cells(changed: dict[str, float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Device x country cells of 1,000 a day (mobile half of every country), some of them changed
    (x their usual value): the decomposition, and the cells a pair of dimensions may name."""
    usual = pd.Series({f"{d} × {c}": 1000 * p * q for d, p in {"desktop": 0.45, "mobile": 0.47, "tablet": 0.08}.items()
                       for c, q in {"US": 0.5, "DE": 0.2, "FR": 0.3}.items()})
    current = usual * pd.Series(changed).reindex(usual.index).fillna(1.0)
    parts = drivers.decompose(current, usual, np.sqrt(usual), float(current.sum()), float(usual.sum()))
    return parts, drivers.confined(parts, drivers.standing_out(parts))


def test_a_cell_of_two_dimensions_is_named_only_when_it_explains_the_change_far_better_than_either():
    # mobile users in Germany all gone: the cell, in words, with its share; the statistics in its row
    parts, named = _cells({"mobile × DE": 0.0})
    assert named["segment"].tolist() == ["mobile × DE"] and named["share"].iloc[0] == pytest.approx(1.0)
    assert drivers.segment_sentence("Sessions", None, -94.0, DEVICE_BY_COUNTRY, named, per_day=False) == (
        "100% of the drop is device mobile in Germany, where sessions fell from 94 to 0.")
    # a tenth of the tablets in Germany (1.6 % of the whole) ten times over: far out of proportion
    assert _cells({"tablet × DE": 10.0})[1]["segment"].tolist() == ["tablet × DE"]
    # all of Germany down alike: mobile in Germany stands out against the whole (47 % of the drop,
    # 9 % usual), but inside Germany carries only its usual part: "country Germany" says it all
    parts, named = _cells({"desktop × DE": 0.2, "mobile × DE": 0.2, "tablet × DE": 0.2})
    assert not drivers.standing_out(parts).empty and named.empty
    # mobile down in Germany and in France: inside mobile, neither cell carries three quarters
    assert _cells({"mobile × DE": 0.0, "mobile × FR": 0.0})[1].empty
    # Germany had no errors before: the cell's part of it is mobile's share of the whole (half), so
    # errors now all from mobile users in Germany are that cell; of a dimension with one value
    # (errors are all of event type "error"), the cell is the country itself, and not named
    usual = pd.Series({"US × mobile": 10.0, "US × desktop": 10.0})
    parts = drivers.decompose(pd.Series({"US × mobile": 10.0, "US × desktop": 10.0, "DE × mobile": 23.0}), usual,
                              pd.Series(1.0, index=usual.index), 43.0, 20.0)
    assert drivers.confined(parts, drivers.standing_out(parts))["segment"].tolist() == ["DE × mobile"]
    parts = drivers.decompose(pd.Series({"US × error": 20.0, "DE × error": 23.0}), pd.Series({"US × error": 20.0}),
                              pd.Series({"US × error": 1.0}), 43.0, 20.0)
    assert not drivers.standing_out(parts).empty and drivers.confined(parts, drivers.standing_out(parts)).empty
    # named only if it carries about as much as the best single dimension: not 43 % of a rise that
    # "device tablet" carries whole
    assert not drivers.pair_wins(pd.DataFrame({"share": [0.97]}), pd.DataFrame({"share": [0.43]}))
    assert drivers.pair_wins(pd.DataFrame({"share": [0.99]}), pd.DataFrame({"share": [0.96]}))
    assert drivers.pair_wins(None, pd.DataFrame({"share": [0.4]}))
    # a cell of 20 a day gone, the rest as usual: named, unless that is within its own ups and downs
    usual = pd.Series({"a × x": 20.0, "a × y": 480.0, "b × x": 180.0, "b × y": 320.0})
    current = usual.where(usual.index != "a × x", 0.0)
    for noise, named in ((2.0, ["a × x"]), (10.0, [])):
        parts = drivers.decompose(current, usual, pd.Series(noise, index=usual.index), 980.0, 1000.0)
        assert drivers.confined(parts, parts[parts["segment"] == "a × x"])["segment"].tolist() == named


def test_components_split_a_product_in_logarithms():
    day = date(2026, 10, 20)
    change = _change("revenue", day=day)
    days = [day, *change.baseline_days]
    values = pd.DataFrame({"day": days, "revenue_orders": [20.0] * 5, "average_order_value": [25.0, 50, 50, 50, 50]})
    parts = drivers.component_shares(values, change, [("revenue_orders", 1), ("average_order_value", 1)]).set_index(
        "segment")
    assert parts.loc["average_order_value", "share"] == pytest.approx(1.0, abs=0.01)
    assert parts.loc["revenue_orders", "share"] == pytest.approx(0.0, abs=0.01)
    words = drivers.component_sentence({"revenue_orders": ("Completed orders", None),
                                        "average_order_value": ("Average order value", "currency")},
                                       parts.reset_index())
    assert words == ("Behind it: Average order value fell from $50.00 to $25.00 (100% of the change), while "
                     "Completed orders held at about 20.")


@pytest.fixture(scope="module")
def governed(main_run):
    """The governed metrics of the tiny main run, read through MetricFlow on its warehouse."""
    data_dir, _ = main_run
    connection = duckdb.connect(str(DataLayout(data_dir).warehouse), read_only=True)
    yield data_dir, connection, drivers.GovernedMetrics(engine_on(DuckDbReader(connection), SEMANTIC_MANIFEST))
    connection.close()


def test_the_dimensions_and_components_come_from_the_semantic_models(governed):
    _, _, source = governed
    assert {"user__device", "user__country", "user__plan"} <= {d.name for d in source.dimensions("sessions")}
    assert "event__event_type" in {d.name for d in source.dimensions("active_users")}
    assert source.factors("revenue") == [("revenue_orders", 1), ("average_order_value", 1)]
    assert source.factors("customer_acquisition_cost") == [("marketing_spend", 1), ("new_users", -1)]


def test_a_metric_with_no_dimensions_gets_a_statement_not_a_decomposition(governed):
    _, connection, source = governed
    assert source.dimensions("mrr") == []  # the tenant's own attributes aside, MRR has none
    day = connection.execute("select max(date_day) from marts.metrics_daily").fetchone()[0]
    actual = connection.execute("select sum(mrr) from marts.metrics_daily where tenant_id = 't001' and date_day = ?",
                                [day]).fetchone()[0]
    explained = drivers.explain(_change("mrr", float(actual), 10 * float(actual) + 1000, day=day), source)
    assert explained.sentence == "MRR has no governed dimension to break the change down by."
    assert explained.top is None and explained.drivers.empty


def test_ordinary_days_name_no_driver(governed):
    """Every tenant and metric on the sample's last two weeks, injected days aside, explained as if it
    were an anomaly against its same-weekday baseline: no driver is named."""
    data_dir, connection, source = governed
    truth = json.loads(DataLayout(data_dir).ground_truth.read_text())
    injected = {(a["tenant_id"], date.fromisoformat(a["date"])) for a in truth["anomalies"]}
    daily = connection.execute("select * from marts.metrics_daily").df()
    daily["day"] = pd.to_datetime(daily["date_day"]).dt.date
    last, explained, named = daily["day"].max(), 0, []
    for tenant_id, rows in daily.groupby("tenant_id"):
        values = rows.set_index("day")
        for day in (last - timedelta(days=k) for k in range(14)):
            if (tenant_id, day) in injected:
                continue
            for metric in drivers.METRIC_OF_SERIES:
                expected = float(values.reindex([day - timedelta(days=7 * k) for k in range(1, 5)])[metric].mean())
                result = drivers.explain(_change(metric, float(values.loc[day, metric]), expected, tenant_id, day),
                                         source)
                explained += 1
                if result.top is not None:
                    named.append((tenant_id, day, metric, result.sentence))
    assert explained >= 150 and named == []


SESSION_COLUMNS = ("tenant_id", "visitor_id", "client_session_id", "started_at", "ended_at", "session_date",
                   "duration_seconds", "event_count", "page_views", "has_add_to_cart", "has_checkout_started",
                   "is_converted", "orders", "revenue")


def more_sessions(warehouse, tenant: str, day: date, users: str, each: int) -> None:
    """`each` more sessions on `day` for each user of `tenant` that `users` (a condition on
    marts.dim_users) selects: copies of one of the tenant's sessions of that day, on any engine
    (`semantic.warehouse.Warehouse`)."""
    numbers = ", ".join(f"({i})" for i in range(each))
    warehouse.execute(f"""
        insert into marts.fct_sessions
            (session_key, user_id, is_anonymous, device, country, {", ".join(SESSION_COLUMNS)})
        select 'pushed-' || s.session_key || '-' || u.user_id || '-' || cast(n.i as varchar), u.user_id, false,
               u.device, u.country, {", ".join(f"s.{c}" for c in SESSION_COLUMNS)}
        from (select * from marts.fct_sessions where tenant_id = ? and session_date = ? limit 1) as s
        cross join (select * from marts.dim_users where tenant_id = ? and {users}) as u
        cross join (values {numbers}) as n(i)
    """, [tenant, day, tenant])


def sessions_pushed_into_one_cell(warehouse) -> dict[str, drivers.Explained]:
    """On a warehouse whose open transaction the caller rolls back: sessions of the tenant with the
    most mobile users in Germany pushed up on its last day, for those users ("cell"), then (the
    first undone) for all its users in Germany alike ("country"); each change explained through
    MetricFlow on the warehouse, as the insights asset does (`engine_on_warehouse`)."""
    (tenant, day), = warehouse.rows("""
        select s.tenant_id, max(s.session_date) from marts.fct_sessions as s
        join marts.dim_users as u on s.tenant_id = u.tenant_id and s.user_id = u.user_id
        where u.device = 'mobile' and u.country = 'DE' group by 1 order by count(distinct s.user_id) desc, 1 limit 1""")
    count = "select count(*) from marts.fct_sessions where tenant_id = ? and session_date = ?"
    (usual,), = warehouse.rows(count, [tenant, day])
    engine = engine_on_warehouse(warehouse, SEMANTIC_MANIFEST)
    found = {}
    for case, users in (("cell", "device = 'mobile' and country = 'DE'"), ("country", "country = 'DE'")):
        warehouse.execute("delete from marts.fct_sessions where session_key like 'pushed-%'")
        more_sessions(warehouse, tenant, day, users, 12)
        (now,), = warehouse.rows(count, [tenant, day])
        found[case] = drivers.explain(_change("sessions", float(now), float(usual), tenant, day),
                                      drivers.GovernedMetrics(engine))
    return found


def assert_the_cell_then_the_country(found: dict[str, drivers.Explained]) -> None:
    assert found["cell"].cell == (("country", "DE"), ("device", "mobile"))  # the dimensions in their names' order
    assert found["cell"].place == "device mobile in Germany"
    assert re.fullmatch(r"\d+% of the rise is device mobile in Germany, where sessions rose from [\d.,]+ to [\d.,]+\.",
                    found["cell"].sentence), found["cell"].sentence
    row = found["cell"].drivers.iloc[0]
    assert (row["driver_kind"], row["dimension"], row["dimension_label"], row["segment"]) == (
        "segment", "user__country × user__device", "country × device", "DE × mobile")
    assert row["share"] >= drivers.MIN_SHARE and row["noise_ratio"] >= drivers.NOISE_Z
    # the whole country alike: Germany, and no cell of it
    assert found["country"].cell == (("country", "DE"),) and found["country"].place == "country Germany"
    assert "country Germany" in found["country"].sentence and "×" not in found["country"].sentence


def test_a_change_confined_to_one_device_in_one_country_is_named_through_metricflow_grouped_by_both(
        main_run, tmp_path):
    """On a copy of the tiny run's warehouse, in a transaction rolled back: the mobile users in
    Germany pushed up are named as that cell, in words; all of Germany pushed up alike, as the country."""
    data_dir, _ = main_run
    copy = tmp_path / DataLayout(data_dir).warehouse.name  # the catalog MetricFlow's SQL names
    copy.write_bytes(DataLayout(data_dir).warehouse.read_bytes())
    with duckdb.connect(str(copy)) as connection:
        connection.begin()
        assert_the_cell_then_the_country(sessions_pushed_into_one_cell(Warehouse(connection, "duckdb")))
        connection.rollback()


def test_the_main_run_writes_insights_drivers_and_relationships_as_marts_and_governed_metrics(governed):
    data_dir, connection, _ = governed
    columns = {c for (c,) in connection.execute(
        "select column_name from information_schema.columns where table_schema = 'ml' and table_name = 'insights'"
    ).fetchall()}
    assert {"insight_key", "drivers", "recommendation", "impact", "priority", "priority_rank"} <= columns
    for mart in ("fct_insights", "fct_insight_drivers", "fct_insight_correlations"):
        connection.execute(f"select * from marts.{mart} limit 1")
    # a day's verdict, provisional or confirmed (null for trends and shifts), is published with its insight
    verdicts = dict(connection.execute("select insight_type like 'trend%' or insight_type = 'change_point', "
                                       "list(distinct coalesce(verdict, 'null')) from marts.fct_insights group by 1"
                                       ).fetchall())
    assert verdicts.get(False) and set(verdicts[False]) <= {"provisional", "confirmed"}
    assert set(verdicts.get(True, [])) <= {"null"}
    engine = drivers.GovernedMetrics(engine_on(DuckDbReader(connection), SEMANTIC_MANIFEST))
    assert all(engine.known(m) for m in ("insights", "high_severity_insights", "insight_revenue_impact",
                                         "insight_drivers", "errors"))
    # the governed errors metric is metrics_daily's errors column
    errors = engine.daily(("errors",))
    direct = connection.execute("select tenant_id, date_day, errors from marts.metrics_daily where errors > 0").df()
    got = {(t, d): v for t, d, v in zip(errors["tenant"], errors["day"], errors["errors"], strict=True)}
    assert all(got[(t, pd.Timestamp(d).date())] == v for t, d, v in direct.itertuples(index=False))


def _moving(n: int, seed: int) -> pd.Series:
    rng = np.random.default_rng(seed)
    return pd.Series(rng.normal(0, 1, n))


def test_a_lead_that_holds_out_of_sample_is_found_and_noise_is_not():
    days = list(pd.date_range("2026-05-01", periods=120, freq="D").date)
    spend = np.exp(5 + 0.3 * _moving(120, 1).to_numpy())
    signups = np.exp(3 + 0.5 * np.log(np.r_[np.full(3, spend.mean()), spend[:-3]]) + 0.05 * _moving(120, 2).to_numpy())
    series = {("marketing_spend", "search"): pd.Series(spend, index=days),
              ("new_users", None): pd.Series(signups, index=days),
              ("sessions", None): pd.Series(np.exp(4 + 0.2 * _moving(120, 3).to_numpy()), index=days),
              ("orders", None): pd.Series(np.exp(2 + 0.2 * _moving(120, 4).to_numpy()), index=days)}
    found = correlations.find(series, {("marketing_spend", "search"): "new_users", ("sessions", None): "orders"}, days)
    assert found[["leader", "leader_segment", "follower", "lag_days", "direction"]].values.tolist() == [
        ["marketing_spend", "search", "new_users", 3, "together"]]
    row = found.iloc[0]
    assert row["fit_p_adjusted"] < correlations.FDR and row["holdout_p"] < correlations.HOLDOUT_ALPHA
    assert row["tests"] == 2 * correlations.MAX_LAG
    text = correlations.sentence(row.to_dict(), "Acme Retail", {"marketing_spend": "Marketing spend",
                                                                 "new_users": "New users"},
                                 {"marketing_spend": "channel"})
    assert "3 days after marketing spend on channel search" in text and "not proof" in text
    assert not re.search(r"\b(causes?|caused|because|drives? up|leads to)\b", text.replace("drives the other", ""))
    # too few days to fit and confirm: nothing
    assert correlations.find(series, {("sessions", None): "orders"}, days[:30]).empty


def test_insights_are_ordered_by_impact_confidence_and_recency_with_a_plain_recommendation():
    insights = pd.DataFrame([
        {"insight_type": "anomaly_drop", "metric": "revenue", "tenant_id": "t001", "date_day": date(2026, 10, 30),
         "value": 200.0, "expected": 1000.0, "confidence": 0.9, "explanation": "x"},
        {"insight_type": "anomaly_spike", "metric": "errors", "tenant_id": "t002", "date_day": date(2026, 10, 2),
         "value": 90.0, "expected": 10.0, "confidence": 0.9, "explanation": "x"},
        {"insight_type": "trend_up", "metric": "sessions", "tenant_id": "all", "date_day": date(2026, 10, 30),
         "value": 120.0, "expected": 100.0, "confidence": 0.5, "explanation": "x"},
    ])
    found = {drivers.insight_key(insights.iloc[0]): drivers.Explained(pd.DataFrame(), "", ("device", "mobile"))}
    ranked = priorities.prioritized(insights, found, {"t001": "Acme Retail", "t002": "Borealis Books"})
    assert ranked["metric"].tolist() == ["revenue", "errors", "sessions"]  # the old spike is four weeks back
    assert ranked["impact"].tolist() == [-800.0, 80.0, 20.0 * 28]
    assert ranked["recommendation"].iloc[0] == ("Check checkout, payments and prices for device mobile at Acme "
                                                "Retail on 2026-10-30.")
    assert ranked["recommendation"].iloc[1].startswith("Check the error logs and the latest releases at Borealis Books")
    for text in ranked["recommendation"]:
        assert not JARGON.search(text), text
    alert = messages.alert_webhook([{**ranked.iloc[0].to_dict(), "drivers": "100% of the drop is device mobile."}],
                                   "http://x")
    assert "100% of the drop is device mobile." in alert["text"] and "Recommended: Check checkout" in alert["text"]
