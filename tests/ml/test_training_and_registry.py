"""Training into a real MLflow store (SQLite, local artifacts): runs, registry, champion rule,
and a store that cannot be written."""

from __future__ import annotations

import shutil

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from ml import forecasting, insights, scoring
from ml.tracking import Store, TrackingStoreError, model_name, using
from ml.training import train_family
from tests.ml.synthetic import metrics_daily

INJECTED = (("t001", 80, "orders", 2.8), ("t002", 95, "orders", 0.25), ("t003", 70, "active_users", 0.5),
            ("t002", 100, "errors", 4.0))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    root = tmp_path_factory.mktemp("mlflow")
    return Store(f"sqlite:///{root / 'mlflow.db'}", root / "artifacts")


@pytest.fixture(scope="module")
def wide() -> pd.DataFrame:
    return metrics_daily(anomalies=INJECTED)


@pytest.fixture(scope="module")
def trained(store, wide):
    return {family: train_family(family, wide, store) for family in ("commerce", "engagement")}


def test_a_run_logs_folds_metrics_artifacts_and_a_registered_model(store, trained):
    report = trained["commerce"]
    assert report.folds >= 3 and report.version == "1"
    run = store.client.get_run(report.run_id)
    assert run.data.params["folds"] == str(report.folds) and "lag_0" in run.data.params["features"]
    for key in ("backtest.revenue.total.h1-7.forecast.mape", "backtest.orders.tenant.h1-7.seasonal_naive.mase",
                "backtest.orders.tenant.h1-7.ets.smape", "backtest.revenue.tenant.h1-7.forecast.coverage_95",
                "backtest.orders.total.h1-7.lightgbm.mase", "backtest.smape.forecast"):
        assert np.isfinite(run.data.metrics[key]), key
    history = store.client.get_metric_history(report.run_id, "fold.orders.tenant.h1-7.lightgbm.mase")
    assert sorted(m.step for m in history) == list(range(1, report.folds + 1))
    artifacts = {a.path for a in store.client.list_artifacts(report.run_id, "plots")}
    assert artifacts == {"plots/backtest.png", "plots/feature_importance.png"}
    assert {a.path for a in store.client.list_artifacts(report.run_id)} >= {"backtest_predictions.parquet",
                                                                            "calibration.json", "forecast.json",
                                                                            "explainer.txt"}
    assert {k for k in run.data.params if k.startswith("weight.")} == {f"weight.{'.'.join(k)}" for k in report.weights}
    version = store.client.get_model_version(model_name("commerce"), "1")
    assert version.run_id == report.run_id
    with using(store.uri):
        model = mlflow.models.get_model_info(version.source)
    assert model.signature is not None and model.saved_input_example_info is not None


def test_the_store_moves_with_its_artifacts_and_has_no_empty_default_experiment(store, trained, tmp_path):
    """Moving the store's folder (as moving the project's data/ does) keeps every artifact reachable."""
    root = store.artifact_root.parent
    experiments = store.client.search_experiments()
    assert sorted(e.name for e in experiments) == ["forecast-commerce", "forecast-engagement"]
    assert store.client.get_experiment("0").lifecycle_stage == "deleted"
    run = store.client.get_run(trained["commerce"].run_id)
    for uri in (*(e.artifact_location for e in experiments), run.info.artifact_uri):
        assert str(root) not in uri and uri.startswith("platform-store:/"), uri
    # the store copied elsewhere, and the original's artifacts out of reach while the copy is read (its
    # database stays: the module's other tests hold connections to it)
    moved = tmp_path / "elsewhere" / "mlflow"
    shutil.copytree(root, moved)
    away = root / "artifacts-away"
    (root / "artifacts").rename(away)
    try:
        there = Store(f"sqlite:///{moved / 'mlflow.db'}", moved / "artifacts")
        booster, documents = there.load(there.client.get_model_version(model_name("commerce"), "1"))
        assert booster.num_trees() > 0 and set(documents) >= {"calibration.json", "forecast.json"}
        assert {a.path for a in there.client.list_artifacts(run.info.run_id, "plots")} == {
            "plots/backtest.png", "plots/feature_importance.png"}
    finally:
        away.rename(root / "artifacts")


