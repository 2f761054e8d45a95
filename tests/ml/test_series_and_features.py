"""Regularizing series and building features: gaps, impossible values, short and constant series."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml import features, insights
from ml.forecasting import find_insights
from ml.model import Forecaster
from ml.series import TOTAL, to_series
from tests.ml.synthetic import metrics_daily

METRICS = ("orders", "revenue")


def test_a_missing_date_is_added_and_filled_never_shifted():
    wide = metrics_daily(days=60, tenants=2)
    gap = pd.Timestamp("2026-10-10")
    holed = wide[~((wide["tenant_id"] == "t001") & (wide["date_day"] == gap))]
    series, repairs = to_series(holed, METRICS)
    orders = series[(series["tenant_id"] == "t001") & (series["metric"] == "orders")].set_index("date_day")
    assert len(orders) == 60 and orders.index.is_monotonic_increasing
    assert orders.loc[gap, "filled"]
    # filled from the same weekday a week before, and every other day keeps its own value
    assert orders.loc[gap, "value"] == orders.loc[gap - pd.Timedelta(days=7), "value"]
    original = wide[wide["tenant_id"] == "t001"].set_index("date_day")["orders"]
    kept = orders.drop(index=gap)["value"]
    assert (kept == original.loc[kept.index]).all()
    assert repairs.missing_dates == {("t001", "orders"): 1, ("t001", "revenue"): 1}


def test_nan_and_negative_values_are_replaced_and_counted():
    wide = metrics_daily(days=60, tenants=1)
    wide.loc[5, "orders"] = np.nan
    wide.loc[6, "orders"] = -3
    wide.loc[7, "revenue"] = np.inf
    series, repairs = to_series(wide, METRICS)
    assert (series["value"] >= 0).all() and np.isfinite(series["value"]).all()
    assert repairs.invalid_values == {("t001", "orders"): 2, ("t001", "revenue"): 1}
    assert any("NaN or negative" in line for line in repairs.describe())


def test_the_total_is_the_sum_of_the_repaired_tenants():
    series, _ = to_series(metrics_daily(days=40, tenants=3), METRICS)
    tenants = series[series["tenant_id"] != TOTAL].groupby(["metric", "date_day"])["value"].sum()
    total = series[series["tenant_id"] == TOTAL].set_index(["metric", "date_day"])["value"]
    assert np.allclose(total.sort_index(), tenants.sort_index())


def test_history_shorter_than_the_longest_lag_is_skipped_with_the_reason():
    series, _ = to_series(metrics_daily(days=20, tenants=1), METRICS)
    rows, skipped = features.build(series, METRICS)
    assert rows.empty
    assert {s.metric for s in skipped} == set(METRICS)
    assert all("shorter than" in s.reason and "longest lag 27" in s.reason for s in skipped)


def test_features_never_read_the_target_or_later_days():
    """Changing the days after an origin changes no feature of that origin, only its targets."""
    wide = metrics_daily(days=70, tenants=1)
    series, _ = to_series(wide, METRICS)
    origin = series["date_day"].min() + pd.Timedelta(days=40)
    later = series.copy()
    later.loc[later["date_day"] > origin, "value"] *= 3
    a, _ = features.build(series, METRICS)
    b, _ = features.build(later, METRICS)
    pick = lambda rows: rows[rows["origin"] == origin].reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(pick(a)[features.FEATURES], pick(b)[features.FEATURES])
    assert not np.allclose(pick(a)["target"], pick(b)["target"])


def test_a_holiday_is_a_feature_only_where_history_holds_it_once_before():
    """Labor Day 2026 (7 September) is coded only for a series that also saw Labor Day 2025."""
    labor_day = pd.Timestamp("2026-09-07")
    for days, coded in ((120, False), (450, True)):  # from 4 July 2026; from 8 August 2025
        series, _ = to_series(metrics_daily(days=days, tenants=1, end="2026-10-31"), METRICS)
        rows, _ = features.build(series, METRICS, horizons=1)
        on_the_day = rows[rows["target_date"] == labor_day]
        assert not on_the_day.empty and (on_the_day["target_holiday"] > 0).all() == coded, days
        assert (on_the_day["target_holiday_any"] > 0).all(), days  # what anomaly detection's explainer reads
        assert (rows["target_holiday"] > 0).any() == coded, days


def test_a_constant_series_trains_and_forecasts_its_constant():
    wide = metrics_daily(days=70, tenants=2)
    wide["orders"] = 10.0
    series, _ = to_series(wide, METRICS)
    rows, _ = features.build(series, METRICS)
    model = Forecaster().fit(rows)
    ahead = model.predict(rows[(rows["origin"] == rows["origin"].max()) & (rows["tenant_id"] == "t001")
                               & (rows["metric"] == "orders")])
    assert np.allclose(ahead["prediction"], 10.0, rtol=0.05)
    assert (ahead["lower_95"] <= ahead["prediction"]).all() and (ahead["prediction"] <= ahead["upper_95"]).all()


def test_series_too_short_for_a_model_fall_back_to_a_robust_z_score():
    wide = metrics_daily(days=21, tenants=2, anomalies=(("t002", 15, "orders", 4.0),))
    found = find_insights({"commerce": None, "engagement": None}, wide)
    anomalies = found[found["insight_type"].str.startswith("anomaly") & (found["tenant_id"] == "t002")]
    assert set(anomalies["method"]) == {"robust_zscore"}
    spike = anomalies[anomalies["metric"] == "orders"].iloc[0]
    assert str(spike["date_day"]) == "2026-10-26" and spike["insight_type"] == "anomaly_spike"
    assert "Orders for tenant t002 on 2026-10-26 were" in spike["explanation"]


def test_a_movement_every_tenant_shared_is_not_one_tenants_anomaly():
    day, other = pd.Timestamp("2026-09-07"), pd.Timestamp("2026-09-08")
    tenants = [f"t{i:03d}" for i in range(1, 7)]
    z = pd.DataFrame(
        [{"tenant_id": t, "metric": "orders", "target_date": day, "z": -5.0} for t in tenants]  # a holiday
        + [{"tenant_id": t, "metric": "orders", "target_date": other, "z": 0.2} for t in tenants[1:]]
        + [{"tenant_id": "t001", "metric": "orders", "target_date": other, "z": -5.0},  # one tenant's drop
           {"tenant_id": TOTAL, "metric": "orders", "target_date": day, "z": -6.0}])
    score = insights.without_shared_movement(z)
    assert (score[(z["target_date"] == day) & (z["tenant_id"] != TOTAL)].abs() < 1e-9).all()
    assert score[(z["tenant_id"] == "t001") & (z["target_date"] == other)].item() == pytest.approx(-5.2)
    assert score[z["tenant_id"] == TOTAL].item() == -6.0  # the total is not compared with tenants
    few = z[z["tenant_id"].isin(["t001", "t002", "t003", "t004"])]  # too few peers to tell: unchanged
    assert insights.without_shared_movement(few).tolist() == few["z"].tolist()


def test_a_count_the_model_learned_closely_is_still_judged_against_its_counting_noise():
    """Residuals (root scale) of a small tenant the model fitted closely: spread 0.5, below the
    Poisson noise of 1. Its day of 12 orders against 23 expected (-2.7) is ordinary noise for a
    count, and only the floor keeps it from scoring as an anomaly."""
    residuals = np.r_[np.random.default_rng(3).normal(0.0, 0.5, 60), -2.7]
    assert insights.robust_z(residuals)[-1] < -insights.ANOMALY_Z
    assert insights.robust_z(residuals, floor=1.0)[-1] == pytest.approx(-2.7, abs=0.2)
    assert {"orders", "sessions", "errors"} == insights.COUNTS  # revenue and active users have no such floor


@pytest.mark.parametrize(("z", "actual", "expected", "severity"), [
    (4.2, 58.0, 120.0, "high"),  # active users halved, near the threshold in a small tenant's noise
    (4.5, 52.0, 7.8, "high"),  # errors 6.7 times the expected
    (4.1, 185.0, 115.0, "medium"),  # 1.6 times
    (4.3, 30.0, 23.0, "low"),  # clear of the noise, 1.3 times
    (8.5, 3_100.0, 2_800.0, "high"),  # small by ratio, far beyond the noise of a large series
])
def test_an_anomaly_is_as_severe_as_its_distance_from_the_noise_or_from_the_expected_value(
        z, actual, expected, severity):
    assert insights.severity_of(z, actual, expected) == severity
