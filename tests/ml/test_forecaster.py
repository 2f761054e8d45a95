"""The forecaster on its own: any frequency and season, negative values where allowed, and the
events calendar as learned effects (Black Friday teaches Cyber Monday; no later Friday inherits it)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml import events
from ml.forecaster import (
    TRANSFORMS,
    Forecaster,
    Setup,
    booster_column,
    candidate_parts,
    part_columns,
    prepare,
    rolling_origins,
)
from ml.forecasting import future_rows
from ml.series import to_panel
from tests.ml.synthetic import metrics_daily


def panel_of(freq: str, season: int, periods: int, nonneg: bool, level: float) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    ds = pd.date_range("2024-01-01", periods=periods, freq=freq)
    cycle = np.sin(2 * np.pi * np.arange(periods) / season)
    return pd.concat([pd.DataFrame({"unique_id": f"s{i}", "ds": ds, "y": level + 10 * (i + 1) * cycle
                                    + rng.normal(0, 1, periods), "metric": "m", "nonneg": nonneg, "event": ""})
                      for i in range(2)], ignore_index=True)


def fitted(panel: pd.DataFrame, setup: Setup, windows: int = 3,
           models: tuple[str, ...] | None = None) -> tuple[Forecaster, pd.DataFrame]:
    prepared = prepare(panel, setup)
    model = Forecaster(setup).fit(prepared, rolling_origins(prepared, setup, windows, setup.season, models))
    last = panel.groupby("unique_id").tail(1)
    offset = pd.tseries.frequencies.to_offset(setup.freq)
    future = pd.DataFrame([{"unique_id": r.unique_id, "ds": r.ds + k * offset, "horizon": k, "metric": r.metric,
                            "nonneg": r.nonneg, "event": ""} for r in last.itertuples() for k in
                           range(1, setup.horizon + 1)])
    return model, model.predict(prepared, future)


@pytest.mark.parametrize(("freq", "season", "periods", "horizon", "level", "models"), [
    # hourly, around zero: half the values negative (AutoARIMA left out: 4 s more on a 24-hour season)
    ("h", 24, 24 * 16, 24, 0.0, ("AutoETS", "AutoTheta")),
    ("MS", 12, 72, 6, -20.0, None),  # monthly, all negative, every statistical candidate
])
def test_any_frequency_and_negative_values_where_the_metric_allows_them(freq, season, periods, horizon, level, models):
    setup = Setup(freq, season, horizon)
    panel = panel_of(freq, season, periods, nonneg=False, level=level)
    model, out = fitted(panel, setup, models=models)
    assert len(out) == 2 * horizon and out["prediction"].notna().all()
    assert (out["prediction"] < 0).any()  # negatives kept, not clipped
    expected = level + 10 * np.sin(2 * np.pi * np.arange(periods, periods + horizon) / season)
    s0 = out[out["unique_id"] == "s0"].sort_values("ds")
    assert np.mean(np.abs(s0["prediction"].to_numpy() - expected)) < 3.0  # learned the season
    assert (s0["ds"].diff().dropna() == pd.tseries.frequencies.to_offset(freq) * 1).all() if freq == "h" else True
    assert (out["lower_95"] <= out["lower_80"]).all() and (out["lower_80"] <= out["prediction"]).all()
    assert (out["prediction"] <= out["upper_80"]).all() and (out["upper_80"] <= out["upper_95"]).all()
    assert model.calibration  # intervals from its own past forecasts
    assert model.stat_part in candidate_parts() and set(part_columns(model.stat_part)) <= set(out.columns)
    assert model.transform in TRANSFORMS
    if freq == "h":  # the season is a day: the booster also sees the same hour a week before
        assert "lag168" in model.model.ts.features


def test_the_week_is_a_second_season_only_where_the_season_is_a_day():
    """Hourly and half-hourly data with a daily season also get the lag of a week, and need a week of history
    for it; daily, weekly, monthly and quarterly data keep their lags."""
    assert Setup("h", 24, 48).lags == [1, 2, 3, 24, 48, 168] and Setup("h", 24, 48).min_length == 170
    assert Setup("30min", 48, 48).week == 336
    for freq, season in (("h", 1), ("D", 7), ("B", 5), ("W-SAT", 52), ("MS", 12), ("QS", 4)):
        setup = Setup(freq, season, 4)
        assert setup.week == 0 and max(setup.lags) == max(3, 2 * season)


def test_the_booster_is_fitted_on_the_transform_whose_earlier_forecasts_erred_least():
    """Forecasts from two earlier origins where the booster on levels was exact and on differences was not:
    levels is chosen, the booster alone (share 1) then forecasts best, and the transform is kept. From one
    earlier origin nothing is chosen: every model with equal weights."""
    rng = np.random.default_rng(3)
    ds = pd.date_range("2026-01-01", periods=20)
    week, day = pd.Timedelta(days=7), pd.Timedelta(days=1)
    rows = pd.concat([pd.DataFrame({"unique_id": "s0", "ds": ds + k * week, "cutoff": ds[0] + k * week - day,
                                    "horizon": np.arange(1, 21), "y": 100 + rng.normal(0, 5, 20)}) for k in (0, 1)],
                     ignore_index=True)
    z = np.log1p(rows["y"].to_numpy())
    rows = rows.assign(metric="m", nonneg=True, event="", effect=0.0, z=z, scale=0.05, scale_raw=5.0, AutoETS=z + 0.05,
                       AutoTheta=z - 0.05, AutoARIMA=z + 0.1, AutoTheta_raw=rows["y"] + 5)
    rows[booster_column("differences")] = z + 0.2
    rows[booster_column("seasonal_differences")] = z - 0.2
    rows[booster_column("levels")] = z
    model = Forecaster(Setup("D", 7, 20)).choose(rows)
    assert model.transform == "levels" and set(model.shares.values()) == {1.0}
    assert Forecaster.restore(None, model.document()).transform == "levels"
    assert np.allclose(model.finish(rows)["prediction"], rows["y"])  # the levels booster's forecasts, alone
    one_origin = Forecaster(Setup("D", 7, 20)).choose(rows[rows["cutoff"] == rows["cutoff"].min()])
    assert one_origin.transform == "differences" and one_origin.stat_part == "log:AutoETS+AutoTheta+AutoARIMA"
    assert set(one_origin.shares.values()) == {0.25}


def test_a_retail_peak_in_history_lifts_the_next_one_and_no_later_friday():
    """Black Friday 2026 in the history, 2.5 times a normal Friday: Cyber Monday (the same kind of
    event) is forecast with an uplift, and the Fridays after it are not."""
    wide = metrics_daily(days=98, tenants=3, end="2026-11-28", events={"2026-11-27": 2.5})
    calendar = events.validate(events.read_seed(), {"t001", "t002", "t003"})
    panel, _ = to_panel(wide, "commerce", calendar)
    setup = Setup("D", 7, 14)
    prepared = prepare(panel, setup)
    model = Forecaster(setup).fit(prepared)
    out = model.predict(prepared, future_rows(panel, setup, calendar))
    orders = out[out["unique_id"] == "all/orders"].set_index("ds")["prediction"]
    cyber_monday, next_monday = orders[pd.Timestamp("2026-11-30")], orders[pd.Timestamp("2026-12-07")]
    assert cyber_monday > 1.8 * next_monday
    fridays = orders[[pd.Timestamp("2026-12-04"), pd.Timestamp("2026-12-11")]]
    thursdays = orders[[pd.Timestamp("2026-12-03"), pd.Timestamp("2026-12-10")]]
    assert (fridays.to_numpy() < 1.1 * thursdays.to_numpy()).all()  # the weekly shape, no Black Friday echo
    assert model.effects[("orders", "retail_peak")] == pytest.approx(np.log(2.5), abs=0.25)


def test_a_constant_series_forecasts_its_constant():
    ds = pd.date_range("2026-01-01", periods=84, freq="D")
    panel = pd.concat([pd.DataFrame({"unique_id": f"s{i}", "ds": ds, "y": 10.0, "metric": "orders", "nonneg": True,
                                     "event": ""}) for i in range(3)], ignore_index=True)
    _, out = fitted(panel, Setup("D", 7, 14))
    assert np.allclose(out["prediction"], 10.0) and np.allclose(out["lower_95"], 10.0)
    assert np.allclose(out["upper_95"], 10.0)
