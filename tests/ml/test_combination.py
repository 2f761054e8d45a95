"""The shipped forecast combines the booster with ETS: how the shares are chosen, that the
backtest scores the combination on folds the shares never saw, and how a version is restored."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml import backtest, features
from ml.baselines import Baselines
from ml.model import Forecaster, choose_weights
from ml.series import METRICS, TOTAL, to_series
from tests.ml.synthetic import metrics_daily


def held(tenant_id: str, horizons: range, booster_error: float, ets_error: float, n: int = 4) -> pd.DataFrame:
    """Inner forecasts of one orders series, `n` per horizon, actual 100."""
    h = np.repeat(np.array(horizons), n)
    return pd.DataFrame({"tenant_id": tenant_id, "metric": "orders", "horizon": h, "target_value": 100.0,
                         "ets": 100.0 + ets_error, "scale": 10.0, "booster": 100.0 + booster_error})


def test_each_level_gets_the_share_that_forecast_it_best_and_thin_buckets_keep_the_nearer_one():
    frame = pd.concat([held(TOTAL, range(1, 15), booster_error=30, ets_error=2),  # ETS wins the total
                       held("t001", range(1, 15), booster_error=2, ets_error=30),  # the booster a tenant
                       held("t002", range(1, 8), booster_error=20, ets_error=-20)],  # opposite errors cancel
                      ignore_index=True)
    weights = choose_weights(frame, frame.pop("booster").to_numpy())
    assert weights[("orders", "total", "h1-7")] == 0.0 and weights[("orders", "total", "h8-14")] == 0.0
    assert weights[("orders", "tenant", "h1-7")] == 0.5  # t001 and t002 pooled: half and half is exact for t002
    assert weights[("orders", "total", "h15-28")] == 0.0  # no forecasts that far: the nearer bucket's share


def test_a_registered_version_restores_as_fitted_and_older_ones_read_the_booster():
    series, _ = to_series(metrics_daily(days=84, tenants=2), METRICS)
    rows, _ = features.build(series, ("orders", "revenue"))
    fitted = Forecaster().fit(rows, Baselines(series, features.MAX_HORIZON)).fit_explainer(rows)
    last = rows[rows["origin"] == rows["origin"].max()]
    ets = Baselines(series, features.MAX_HORIZON).attach(last)["ets"].to_numpy()

    restored = Forecaster.restore(fitted.booster, fitted.artifacts())
    assert restored.weights == fitted.weights and restored.needs_ets == fitted.needs_ets
    pd.testing.assert_frame_equal(restored.forecast(last, ets), fitted.forecast(last, ets))
    pd.testing.assert_frame_equal(restored.explain(rows), fitted.explain(rows))
    assert not np.allclose(fitted.explain(rows)["prediction"], fitted.predict(rows)["prediction"])

    older = Forecaster.restore(fitted.booster, {"calibration.json": fitted.artifacts()["calibration.json"]})
    assert older.weights == {} and not older.needs_ets and older.explainer is None
    pd.testing.assert_frame_equal(older.forecast(last, ets), fitted.predict(last))
    pd.testing.assert_frame_equal(older.explain(rows), fitted.predict(rows))


def test_the_backtest_scores_the_combination_the_booster_and_the_baselines_on_the_same_rows():
    series, _ = to_series(metrics_daily(days=98, tenants=2), METRICS)
    rows, _ = features.build(series, ("orders", "revenue"))
    bt = backtest.run(rows, series, folds=3)
    assert bt.folds == 3
    scores = bt.scores[(bt.scores["metric"] == "orders") & (bt.scores["level"] == "total")
                       & (bt.scores["window"] == "h1-7")].set_index("model")
    assert set(scores.index) == {"forecast", "lightgbm", "seasonal_naive", "ets"}
    assert (scores["points"] == 3 * 7).all()
    assert 0 < scores.loc["forecast", "coverage_95"] <= 1 and np.isnan(scores.loc["ets", "coverage_95"])
    # the combination lies between its parts on every row
    p = bt.predictions
    low, high = np.minimum(p["lightgbm"], p["ets"]), np.maximum(p["lightgbm"], p["ets"])
    assert ((p["prediction"] >= low - 1e-6) & (p["prediction"] <= high + 1e-6)).all()