def test_a_model_that_beats_seasonal_naive_becomes_champion(store, trained):
    for family, report in trained.items():
        assert report.promoted, report.reason
        assert report.model_mase < report.naive_mase
        assert str(store.champion(family).version) == report.version
        assert store.client.get_run(report.run_id).data.tags["promotion"].startswith("promoted: backtest MASE")


def test_a_model_that_does_not_beat_seasonal_naive_leaves_the_champion(store, trained):
    """Noise-free weekly series: seasonal naive is exact, so the new version cannot win."""
    report = train_family("commerce", metrics_daily(periodic=True), store)
    assert not report.promoted and "does not beat seasonal naive" in report.reason
    assert report.version == "2"
    assert str(store.champion("commerce").version) == trained["commerce"].version
    assert "does not beat" in store.client.get_run(report.run_id).data.tags["promotion"]


def test_forecasts_have_every_series_and_horizon_with_ordered_intervals(store, trained, wide):
    loaded = forecasting.load(store, "commerce")
    assert loaded.champion and loaded.version == trained["commerce"].version
    table = forecasting.forecast(loaded, wide)
    assert len(table) == 2 * (3 + 1) * 28  # metrics x (tenants + total) x horizons
    assert (table["lower_95"] <= table["lower_80"]).all() and (table["lower_80"] <= table["prediction"]).all()
    assert (table["prediction"] <= table["upper_80"]).all() and (table["upper_80"] <= table["upper_95"]).all()
    assert str(table["forecast_date"].min()) == "2026-11-01" and (table["model_version"] == loaded.version).all()
    assert loaded.model.weights == trained["commerce"].weights  # the registered version forecasts as it was scored


def test_anomalies_match_the_injected_ones(store, trained, wide):
    models = {family: forecasting.load(store, family) for family in ("commerce", "engagement")}
    found = forecasting.find_insights(models, wide)
    dates = pd.date_range(end="2026-10-31", periods=112, freq="D")
    truth = [{"tenant_id": t, "date": dates[d].date().isoformat(), "metric": m} for t, d, m, _ in INJECTED]
    result = scoring.score(found, truth)
    # every injected anomaly found; at most one noise day flagged besides (1,260 series-days tested)
    assert result["recall"] == 1.0 and len(result["false_positives"]) <= 1, result
    spike = found[(found["tenant_id"] == "t001") & (found["metric"] == "orders")
                  & found["insight_type"].str.startswith("anomaly")].iloc[0]
    assert spike["insight_type"] == "anomaly_spike" and spike["severity"] == insights.severity_of(
        spike["score"], spike["value"], spike["expected"])
    assert "Orders for tenant t001 on" in spike["explanation"] and "x the expected" in spike["explanation"]
    assert {"trend_up"} <= set(found["insight_type"])  # the synthetic series grow 60 % in 16 weeks


@pytest.mark.parametrize("uri", ["http://127.0.0.1:9", "readonly"])
def test_an_unusable_store_fails_clearly_and_leaves_the_champion(store, trained, wide, uri, tmp_path, monkeypatch):
    if uri == "readonly":
        uri = store.uri.replace("sqlite:///", "sqlite:///file:") + "?mode=ro&uri=true"
        # MLflow makes the "directory" of a `file:` SQLite URI relative to the working directory
        monkeypatch.chdir(tmp_path)
    before = [v.version for v in store.client.search_model_versions(f"name = '{model_name('engagement')}'")]
    with pytest.raises(TrackingStoreError) as err:
        train_family("engagement", wide, Store(uri, store.artifact_root))
    assert uri in str(err.value)
    after = [v.version for v in store.client.search_model_versions(f"name = '{model_name('engagement')}'")]
    assert sorted(after) == sorted(before)
    assert str(store.champion("engagement").version) == trained["engagement"].version


def test_short_history_is_skipped_with_the_reason_and_no_run(store):
    runs_before = len(MlflowClient(store.uri).search_runs([store.experiment("commerce")]))
    report = train_family("commerce", metrics_daily(days=20), store)
    assert report.version is None and report.reason.startswith("not trained")
    assert "shorter than" in report.reason
    assert len(MlflowClient(store.uri).search_runs([store.experiment("commerce")])) == runs_before
