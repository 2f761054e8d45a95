"""The drift sensor: quiet while the champion forecasts as well as in its backtest, asks for a
retraining run when the last week departs from it. Real warehouse, snapshot and MLflow store."""

from __future__ import annotations

import dagster as dg
import duckdb
import pandas as pd
import pytest

from ml.tracking import Store
from ml.training import train_family
from orchestration.assets import ml as ml_assets
from orchestration.environment import environment_from
from semantic import snapshots
from tests.ml.synthetic import calendar, metrics_daily

SALES = {d.date().isoformat(): "Flash sale" for d in pd.date_range(end="2026-10-31", periods=98, freq="D")[20::9]}


def publish(env, wide, calendar_: pd.DataFrame | None = None) -> None:
    env.data_dir.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(env.layout.warehouse)) as conn:
        conn.execute("create schema if not exists marts")
        conn.register("wide", wide)
        conn.execute("create or replace table marts.metrics_daily as select cast(date_day as date) as date_day, "
                     "* exclude (date_day) from wide")
        if calendar_ is not None:
            conn.register("calendar", calendar_)
            conn.execute("create or replace table marts.events_calendar as select * from calendar")
    snapshots.publish(env.layout.warehouse, env.published_dir)


@pytest.fixture
def env(tmp_path, monkeypatch):
    env = environment_from({"PLATFORM_DATA_DIR": str(tmp_path / "data")})
    monkeypatch.setattr(ml_assets, "current_environment", lambda: env)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return env


def test_no_run_without_drift_and_a_run_after_it(env):
    """A champion (the calendar of sales makes it beat the baselines), then a week three times as busy."""
    from ml import events

    wide = metrics_daily(days=98, events=dict.fromkeys(SALES, 2.0))
    report = train_family("engagement", wide, Store.under(env.data_dir), events.validate(calendar(SALES)),
                          baselines=("AutoETS", "AutoTheta"), windows=4)
    assert report.promoted, report.reason
    publish(env, wide, calendar(SALES))
    quiet = ml_assets.forecast_drift_sensor(dg.build_sensor_context())
    assert isinstance(quiet, dg.SkipReason) and "no champion has drifted" in quiet.skip_message

    shifted = wide.copy()
    last_week = shifted["date_day"] > shifted["date_day"].max() - pd.Timedelta(days=7)
    shifted.loc[last_week, ["active_users", "sessions", "errors"]] *= 3
    publish(env, shifted, calendar(SALES))
    request = ml_assets.forecast_drift_sensor(dg.build_sensor_context())
    assert isinstance(request, dg.RunRequest)
    assert "engagement v1: recent sMAPE" in request.tags["retrain_reason"]


def test_without_a_snapshot_the_sensor_skips_and_says_why(env):
    result = ml_assets.forecast_drift_sensor(dg.build_sensor_context())
    assert isinstance(result, dg.SkipReason) and "no published snapshot" in result.skip_message



def test_training_leaves_the_process_tracking_uri_as_it_was(env, monkeypatch):
    """MLflow exports the tracking URI to the environment; later subprocesses must not inherit ours."""
    import os

    train_family("commerce", metrics_daily(days=40), Store.under(env.data_dir), baselines=("AutoTheta",), windows=2)
    assert "MLFLOW_TRACKING_URI" not in os.environ


def test_a_bad_calendar_row_in_the_warehouse_fails_the_forecasting_assets_naming_it(env):
    """The seed as dbt loaded it, with a tenant the warehouse does not have: the assets fail before
    any model, and say which line, field and value."""
    wide = metrics_daily(days=30)
    publish(env, wide)
    with duckdb.connect(str(env.layout.warehouse)) as conn:
        conn.execute("create or replace table marts.events_calendar as select * from (values "
                     "('2026-10-02', 'launch', 'Launch', 'launch', 't001'), "
                     "('2026-10-09', 'launch_2', 'Second launch', 'launch', 't042')) "
                     "as t(event_date, event_id, event_name, event_kind, tenant_id)")
    with pytest.raises(dg.Failure) as err:
        ml_assets._calendar(env, wide)
    assert "events_calendar.csv) line 3: tenant_id 't042' is not a tenant" in str(err.value.description)
