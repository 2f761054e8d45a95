"""The baselines a forecast has to beat, on the same folds: seasonal naive and ETS.

ETS is also half of the shipped forecast (see `ml.model`), so its forecasts from a cutoff are
computed once per cutoff and shared by every fold, calibration and baseline that asks.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from statsmodels.tsa.holtwinters import ExponentialSmoothing

KEYS = ["tenant_id", "metric", "horizon", "target_date"]


def seasonal_naive(history: np.ndarray, horizons: np.ndarray, season: int = 7) -> np.ndarray:
    """The value of the same weekday in the last observed week."""
    n = len(history)
    back = season * -(-horizons // season)  # the latest same weekday at or before the origin
    return history[n - 1 + horizons - back]


def ets(history: np.ndarray, horizons: np.ndarray, season: int = 7) -> np.ndarray:
    """Holt-Winters (additive damped trend, additive weekly season) fitted on log1p values."""
    if len(history) < 2 * season + 2 or np.ptp(history) == 0:
        return np.full(len(horizons), float(history[-1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ExponentialSmoothing(np.log1p(history), trend="add", damped_trend=True, seasonal="add",
                                   seasonal_periods=season, initialization_method="estimated").fit()
        path = fit.forecast(int(horizons.max()))
    return np.maximum(np.expm1(np.asarray(path)[horizons - 1]), 0.0)


def forecasts(series: pd.DataFrame, cutoff: pd.Timestamp, horizons: int) -> pd.DataFrame:
    """Both baselines for every series from `cutoff`, horizons 1..`horizons` (keys as the model's),
    with each series' MASE scale at the cutoff."""
    h = np.arange(1, horizons + 1)
    parts = []
    for (tenant_id, metric), rows in series[series["date_day"] <= cutoff].groupby(["tenant_id", "metric"]):
        history = rows.sort_values("date_day")["value"].to_numpy(dtype=float)
        if len(history) < 7:
            continue
        parts.append(pd.DataFrame({
            "tenant_id": tenant_id, "metric": metric, "horizon": h,
            "target_date": cutoff + pd.to_timedelta(h, unit="D"),
            "seasonal_naive": seasonal_naive(history, h), "ets": ets(history, h),
        }))
    if not parts:
        return pd.DataFrame(columns=[*KEYS, "seasonal_naive", "ets", "scale"])
    return pd.concat(parts, ignore_index=True).merge(mase_scales(series, cutoff), on=["tenant_id", "metric"],
                                                     how="left")


def mase_scales(series: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    """Mean absolute weekly difference of each series' history up to `cutoff` (MASE's denominator)."""
    known = series[series["date_day"] <= cutoff].sort_values("date_day")
    diffs = known.groupby(["tenant_id", "metric"])["value"].diff(7).abs()
    scale = diffs.groupby([known["tenant_id"], known["metric"]]).mean().rename("scale").reset_index()
    scale["scale"] = scale["scale"].where(scale["scale"] > 0, np.nan)
    return scale


class Baselines:
    """The baselines of one set of series from any cutoff, each cutoff computed once.

    A forecast from a cutoff reads only days up to it, so the backtest's folds, the calibration
    cutoffs inside each fold and the final fit can share them: fold k's inner cutoffs are the
    folds after it. Fitting ETS costs about 80 ms a series; without sharing, training would fit
    it three times as often.
    """

    def __init__(self, series: pd.DataFrame, horizons: int):
        self.series, self.horizons = series, horizons
        self._at: dict[pd.Timestamp, pd.DataFrame] = {}

    def at(self, cutoff: pd.Timestamp) -> pd.DataFrame:
        cutoff = pd.Timestamp(cutoff)
        if cutoff not in self._at:
            self._at[cutoff] = forecasts(self.series, cutoff, self.horizons)
        return self._at[cutoff]

    def attach(self, rows: pd.DataFrame) -> pd.DataFrame:
        """`rows` (one or more origins) with each row's baselines and scale, in the same order."""
        if rows.empty:
            return rows.assign(seasonal_naive=np.nan, ets=np.nan, scale=np.nan)
        found = pd.concat([self.at(origin) for origin in rows["origin"].unique()], ignore_index=True)
        merged = rows.merge(found, on=KEYS, how="left", validate="many_to_one")
        merged.index = rows.index
        return merged
