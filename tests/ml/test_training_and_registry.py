"""Training into a real MLflow store (SQLite, local artifacts): runs, registry, the champion rule
against the best statistical baseline, forecasts from the registered version, and a store that
cannot be written. AutoARIMA is left out of these baselines for time; `make bench-ml` runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from ml import events, forecasting
from ml.tracking import Store, TrackingStoreError, model_name
from ml.training import train_family
from orchestration.environment import environment_from
from tests.conftest import REPO_ROOT
from tests.ml.synthetic import calendar, metrics_daily

BASELINES = ("AutoETS", "AutoTheta")
# a promotion every ten days or so, twice a normal day: the calendar knows it, the baselines cannot
SALES = {d.date().isoformat(): "Flash sale" for d in pd.date_range(end="2026-10-31", periods=98, freq="D")[20::9]}


def train(family, wide, store, calendar_=None):
    return train_family(family, wide, store, calendar_, baselines=BASELINES, windows=4)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    root = tmp_path_factory.mktemp("mlflow")
    return Store(f"sqlite:///{root / 'mlflow.db'}", root / "artifacts")


@pytest.fixture(scope="module")
def sales() -> pd.DataFrame:
    return events.validate(calendar(SALES), {"t001", "t002", "t003"})


@pytest.fixture(scope="module")
def wide() -> pd.DataFrame:
    return metrics_daily(days=98, events=dict.fromkeys(SALES, 2.0))


@pytest.fixture(scope="module")
def trained(store, wide, sales):
    return train("commerce", wide, store, sales)


def test_a_run_logs_folds_metrics_artifacts_and_a_registered_model(store, trained):
    assert trained.folds >= 3 and trained.version == "1"
    run = store.client.get_run(trained.run_id)
    assert run.data.params["folds"] == str(trained.folds) and run.data.params["freq"] == "D"
    for key in ("backtest.forecast.relative_mase", "backtest.AutoETS.relative_mase", "backtest.AutoTheta.smape",
                "backtest.forecast.coverage_95", "backtest.forecast.interval_score", "backtest.forecast.smape"):
        assert np.isfinite(run.data.metrics[key]), key
    history = store.client.get_metric_history(trained.run_id, "fold.forecast.relative_mase")
    assert sorted(m.step for m in history) == list(range(1, trained.folds + 1))
    assert {a.path for a in store.client.list_artifacts(trained.run_id, "plots")} == {
        "plots/backtest.png", "plots/feature_importance.png"}
    assert {a.path for a in store.client.list_artifacts(trained.run_id)} >= {
        "backtest_predictions.parquet", "forecaster.json"}
    version = store.client.get_model_version(model_name("commerce"), "1")
    assert version.run_id == trained.run_id
    model, document = store.load(version)  # the mlforecast model, through its MLflow flavor
    assert type(model).__name__ == "MLForecast" and document["setup"] == {"freq": "D", "season": 7, "horizon": 28}


def test_the_store_moves_with_its_artifacts_and_has_no_empty_default_experiment(store, trained, tmp_path):
    """Moving the store's folder (as moving the project's data/ does) keeps every artifact reachable."""
    root = store.artifact_root.parent
    experiments = store.client.search_experiments()
    assert sorted(e.name for e in experiments) == ["forecast-commerce"]
    assert store.client.get_experiment("0").lifecycle_stage == "deleted"
    run = store.client.get_run(trained.run_id)
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
        model, document = there.load(there.client.get_model_version(model_name("commerce"), "1"))
        assert type(model).__name__ == "MLForecast" and document["setup"]["freq"] == "D"
        assert {a.path for a in there.client.list_artifacts(run.info.run_id, "plots")} == {
            "plots/backtest.png", "plots/feature_importance.png"}
    finally:
        away.rename(root / "artifacts")


def test_a_version_that_beats_the_best_statistical_baseline_becomes_champion(store, trained):
    assert trained.promoted, trained.reason
    assert trained.model_mase < min(trained.baseline_mase.values())
    assert str(store.champion("commerce").version) == trained.version
    assert store.client.get_run(trained.run_id).data.tags["promotion"].startswith(
        "promoted: backtest MASE relative to seasonal naive")


def test_a_version_that_does_not_beat_the_best_baseline_leaves_the_champion(store, trained):
    """Noise-free weekly series: the statistical models (and seasonal naive) are exact, and the new
    version cannot beat them."""
    report = train("commerce", metrics_daily(days=98, periodic=True), store)
    assert not report.promoted and "does not beat the best statistical baseline" in report.reason, report.reason
    assert report.version == "2" and str(store.champion("commerce").version) == trained.version


def test_forecasts_have_every_series_and_horizon_with_ordered_intervals(store, trained, wide, sales):
    loaded = forecasting.load(store, "commerce")
    assert loaded.champion and loaded.version == trained.version
    table = forecasting.forecast(loaded, wide, sales)
    assert len(table) == 2 * (3 + 1) * 28  # metrics x (tenants + total) x horizons
    assert (table["lower_95"] <= table["lower_80"]).all() and (table["lower_80"] <= table["prediction"]).all()
    assert (table["prediction"] <= table["upper_80"]).all() and (table["upper_80"] <= table["upper_95"]).all()
    assert str(table["forecast_date"].min()) == "2026-11-01" and (table["model_version"] == loaded.version).all()
    assert loaded.model.shares == trained.shares  # the registered version forecasts as it was scored
    assert loaded.model.stat_part == trained.stat_part
    assert loaded.model.transform == trained.booster_transform  # the booster it was scored with


@pytest.mark.parametrize("uri", ["http://127.0.0.1:9", "readonly"])
def test_an_unusable_store_fails_clearly_and_leaves_the_champion(store, trained, wide, uri, tmp_path, monkeypatch):
    if uri == "readonly":
        uri = store.uri.replace("sqlite:///", "sqlite:///file:") + "?mode=ro&uri=true"
        # MLflow makes the "directory" of a `file:` SQLite URI relative to the working directory
        monkeypatch.chdir(tmp_path)
    before = [v.version for v in store.client.search_model_versions(f"name = '{model_name('commerce')}'")]
    with pytest.raises(TrackingStoreError) as err:
        train("commerce", wide, Store(uri, store.artifact_root))
    assert uri in str(err.value)
    after = [v.version for v in store.client.search_model_versions(f"name = '{model_name('commerce')}'")]
    assert sorted(after) == sorted(before) and str(store.champion("commerce").version) == trained.version


def test_short_history_is_skipped_with_the_reason_and_no_run(store):
    runs_before = len(MlflowClient(store.uri).search_runs([store.experiment("engagement")]))
    report = train("engagement", metrics_daily(days=20), store)
    assert report.version is None and report.reason.startswith("not trained") and "shorter than" in report.reason
    assert len(MlflowClient(store.uri).search_runs([store.experiment("engagement")])) == runs_before


def test_importing_the_tracking_module_leaves_the_environment_alone():
    """No import-time side effect (MLflow itself is imported first: its telemetry id is its own); MLflow's
    settings are set where a client of a server is made."""
    code = ("import os, mlflow; before = dict(os.environ); import ml.tracking; "
            "changed = set(os.environ.items()) ^ set(before.items()); assert not changed, changed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_the_store_is_the_one_the_environment_names(tmp_path, monkeypatch):
    """MLFLOW_TRACKING_URI is read by the pipeline's environment, once, and passed to the store; a client of a
    tracking server fails fast unless the user set MLflow's own HTTP settings."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://not-read-here.invalid")
    assert Store.under(tmp_path).uri == f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    env = environment_from({"PLATFORM_DATA_DIR": str(tmp_path), "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"})
    server = Store.under(env.data_dir, env.mlflow_tracking_uri)
    assert server.uri == "http://127.0.0.1:9"
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "7")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES")  # unset for the test, and unset again after it
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    server.client  # noqa: B018  (making the client is what sets them)
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0" and os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "3"
