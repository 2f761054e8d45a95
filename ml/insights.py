"""Automated insights on every metric series: anomalies, trends and change points.

Anomalies come from forecast residuals: each day is compared with the model's forecasts of it
from the seven days before (horizons 1 to 7), so one strange day cannot explain itself. A day is
anomalous when its residual, in units of the series' noise, is an outlier among the series' own
residuals (robust z-score: median and MAD, the MAD never below the Poisson noise of an event count),
stays one once the movement every tenant shared that day is taken out, and lies outside the 95 %
interval. Series too short
for the model fall back to a robust z-score of the values themselves. Every insight carries a
one-sentence explanation with the numbers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml.model import Forecaster
from ml.series import TOTAL

ANOMALY_Z = 4.0  # robust z of a residual beyond which a day is anomalous
FALLBACK_Z = 5.0  # the same for the fallback on raw values (no forecast to lean on)
TREND_DAYS = 28
TREND_MIN_CHANGE = 0.10
TREND_MIN_T = 4.0
CHANGE_MIN_SEGMENT = 14
CHANGE_MIN_SHIFT = 0.15
CHANGE_MIN_T = 6.0

COLUMNS = ["insight_type", "metric", "tenant_id", "date_day", "severity", "confidence", "value", "expected",
           "lower", "upper", "score", "method", "explanation"]

# A day's shared movement is taken out only when this many tenants had the metric that day: with
# fewer, their median would be pulled by the anomaly it is meant to reveal.
MIN_PEERS = 5
LABELS = {"revenue": "Revenue", "orders": "Orders", "active_users": "Active users", "sessions": "Sessions",
          "errors": "Errors"}


def _who(tenant_id: str) -> str:
    return "all tenants" if tenant_id == TOTAL else f"tenant {tenant_id}"


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.1f}"


# Daily counts of events, whose noise is at least Poisson: on the root scale of `stabilized`, a
# standard deviation of 1. Revenue sums order values and has no such floor; nor have active
# users, distinct people out of a known base, whose noise is below Poisson (binomial).
COUNTS = frozenset({"orders", "sessions", "errors"})


def robust_z(values: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """(value - median) / MAD, the MAD (scaled to a standard deviation) at least `floor`."""
    median = np.median(values)
    mad = max(1.4826 * np.median(np.abs(values - median)), floor)
    if mad == 0:
        spread = np.std(values)
        return np.zeros_like(values) if spread == 0 else (values - median) / spread
    return (values - median) / mad


def severity_of(z: float, actual: float, expected: float) -> str:
    """How much an anomaly matters: by how far it is from the noise (z) or from the expected value.

    Once a day is an anomaly at all, its size is what a reader acts on: active users halved is
    high though a small tenant's counting noise keeps its z near the threshold.
    """
    ratio = actual / expected if expected > 0 else np.inf
    if abs(z) >= 8 or not 0.5 < ratio < 2.0:
        return "high"
    return "medium" if abs(z) >= 6 or not 2 / 3 < ratio < 1.5 else "low"


def stabilized(values: np.ndarray) -> np.ndarray:
    """Values on a scale where noise is about even: Anscombe's root.

    Counts are Poisson, and revenue is a sum over a Poisson number of orders, whose variance also
    grows with its mean, so the root evens out both. On the log scale a small tenant's day with
    no orders (revenue 0 against 25 expected) looked like a hundredfold drop.
    """
    return 2.0 * np.sqrt(np.maximum(values, 0.0) + 0.375)


def without_shared_movement(z: pd.DataFrame) -> pd.Series:
    """Each tenant's z minus the median z of every tenant on the same metric and day.

    A holiday or an outage moves every tenant at once; that is the calendar, not an anomaly of
    one tenant. The all-tenants total, and days with fewer than `MIN_PEERS` tenants, keep their z.
    """
    tenants = z[z["tenant_id"] != TOTAL]
    grouped = tenants.groupby(["metric", "target_date"])["z"]
    shared = grouped.transform("median").where(grouped.transform("size") >= MIN_PEERS, 0.0)
    return (z["z"] - shared.reindex(z.index).fillna(0.0))


def _noise_floor(metric: str) -> float:
    """The least spread a series' residuals can honestly have, on the root scale.

    The model has seen the days it explains (it is fitted on all of them), and where it learned
    a small series closely its residuals shrink below the counting noise itself; dividing by that
    shrunken spread made ordinary Poisson days look like anomalies (12 orders against 23 expected
    scored -4.2 on a tenant whose residual MAD was 0.69).
    """
    return 1.0 if metric in COUNTS else 0.0


def anomalies(model: Forecaster, rows: pd.DataFrame) -> pd.DataFrame:
    """Anomalous days of every series the model covers, from its week-ahead forecasts of each day."""
    known = rows[(rows["horizon"] <= 7) & rows["target"].notna()]
    if known.empty:
        return pd.DataFrame(columns=COLUMNS)
    forecast = model.explain(known)
    forecast["actual"] = known["target_value"].to_numpy()
    forecast["outside"] = (forecast["actual"] < forecast["lower_95"]) | (forecast["actual"] > forecast["upper_95"])
    per_day = (forecast.groupby(["tenant_id", "metric", "target_date"], as_index=False)
               .agg(actual=("actual", "first"), expected=("prediction", "median"), lower=("lower_95", "median"),
                    upper=("upper_95", "median"), outside=("outside", "mean")))
    per_day = per_day.groupby(["tenant_id", "metric"]).filter(lambda days: len(days) >= 7)
    residual = stabilized(per_day["actual"].to_numpy()) - stabilized(per_day["expected"].to_numpy())
    per_day = per_day.assign(residual=residual)
    per_day["z"] = per_day.groupby(["tenant_id", "metric"])["residual"].transform(
        lambda r: pd.Series(robust_z(r.to_numpy(), floor=_noise_floor(r.name[1])), index=r.index))
    per_day["score"] = without_shared_movement(per_day)
    found = []
    for day in per_day.itertuples(index=False):
        if abs(day.score) < ANOMALY_Z or not (day.actual < day.lower or day.actual > day.upper):
            continue
        found.append(_anomaly(day.tenant_id, day.metric, day.target_date, day.actual, day.expected, day.lower,
                              day.upper, day.score, confidence=day.outside, method="forecast_residual"))
    return pd.DataFrame(found, columns=COLUMNS)


def fallback_anomalies(series: pd.DataFrame) -> pd.DataFrame:
    """Robust z-scores of the (root-scaled) values, for series the model could not cover (too short)."""
    found = []
    for (tenant_id, metric), rows in series.groupby(["tenant_id", "metric"]):
        values = rows["value"].to_numpy(dtype=float)
        if len(values) < 7:
            continue
        z = robust_z(stabilized(values))
        median = float(np.median(values))
        for day, value, score in zip(rows["date_day"], values, z, strict=True):
            if abs(score) >= FALLBACK_Z:
                found.append(_anomaly(tenant_id, metric, day, value, median, np.nan, np.nan, score,
                                      confidence=min(0.99, abs(score) / (2 * FALLBACK_Z)), method="robust_zscore"))
    return pd.DataFrame(found, columns=COLUMNS)


def _anomaly(tenant_id, metric, day, actual, expected, lower, upper, score, confidence, method) -> dict:
    direction = "spike" if score > 0 else "drop"
    against = f"{actual / expected:.2f}x the expected" if expected > 0 else "against an expected"
    band = f" (95 % range {_fmt(lower)} to {_fmt(upper)})" if np.isfinite(lower) else ""
    explanation = (f"{LABELS.get(metric, metric)} for {_who(tenant_id)} on {pd.Timestamp(day).date()} were "
                   f"{_fmt(actual)}, {against} {_fmt(expected)}{band}: a {direction} "
                   f"with robust z-score {score:+.1f}.")
    return {"insight_type": f"anomaly_{direction}", "metric": metric, "tenant_id": tenant_id,
            "date_day": pd.Timestamp(day), "severity": severity_of(score, actual, expected),
            "confidence": round(float(confidence), 3), "value": float(actual), "expected": float(expected),
            "lower": float(lower), "upper": float(upper),
            "score": round(float(score), 2), "method": method, "explanation": explanation}


def trends(series: pd.DataFrame) -> pd.DataFrame:
    """Series whose last four weeks differ clearly from the four before.

    Welch's t on log values with each weekday's mean removed: the weekly cycle is not noise,
    and leaving it in would hide all but the steepest trends.
    """
    found = []
    for (tenant_id, metric), rows in series.groupby(["tenant_id", "metric"]):
        rows = rows.sort_values("date_day").tail(2 * TREND_DAYS)
        values = rows["value"].to_numpy(dtype=float)
        if len(values) < 2 * TREND_DAYS:
            continue
        before, recent = values[:TREND_DAYS], values[TREND_DAYS:]
        if before.mean() <= 0:
            continue
        change = recent.mean() / before.mean() - 1
        logs = np.log1p(values)
        dow = pd.DatetimeIndex(rows["date_day"]).day_of_week.to_numpy()
        weekly = pd.Series(logs).groupby(dow).transform("mean").to_numpy() - logs.mean()
        lb, lr = (logs - weekly)[:TREND_DAYS], (logs - weekly)[TREND_DAYS:]
        spread = np.sqrt(lb.var(ddof=1) / len(lb) + lr.var(ddof=1) / len(lr))
        t = (lr.mean() - lb.mean()) / spread if spread > 0 else 0.0
        if abs(change) < TREND_MIN_CHANGE or abs(t) < TREND_MIN_T:
            continue
        word = "rose" if change > 0 else "fell"
        last_day = rows["date_day"].max()
        found.append({
            "insight_type": "trend_up" if change > 0 else "trend_down", "metric": metric, "tenant_id": tenant_id,
            "date_day": pd.Timestamp(last_day), "severity": "medium" if abs(change) >= 0.25 else "low",
            "confidence": round(float(min(0.99, abs(t) / 10)), 3), "value": float(recent.mean()),
            "expected": float(before.mean()), "lower": np.nan, "upper": np.nan, "score": round(float(t), 2),
            "method": "welch_t_28d",
            "explanation": (f"{LABELS.get(metric, metric)} for {_who(tenant_id)} {word} {abs(change):.1%} over the "
                            f"last {TREND_DAYS} days: {_fmt(recent.mean())} a day against {_fmt(before.mean())} "
                            f"in the {TREND_DAYS} days before (t = {t:+.1f})."),
        })
    return pd.DataFrame(found, columns=COLUMNS)


def change_points(series: pd.DataFrame) -> pd.DataFrame:
    """The strongest lasting level shift of each series beyond its linear trend and weekly cycle.

    The log values lose their weekday means and linear trend; the split that best separates the
    remainder into two segments of at least two weeks is a change point when the shift is large
    (>= 15 %) and clear (t >= 6). A single anomalous day cannot make a two-week segment.
    """
    found = []
    for (tenant_id, metric), rows in series.groupby(["tenant_id", "metric"]):
        rows = rows.sort_values("date_day")
        values = np.log1p(rows["value"].to_numpy(dtype=float))
        n = len(values)
        if n < 2 * CHANGE_MIN_SEGMENT or np.ptp(values) == 0:
            continue
        dow = pd.DatetimeIndex(rows["date_day"]).day_of_week.to_numpy()
        rest = values - pd.Series(values).groupby(dow).transform("mean").to_numpy()
        x = np.arange(n)
        rest = rest - np.polyval(np.polyfit(x, rest, 1), x)
        best = None
        for split in range(CHANGE_MIN_SEGMENT, n - CHANGE_MIN_SEGMENT + 1):
            a, b = rest[:split], rest[split:]
            spread = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
            t = (b.mean() - a.mean()) / spread if spread > 0 else 0.0
            if best is None or abs(t) > abs(best[1]):
                best = (split, t, b.mean() - a.mean())
        split, t, shift = best
        if abs(t) < CHANGE_MIN_T or abs(np.expm1(shift)) < CHANGE_MIN_SHIFT:
            continue
        day = rows["date_day"].iloc[split]
        word = "up" if shift > 0 else "down"
        found.append({
            "insight_type": "change_point", "metric": metric, "tenant_id": tenant_id, "date_day": pd.Timestamp(day),
            "severity": "medium", "confidence": round(float(min(0.99, abs(t) / 12)), 3),
            "value": float(np.expm1(shift)),
            "expected": 0.0, "lower": np.nan, "upper": np.nan, "score": round(float(t), 2), "method": "mean_shift",
            "explanation": (f"{LABELS.get(metric, metric)} for {_who(tenant_id)} shifted {word} by "
                            f"{abs(np.expm1(shift)):.1%} from {pd.Timestamp(day).date()} onwards, beyond the trend and "
                            f"weekly cycle (t = {t:+.1f})."),
        })
    return pd.DataFrame(found, columns=COLUMNS)
