"""Features for a direct multi-horizon forecast: one row per (series, origin day, horizon).

Everything is on the log scale relative to the series' own recent level, so one global model
serves tenants of every size and every metric: it learns shapes (the weekly cycle, trend,
holidays, how the level carries over h days) rather than magnitudes. `noise` is the series' own
week-over-week variability; prediction intervals are scaled by it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import cache

import holidays
import numpy as np
import pandas as pd

LONGEST_LAG = 27  # days before the origin that the features read
HISTORY_NEEDED = LONGEST_LAG + 1  # days a series needs before its first origin
MAX_HORIZON = 28
HOLIDAY_COUNTRY = "US"

FEATURES = [
    "horizon", "metric_code", "log_level", "noise",
    *[f"lag_{k}" for k in range(7)], "week_1", "week_2", "week_3",
    *[f"season_{j}" for j in range(4)], "season_mean",
    "smoothed", "smoothed_trend", "target_dow", "target_month", "target_holiday", "origin_holiday",
]
CATEGORICAL = ["metric_code", "target_holiday", "origin_holiday"]
# Every holiday coded, even one the series' history holds once: what anomaly detection's in-sample
# model reads in place of the two holiday features (see `ml.model.Forecaster.fit_explainer`).
EVERY_HOLIDAY = {"target_holiday": "target_holiday_any", "origin_holiday": "origin_holiday_any"}
KEYS = ["tenant_id", "metric", "origin", "horizon", "target_date"]


@dataclass(frozen=True)
class Skipped:
    tenant_id: str
    metric: str
    reason: str


# The longest gap between two occurrences of a holiday (those on a weekday of a month move by up to a week).
HOLIDAY_RECURS = pd.Timedelta(days=371)


def holiday_codes(days: pd.DatetimeIndex) -> np.ndarray:
    """Which holiday each day is (0: none), as a category.

    A category rather than a flag: holidays differ (Labor Day dips, Columbus Day does not), so
    the model can only use a holiday's effect once history holds the same holiday.
    """
    unique = days.unique()
    calendar = holidays.country_holidays(HOLIDAY_COUNTRY, years=sorted({d.year for d in unique}))
    names = [calendar.get(date(d.year, d.month, d.day)) for d in unique]
    codes = pd.Series([_name_code(n) for n in names], index=unique, dtype=float)
    return codes.reindex(days).to_numpy()


def seen_before(codes: np.ndarray, days: pd.DatetimeIndex, since: pd.Timestamp) -> np.ndarray:
    """`codes` with 0 for each holiday whose previous occurrence lies before `since` (the series'
    first day).

    A holiday history holds only once cannot be told from whatever else happened that day, an
    anomaly included. Coded on its single occurrence, the trees learned that one day, which cost
    forecasts a fifth of their accuracy against seasonal naive on the totals.
    """
    return np.where(days - HOLIDAY_RECURS < since, 0.0, codes)


@cache
def _holiday_names() -> dict[str, int]:
    """Every holiday name of the country, numbered from 1 in a stable order."""
    names = holidays.country_holidays(HOLIDAY_COUNTRY, years=range(2000, 2051)).values()
    return {name: i for i, name in enumerate(sorted({n.removesuffix(" (observed)") for n in names}), start=1)}


def _name_code(name: str | None) -> int:
    return 0 if name is None else _holiday_names().get(name.removesuffix(" (observed)"), 0)


def build(series: pd.DataFrame, metrics: tuple[str, ...], horizons: int = MAX_HORIZON,
          last_origin: pd.Timestamp | None = None) -> tuple[pd.DataFrame, list[Skipped]]:
    """Feature rows of every origin with full history, for horizons 1..`horizons`.

    The target (log value at the target date minus the origin's level) is NaN where the target
    date lies beyond the data, which is what a forecast row looks like. Series shorter than
    `HISTORY_NEEDED` days are skipped, with the reason.
    """
    frames, skipped = [], []
    for (tenant_id, metric), rows in series.groupby(["tenant_id", "metric"], sort=True):
        if metric not in metrics:
            continue
        rows = rows.sort_values("date_day")
        if len(rows) < HISTORY_NEEDED + 1:
            skipped.append(Skipped(tenant_id, metric, f"history of {len(rows)} day(s) is shorter than the "
                                   f"{HISTORY_NEEDED + 1} the features need (longest lag {LONGEST_LAG} days)"))
            continue
        frames.append(_series_rows(tenant_id, metric, metrics.index(metric), rows, horizons, last_origin))
    if not frames:
        return pd.DataFrame(columns=[*KEYS, *FEATURES, *EVERY_HOLIDAY.values(), "target", "target_value"]), skipped
    return pd.concat(frames, ignore_index=True), skipped


ALPHA, BETA, GAMMA, DAMPING = 0.2, 0.05, 0.15, 0.95


def holt_winters(v: np.ndarray, season: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Level, trend and weekly season of `v` by additive damped Holt-Winters with fixed weights.

    Fitting ETS at every origin of every series would cost minutes; one pass with fixed weights
    costs microseconds, and the model learns how far to trust it (it extrapolates trend, which
    trees cannot).
    """
    n = len(v)
    level, trend, seasonal = np.zeros(n), np.zeros(n), np.zeros(n)
    level[: season] = v[: season].mean()
    seasonal[: season] = v[: season] - level[0]
    for i in range(season, n):
        level[i] = ALPHA * (v[i] - seasonal[i - season]) + (1 - ALPHA) * (level[i - 1] + DAMPING * trend[i - 1])
        trend[i] = BETA * (level[i] - level[i - 1]) + (1 - BETA) * DAMPING * trend[i - 1]
        seasonal[i] = GAMMA * (v[i] - level[i]) + (1 - GAMMA) * seasonal[i - season]
    return level, trend, seasonal


def _series_rows(tenant_id: str, metric: str, code: int, rows: pd.DataFrame, horizons: int,
                 last_origin: pd.Timestamp | None) -> pd.DataFrame:
    days = pd.DatetimeIndex(rows["date_day"])
    raw = rows["value"].to_numpy(dtype=float)
    v = np.log1p(raw)
    n = len(v)
    end = n - 1 if last_origin is None else min(n - 1, int(days.searchsorted(last_origin, side="right")) - 1)
    origins = np.arange(LONGEST_LAG, end + 1)
    h = np.arange(1, horizons + 1)
    t, hh = np.repeat(origins, len(h)), np.tile(h, len(origins))
    target_index = t + hh

    level = np.convolve(v, np.ones(7) / 7, mode="full")[: n]  # mean of v[i-6..i]
    weekly_diff = np.full(n, np.nan)
    weekly_diff[7:] = v[7:] - v[:-7]
    noise = pd.Series(weekly_diff).rolling(21, min_periods=14).std().to_numpy() / np.sqrt(2)
    noise = np.maximum(np.nan_to_num(noise, nan=0.05), 0.02)

    lv = level[t]
    out = {
        "tenant_id": tenant_id, "metric": metric, "origin": days[t],
        "horizon": hh, "target_date": days[0] + pd.to_timedelta(target_index, unit="D"),
        "metric_code": code, "log_level": lv, "noise": noise[t],
    }
    for k in range(7):
        out[f"lag_{k}"] = v[t - k] - lv
    for w in (1, 2, 3):
        out[f"week_{w}"] = level[t - 7 * w] - lv
    first_season = -(-hh // 7)  # ceil(h / 7): the latest same weekday at or before the origin
    seasons = np.stack([v[target_index - 7 * (first_season + j)] for j in range(4)]) - lv
    for j in range(4):
        out[f"season_{j}"] = seasons[j]
    out["season_mean"] = seasons.mean(axis=0)
    smooth_level, smooth_trend, smooth_season = holt_winters(v)
    damped = np.cumsum(DAMPING ** np.arange(1, horizons + 1))[hh - 1]
    out["smoothed"] = smooth_level[t] + damped * smooth_trend[t] + smooth_season[target_index - 7 * first_season] - lv
    out["smoothed_trend"] = smooth_trend[t]
    frame = pd.DataFrame(out)
    targets = pd.DatetimeIndex(frame["target_date"])
    frame["target_dow"] = targets.day_of_week
    # No day of month: with months of history, month and day together name the date, and the
    # trees would memorize single days (anomalies included) instead of learning patterns.
    frame["target_month"] = targets.month
    origins = pd.DatetimeIndex(frame["origin"])
    frame["target_holiday_any"] = holiday_codes(targets)
    frame["origin_holiday_any"] = holiday_codes(origins)
    frame["target_holiday"] = seen_before(frame["target_holiday_any"].to_numpy(), targets, days[0])
    frame["origin_holiday"] = seen_before(frame["origin_holiday_any"].to_numpy(), origins, days[0])
    inside = target_index < n
    frame["target"] = np.where(inside, v[np.minimum(target_index, n - 1)] - lv, np.nan)
    frame["target_value"] = np.where(inside, raw[np.minimum(target_index, n - 1)], np.nan)
    return frame
