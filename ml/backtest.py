"""Rolling-origin backtests: the shipped forecast and the statistical baselines, from the same origins.

The forecast (`ml.forecaster`) is fitted at `windows` origins `step` apart; the last `outer` of them
are scored. At each scored origin the statistical part, the booster's share and the intervals come only from forecasts
of earlier origins whose outcomes were known by then, so nothing scored was seen when choosing.

The baselines are statsforecast's AutoETS, AutoTheta and AutoARIMA (and seasonal naive, the MASE
reference) as a user would run them: on the series' own values, no calendar, their own intervals,
cross-validated from the very same origins.

Scores per series: MAE relative to seasonal naive's (MASE's ratio, the scale cancels), coverage of
the 80 % and 95 % intervals, and the interval score (Gneiting and Raftery's, for the 95 % interval,
divided by the series' mean seasonal difference). Groups summarise them with the geometric mean of
the ratios (one series' blow-up cannot dominate) and the plain mean of the others.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from statsforecast import StatsForecast
from statsforecast.models import SeasonalNaive

from ml.forecaster import (
    BOUNDS,
    KEYS,
    LGBM,
    TRANSFORMS,
    Forecaster,
    Prepared,
    Setup,
    booster_column,
    candidate_columns,
    from_model_scale,
    rolling_origins,
    scale_of,
    statistical_model,
)

FORECAST = "forecast"
BASELINES = ("AutoETS", "AutoTheta", "AutoARIMA")
NAIVE = "SeasonalNaive"
LEVELS = (80, 95)


@dataclass
class Backtest:
    predictions: pd.DataFrame  # one row per scored origin, series and horizon: actual and every model
    skipped: list[str]
    past: pd.DataFrame  # the forecast's parts from every origin (what the final model calibrates on)

    @property
    def folds(self) -> int:
        return int(self.predictions["cutoff"].nunique()) if not self.predictions.empty else 0


def baselines(panel: pd.DataFrame, setup: Setup, windows: int, step: int,
              models: tuple[str, ...] = BASELINES) -> pd.DataFrame:
    """The statistical baselines' rolling-origin forecasts and intervals on the series' own values."""
    chosen = [statistical_model(m, setup, panel) for m in models] + [SeasonalNaive(season_length=setup.season)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = StatsForecast(models=chosen, freq=setup.freq, n_jobs=1).cross_validation(
            df=panel[["unique_id", "ds", "y"]], h=setup.horizon, n_windows=windows, step_size=step,
            level=list(LEVELS))
    return out.drop(columns="y")


def run(prepared: Prepared, setup: Setup, windows: int, outer: int, step: int,
        models: tuple[str, ...] = BASELINES) -> Backtest:
    """Score the forecast and the baselines on the last `outer` of `windows` origins; the forecast's
    statistical candidates are those of `models` too (the tests leave AutoARIMA out, for speed)."""
    past = rolling_origins(prepared, setup, windows, step, models)
    # series may end on different days: origins are numbered within each series
    past["window"] = past.groupby("unique_id")["cutoff"].rank(method="dense").astype(int)
    scored, skipped = [], []
    for window in range(windows - outer + 1, windows + 1):
        ahead = past[past["window"] == window]
        cutoff_of = ahead.groupby("unique_id")["cutoff"].first()
        known = past[(past["window"] < window) & (past["ds"] <= past["unique_id"].map(cutoff_of))]
        if known.empty or ahead.empty:
            skipped.append(f"origin {window} of {windows}: no earlier forecast to calibrate on")
            continue
        scored.append(Forecaster(setup).choose(known).finish(ahead))
    if not scored:
        return Backtest(pd.DataFrame(), skipped, past)
    ours = pd.concat(scored, ignore_index=True)
    ours = ours.rename(columns={"prediction": FORECAST, **{b: f"{FORECAST}-{b}" for b in BOUNDS}})
    # the parts of the forecast, in the series' units (the booster alone is scored beside it)
    nonneg = ours["nonneg"].to_numpy(bool)
    ours[LGBM] = from_model_scale(ours[LGBM].to_numpy(float) + ours["effect"].to_numpy(float), nonneg)
    others = [booster_column(t) for t in TRANSFORMS if booster_column(t) != LGBM]
    ours = ours.drop(columns=[c for c in [*candidate_columns(), *others] if c in ours])
    raw = prepared.frame[["unique_id", "ds", "y"]]
    base = baselines(raw, setup, outer, step, models)
    merged = ours.merge(base, on=[*KEYS, "cutoff"], how="inner", suffixes=("", "_raw"))
    return Backtest(merged, skipped, past)


def interval_score(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray, alpha: float) -> np.ndarray:
    """Gneiting and Raftery's interval score of a (1 - alpha) interval: width plus 2/alpha times the miss."""
    return (upper - lower) + 2 / alpha * (np.maximum(lower - actual, 0) + np.maximum(actual - upper, 0))


