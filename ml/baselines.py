"""The baselines a forecast has to beat, on the same folds: seasonal naive and ETS."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from statsmodels.tsa.holtwinters import ExponentialSmoothing


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
    """Both baselines for every series from `cutoff`, horizons 1..`horizons` (keys as the model's)."""
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
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
