"""Automated insights on every metric series: anomalies, expected events, trends and change points.

Anomalies come from `ml.detection`: each day judged out of sample against a forecast made from
the days before it, in units of the series' own noise, less the movement every tenant shared that
day. A day of the events calendar is never an anomaly: when it moved the metric beyond the noise,
the insight is an `expected_event` that names the event. Series too short for a model fall back
to a robust z-score of the values themselves. Every insight carries a one-sentence explanation with
the numbers (and the event, on an event day), written for a business reader: the tenant's name, the
metric's label, money in dollars, and no statistic (the score and method are columns of their own).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ml import detection
from ml.series import TOTAL

ANOMALY_Z = detection.THRESHOLD  # |score| from which a day is anomalous
FALLBACK_Z = 5.0  # the same for the fallback on raw values (no forecast to lean on)
TREND_DAYS = 28
TREND_MIN_CHANGE = 0.10
TREND_MIN_T = 4.0
CHANGE_MIN_SEGMENT = 14
CHANGE_MIN_SHIFT = 0.15
CHANGE_MIN_T = 6.0

COLUMNS = ["insight_type", "metric", "tenant_id", "date_day", "severity", "confidence", "value", "expected",
           "lower", "upper", "score", "method", "explanation", "verdict"]

LABELS = {"revenue": "Revenue", "orders": "Orders", "active_users": "Active users", "sessions": "Sessions",
          "errors": "Errors"}


PLURAL = {"orders", "active_users", "sessions", "errors"}  # "Orders were", "Revenue was"
MONEY = {"revenue"}
NO_NAMES: Mapping[str, str] = {}


def _who(tenant_id: str, names: Mapping[str, str]) -> str:
    """All tenants, a tenant by its name (`marts.dim_tenants`), or by its id when it has none."""
    return "all tenants" if tenant_id == TOTAL else names.get(tenant_id) or f"tenant {tenant_id}"


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.1f}"


def _amount(metric: str, x: float) -> str:
    return f"${x:,.0f}" if metric in MONEY and abs(x) >= 100 else f"${x:,.2f}" if metric in MONEY else _fmt(x)


def _subject(metric: str, tenant_id: str, names: Mapping[str, str]) -> str:
    return f"{LABELS.get(metric, metric)} for {_who(tenant_id, names)}"


def _was(metric: str) -> str:
    return "were" if metric in PLURAL else "was"


def _against(metric: str, actual: float, expected: float, word: str) -> str:
    """How far a value is from what was expected, in words: 35 % above, 2.4 times, 60 % below."""
    if expected <= 0:
        return f"against {word} {_amount(metric, expected)}"
    ratio = actual / expected
    if ratio >= 2:
        return f"{ratio:.1f} times {word} {_amount(metric, expected)}"
    side = "above" if ratio >= 1 else "below"
    return f"{abs(ratio - 1):.0%} {side} {word} {_amount(metric, expected)}"


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


def anomalies(judged: pd.DataFrame, names: Mapping[str, str] = NO_NAMES) -> pd.DataFrame:
    """Anomalies, expected events and withdrawn anomalies among the days `detection.judge` judged
    (`names`: tenant names), each with its verdict.

    A day's verdict is provisional until the two weeks after it are known, then confirmed (see
    `ml.detection`): a provisional anomaly is judged against the days before it only; a confirmed
    one against the same weekday of the weeks before and after it. A day flagged as of the day
    that its confirmed verdict no longer holds anomalous (the first days of a new schedule, which
    the weeks after it follow) is published as a `withdrawn_anomaly` insight, so a reader who saw
    the provisional one learns why it went."""
    found = []
    if judged.empty:
        return pd.DataFrame(columns=COLUMNS)
    judged = judged.assign(current=detection.anomalous(judged), withdrawn=detection.withdrawn(judged))
    confirmed = judged["verdict"] == detection.CONFIRMED
    for name in ("score", "expected", "lower", "upper"):  # the figures of the verdict that stands
        judged[f"{name}_now"] = judged[f"{name}_confirmed"].where(confirmed, judged[name])
    threshold = np.where(confirmed, detection.CONFIRMED_THRESHOLD, ANOMALY_Z)
    events_ = (judged["event"] != "") & (judged["score_now"].abs() >= threshold) & (confirmed | ~judged["shift"])
    for day in judged[judged["current"] | judged["withdrawn"] | events_].itertuples(index=False):
        bar = detection.CONFIRMED_THRESHOLD if day.verdict == detection.CONFIRMED else ANOMALY_Z
        confidence = min(0.99, abs(day.score_now) / (2 * bar))
        if day.event:
            found.append(_expected_event(day.tenant_id, day.metric, day.ds, day.y, day.expected_now, day.lower_now,
                                         day.upper_now, day.score_now, confidence, day.event_name, names))
        elif day.withdrawn:
            found.append(_withdrawn(day, names))
        else:
            found.append(_anomaly(day.tenant_id, day.metric, day.ds, day.y, day.expected_now, day.lower_now,
                                  day.upper_now, day.score_now, confidence=confidence, method="forecast_residual",
                                  names=names))
        found[-1]["verdict"] = day.verdict
        if day.verdict == detection.PROVISIONAL and not day.event:
            found[-1]["explanation"] += " Provisional: the days after it will confirm or withdraw it."
    return _frame(found)


def _frame(found: list[dict]) -> pd.DataFrame:
    """Insights as a frame of `COLUMNS`; `verdict` (a day's: provisional or confirmed) is empty for
    trends and change points, which are not a day's verdict (`marts.fct_insights` has it null)."""
    return pd.DataFrame(found, columns=COLUMNS).fillna({"verdict": ""})


def _withdrawn(day, names: Mapping[str, str]) -> dict:
    """A provisional anomaly its confirmed verdict withdrew: what it was, and what the weeks after showed."""
    direction = "rise" if day.score > 0 else "drop"
    explanation = (f"{_subject(day.metric, day.tenant_id, names)} on {pd.Timestamp(day.ds).date()} {_was(day.metric)} "
                   f"{_amount(day.metric, day.y)}: against the days before it, an unusual {direction} "
                   f"({_against(day.metric, day.y, day.expected, 'the expected')}); the weeks after it show it was "
                   f"in line with the same weekday around it ({_amount(day.metric, day.expected_confirmed)}), so it "
                   "is no longer an anomaly.")
    return {"insight_type": "withdrawn_anomaly", "metric": day.metric, "tenant_id": day.tenant_id,
            "date_day": pd.Timestamp(day.ds), "severity": "low", "confidence": 0.0, "value": float(day.y),
            "expected": float(day.expected_confirmed), "lower": float(day.lower_confirmed),
            "upper": float(day.upper_confirmed), "score": round(float(day.score_confirmed), 2),
            "method": "forecast_residual", "explanation": explanation}


def fallback_anomalies(series: pd.DataFrame, names: Mapping[str, str] = NO_NAMES) -> pd.DataFrame:
    """Robust z-scores of the (root-scaled) values, for series the model could not cover (too short);
    calendar event days are left out, as expected."""
    found = []
    for (tenant_id, metric), rows in series.groupby(["tenant_id", "metric"]):
        values = rows["y"].to_numpy(dtype=float)
        if len(values) < 7:
            continue
        z = robust_z(detection.stabilized(values, rows["nonneg"].to_numpy(bool)))
        median = float(np.median(values))
        for day, value, score, event in zip(rows["ds"], values, z, rows["event"], strict=True):
            if abs(score) >= FALLBACK_Z and not event:
                found.append(_anomaly(tenant_id, metric, day, value, median, np.nan, np.nan, score,
                                      confidence=min(0.99, abs(score) / (2 * FALLBACK_Z)), method="robust_zscore",
                                      names=names) | {"verdict": detection.PROVISIONAL})  # until a model judges it
    return _frame(found)


def _anomaly(tenant_id, metric, day, actual, expected, lower, upper, score, confidence, method,
             names: Mapping[str, str] = NO_NAMES) -> dict:
    direction = "spike" if score > 0 else "drop"
    # the fallback has no forecast: its reference is the series' typical (median) value
    word = "the typical" if method == "robust_zscore" else "the expected"
    band = (f" (expected range {_amount(metric, lower)} to {_amount(metric, upper)})"
            if np.isfinite(lower) else "")
    explanation = (f"{_subject(metric, tenant_id, names)} on {pd.Timestamp(day).date()} {_was(metric)} "
                   f"{_amount(metric, actual)}, {_against(metric, actual, expected, word)}{band}: an unusual "
                   f"{'rise' if score > 0 else 'drop'}, beyond the day-to-day ups and downs of this series.")
    return {"insight_type": f"anomaly_{direction}", "metric": metric, "tenant_id": tenant_id,
            "date_day": pd.Timestamp(day), "severity": severity_of(score, actual, expected),
            "confidence": round(float(confidence), 3), "value": float(actual), "expected": float(expected),
            "lower": float(lower), "upper": float(upper),
            "score": round(float(score), 2), "method": method, "explanation": explanation}


def _expected_event(tenant_id, metric, day, actual, expected, lower, upper, score, confidence, event,
                    names: Mapping[str, str] = NO_NAMES) -> dict:
    return {"insight_type": "expected_event", "metric": metric, "tenant_id": tenant_id,
            "date_day": pd.Timestamp(day), "severity": "low", "confidence": round(float(confidence), 3),
            "value": float(actual), "expected": float(expected), "lower": float(lower), "upper": float(upper),
            "score": round(float(score), 2), "method": "events_calendar",
            "explanation": (f"{_subject(metric, tenant_id, names)} on {pd.Timestamp(day).date()} {_was(metric)} "
                            f"{_amount(metric, actual)}, {_against(metric, actual, expected, 'the usual')}: "
                            f"{event}, a day of the events calendar, so expected and not an anomaly.")}


def on_event_days(found: pd.DataFrame, series: pd.DataFrame) -> pd.DataFrame:
    """Trends and change points dated on a calendar event say which event it was."""
    names = series.drop_duplicates(["tenant_id", "ds"]).set_index(["tenant_id", "ds"])["event_name"]
    if found.empty or names.empty:
        return found
    keys = list(zip(found["tenant_id"], pd.to_datetime(found["date_day"]), strict=True))
    event = [names.get(k, "") for k in keys]
    found = found.copy()
    found["explanation"] = [f"{text} That day was {name} (events calendar)." if name else text
                            for text, name in zip(found["explanation"], event, strict=True)]
    return found


def trends(series: pd.DataFrame, names: Mapping[str, str] = NO_NAMES) -> pd.DataFrame:
    """Series whose last four weeks differ clearly from the four before.

    Welch's t on log values with each weekday's mean removed: the weekly cycle is not noise,
    and leaving it in would hide all but the steepest trends.
    """
    found = []
    for (tenant_id, metric), rows in series.groupby(["tenant_id", "metric"]):
        rows = rows.sort_values("ds").tail(2 * TREND_DAYS)
        values = rows["y"].to_numpy(dtype=float)
        if len(values) < 2 * TREND_DAYS:
            continue
        before, recent = values[:TREND_DAYS], values[TREND_DAYS:]
        if before.mean() <= 0:
            continue
        change = recent.mean() / before.mean() - 1
        logs = np.log1p(values)
        dow = pd.DatetimeIndex(rows["ds"]).day_of_week.to_numpy()
        weekly = pd.Series(logs).groupby(dow).transform("mean").to_numpy() - logs.mean()
        lb, lr = (logs - weekly)[:TREND_DAYS], (logs - weekly)[TREND_DAYS:]
        spread = np.sqrt(lb.var(ddof=1) / len(lb) + lr.var(ddof=1) / len(lr))
        t = (lr.mean() - lb.mean()) / spread if spread > 0 else 0.0
        if abs(change) < TREND_MIN_CHANGE or abs(t) < TREND_MIN_T:
            continue
        word = "rose" if change > 0 else "fell"
        last_day = rows["ds"].max()
        found.append({
            "insight_type": "trend_up" if change > 0 else "trend_down", "metric": metric, "tenant_id": tenant_id,
            "date_day": pd.Timestamp(last_day), "severity": "medium" if abs(change) >= 0.25 else "low",
            "confidence": round(float(min(0.99, abs(t) / 10)), 3), "value": float(recent.mean()),
            "expected": float(before.mean()), "lower": np.nan, "upper": np.nan, "score": round(float(t), 2),
            "method": "welch_t_28d",
            "explanation": (f"{_subject(metric, tenant_id, names)} {word} {abs(change):.1%} over the "
                            f"last {TREND_DAYS} days: {_amount(metric, recent.mean())} a day against "
                            f"{_amount(metric, before.mean())} in the {TREND_DAYS} days before."),
        })
    return _frame(found)


def change_points(series: pd.DataFrame, names: Mapping[str, str] = NO_NAMES) -> pd.DataFrame:
    """The strongest lasting level shift of each series beyond its linear trend and weekly cycle.

    The log values lose their weekday means and linear trend; the split that best separates the
    remainder into two segments of at least two weeks is a change point when the shift is large
    (>= 15 %) and clear (t >= 6). A single anomalous day cannot make a two-week segment.
    """
    found = []
    for (tenant_id, metric), rows in series.groupby(["tenant_id", "metric"]):
        rows = rows.sort_values("ds")
        values = np.log1p(np.maximum(rows["y"].to_numpy(dtype=float), 0.0))
        n = len(values)
        if n < 2 * CHANGE_MIN_SEGMENT or np.ptp(values) == 0:
            continue
        dow = pd.DatetimeIndex(rows["ds"]).day_of_week.to_numpy()
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
        day = rows["ds"].iloc[split]
        word = "up" if shift > 0 else "down"
        found.append({
            "insight_type": "change_point", "metric": metric, "tenant_id": tenant_id, "date_day": pd.Timestamp(day),
            "severity": "medium", "confidence": round(float(min(0.99, abs(t) / 12)), 3),
            "value": float(np.expm1(shift)),
            "expected": 0.0, "lower": np.nan, "upper": np.nan, "score": round(float(t), 2), "method": "mean_shift",
            "explanation": (f"{_subject(metric, tenant_id, names)} shifted {word} by "
                            f"{abs(np.expm1(shift)):.1%} from {pd.Timestamp(day).date()} onwards and stayed there, "
                            "beyond its usual trend and weekly pattern."),
        })
    return _frame(found)
