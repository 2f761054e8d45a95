"""Which insight to read first, and what to do about it.

Each insight's impact is in its metric's own unit: the money (revenue), orders or users gained or
lost against what was expected, over the days it covers (one for an anomaly, 28 for a trend, the
14 after a lasting shift). Impacts in different units do not compare, so the priority weighs the
impact relative to the metric's expected level (capped: a metric that went from 1 to 40 is not forty
times as urgent), by the insight's confidence and by its recency (half as urgent each
`HALF_LIFE_DAYS` it is older than the newest day), with the all-tenants series and calendar events
last. The list is ordered by priority; the statistics stay in their own columns.

The recommendation is one sentence a business reader can act on, drawn from the drivers: where to
look (the segment that carries the change) and what to look at there (by metric and direction).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ml.series import TOTAL

HALF_LIFE_DAYS = 7.0
MAX_RELATIVE = 3.0
DAYS_COVERED = {"trend_up": 28, "trend_down": 28, "change_point": 14}
KIND_WEIGHT = {"expected_event": 0.2, "correlation": 0.3, "withdrawn_anomaly": 0.1}
TOTAL_WEIGHT = 0.5  # the all-tenants series repeat what the tenants' own insights say

# What to check, by metric and direction: the place a person looks first.
WHAT_TO_CHECK = {
    ("revenue", "drop"): "check checkout, payments and prices",
    ("orders", "drop"): "check checkout and payments",
    ("active_users", "drop"): "check sign-in and whether the app is reachable",
    ("sessions", "drop"): "check whether the site or app is reachable and what traffic sources changed",
    ("errors", "rise"): "check the error logs and the latest releases",
    ("errors", "drop"): "check that errors are still being recorded",
    ("revenue", "rise"): "find out what brought the extra revenue (a campaign, a promotion, a large customer)",
    ("orders", "rise"): "find out what brought the extra orders (a campaign, a promotion) and check stock",
    ("active_users", "rise"): "find out what brought the extra users (a campaign, a mention) and whether they stay",
    ("sessions", "rise"): "find out where the extra traffic comes from and whether it is real visitors",
}


def impact(insights: pd.DataFrame) -> pd.Series:
    """Gained (+) or lost (-) against the expected value, in the metric's unit, over the days covered."""
    days = insights["insight_type"].map(DAYS_COVERED).astype(float).fillna(1.0)
    change_point = insights["insight_type"] == "change_point"
    value, expected = _numbers(insights, "value"), _numbers(insights, "expected")
    # a change point's value is its relative shift; its expected level is not kept: the impact is
    # left at the shift itself (no unit) rather than invented
    gap = (value - expected).where(~change_point, value)
    return (gap * days).fillna(0.0)


def priority(insights: pd.DataFrame, today=None) -> pd.Series:
    """Relative impact x confidence x recency x kind weight (see the module's docstring)."""
    value, expected = _numbers(insights, "value"), _numbers(insights, "expected")
    relative = ((value - expected).abs() / expected.abs().where(expected.abs() > 0)).fillna(1.0)
    relative = relative.where(insights["insight_type"] != "change_point", value.abs())
    relative = relative.clip(upper=MAX_RELATIVE)
    days = pd.to_datetime(insights["date_day"])
    newest = pd.Timestamp(today) if today is not None else days.max()
    age = (newest - days).dt.days.clip(lower=0).fillna(0)
    recency = 0.5 ** (age / HALF_LIFE_DAYS)
    kind = insights["insight_type"].map(KIND_WEIGHT).astype(float).fillna(1.0)
    weight = kind * np.where(insights["tenant_id"] == TOTAL, TOTAL_WEIGHT, 1.0)
    return (relative * _numbers(insights, "confidence") * recency * weight).astype(float).round(4)


def _numbers(insights: pd.DataFrame, column: str) -> pd.Series:
    return pd.to_numeric(insights[column], errors="coerce").astype(float)


def recommendation(insight: Mapping, where: str | None, who: str) -> str:
    """One sentence: what to check, for whom (`where`: the segment the drivers name in words, as
    `ml.drivers.place` says it; else the whole tenant)."""
    kind = insight["insight_type"]
    if kind == "expected_event":
        return "Nothing to fix: plan for this event's effect next time it comes round."
    if kind == "withdrawn_anomaly":
        return "Nothing to fix: the weeks after this day showed it was not unusual."
    direction = "rise" if float(insight["value"]) >= float(insight["expected"] or 0) else "drop"
    if kind == "change_point":
        direction = "rise" if float(insight["value"]) > 0 else "drop"
    action = WHAT_TO_CHECK.get((insight["metric"], direction), "check what changed")
    where = f"for {where} at {who}" if where else f"at {who}"
    day = pd.Timestamp(insight["date_day"]).date()
    when = (f"on {day}" if kind.startswith("anomaly") else f"since {day}" if kind == "change_point"
            else f"over the four weeks to {day}")
    return f"{action[0].upper()}{action[1:]} {where} {when}."


def rank(insights: pd.DataFrame, today=None) -> pd.DataFrame:
    """The insights with impact, priority and their rank (1 = read first), ordered by priority."""
    out = insights.copy()
    out["impact"] = impact(out).round(2)
    out["priority"] = priority(out, today)
    out = out.sort_values(["priority", "date_day"], ascending=[False, False]).reset_index(drop=True)
    out["priority_rank"] = np.arange(1, len(out) + 1)
    return out


def prioritized(insights: pd.DataFrame, explained: Mapping, names: Mapping[str, str], today=None) -> pd.DataFrame:
    """The insights with their key, drivers' sentence, recommendation, impact and priority, read-first
    order (`explained`: `ml.drivers.explain_all`'s findings per insight key)."""
    from ml.drivers import insight_key

    out = insights.copy()
    keys = [insight_key(row) for row in out.to_dict("records")] if len(out) else []
    out["insight_key"] = keys
    found = [explained.get(k) for k in keys]
    out["drivers"] = [e.sentence if e is not None else "" for e in found]
    out["recommendation"] = [
        recommendation(row, _where(e),
                       "all tenants" if row["tenant_id"] == TOTAL else names.get(row["tenant_id"]) or
                       f"tenant {row['tenant_id']}")
        for row, e in zip(out.to_dict("records"), found, strict=True)]
    return rank(out, today)


def _where(explained) -> str | None:
    """The first driver's segment in words (`ml.drivers.Explained`), or None."""
    if explained is None or explained.top is None:
        return None
    return explained.place or f"{explained.top[0]} {explained.top[1]}"