def series_scores(predictions: pd.DataFrame, raw: pd.DataFrame, season: int,
                  models: tuple[str, ...] = (FORECAST, *BASELINES), horizons: pd.Series | None = None) -> pd.DataFrame:
    """Per series and model: MAE relative to seasonal naive's, 80 %/95 % coverage, scaled interval
    score; over each series' own horizon where `horizons` (by unique_id) says it is shorter."""
    rows = predictions
    if horizons is not None:
        rows = rows[rows["horizon"] <= rows["unique_id"].map(horizons).fillna(rows["horizon"].max())]
    scales = raw.groupby("unique_id")["y"].apply(lambda y: scale_of(y.to_numpy(float), season))
    out = []
    for uid, of_series in rows.groupby("unique_id"):
        actual = of_series["y"].to_numpy(float)
        naive = np.mean(np.abs(actual - of_series[NAIVE].to_numpy(float)))
        for model in models:
            if model not in of_series:
                continue
            predicted = of_series[model].to_numpy(float)
            mae = np.mean(np.abs(actual - predicted))
            both = np.abs(actual) + np.abs(predicted)
            row = {"unique_id": uid, "model": model, "mae": mae,
                   "relative_mae": mae / naive if naive > 0 else (1.0 if mae == 0 else np.inf),
                   "smape": float(np.mean(np.where(both > 0, 2 * np.abs(actual - predicted) / np.maximum(both, 1e-12),
                                                   0.0)))}
            for level in LEVELS:
                lo, hi = _bounds(of_series, model, level)
                if lo is not None:
                    row[f"coverage_{level}"] = float(np.mean((actual >= lo) & (actual <= hi)))
                    if level == 95:
                        row["interval_score"] = float(np.mean(interval_score(actual, lo, hi, 0.05)) / scales[uid])
            out.append(row)
    return pd.DataFrame(out)


def _bounds(rows: pd.DataFrame, model: str, level: int):
    if model == FORECAST:
        return rows[f"{FORECAST}-lower_{level}"].to_numpy(float), rows[f"{FORECAST}-upper_{level}"].to_numpy(float)
    if f"{model}-lo-{level}" in rows:
        return rows[f"{model}-lo-{level}"].to_numpy(float), rows[f"{model}-hi-{level}"].to_numpy(float)
    return None, None


def summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Per model: geometric mean of the relative MAE (MASE relative to seasonal naive), mean
    coverage and interval score, and on how many series it is the best of the models."""
    ratio = scores.assign(log=np.log(np.clip(scores["relative_mae"].astype(float), 1e-6, 1e6)))
    out = ratio.groupby("model").agg(relative_mase=("log", lambda v: float(np.exp(v.mean()))),
                                     series=("unique_id", "nunique"))
    for column in ("smape", "coverage_80", "coverage_95", "interval_score"):
        if column in scores:
            out[column] = scores.groupby("model")[column].mean()
    return out
