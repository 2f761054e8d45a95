"""Lead and lag between governed metrics, per tenant: which metric tends to move some days before another.

Candidates are declared (`CANDIDATES`): a leading metric, optionally per segment of a dimension
(marketing spend per channel), and a following one, at lags of one to `MAX_LAG` days. Each series
is read through the semantic layer, taken in logarithms, and loses its weekday pattern and its
slow movement (a centred two-week mean), so two series that merely share a trend or a weekly cycle
do not correlate; what is left is day-to-day movement.

The days are split in time: the first `FIT_SHARE` to find relationships, the rest to confirm them.
On the first part every candidate, segment and lag is tested (Pearson's correlation), and the
p-values of a tenant are corrected together (Benjamini-Hochberg, statsmodels); a relationship that
survives keeps its best lag and is reported only if the held-out days show it again (the same sign,
one-sided p below `HOLDOUT_ALPHA`). The sentence says "tends to move ... days after", never that one
metric causes or drives the other: a correlation found this way is a pattern to look into.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

CANDIDATES: tuple[tuple[str, str | None, str], ...] = (
    ("marketing_spend", "channel", "new_users"),
    ("new_users", None, "active_users"),
    ("sessions", None, "orders"),
    ("errors", None, "orders"),
    ("errors", None, "active_users"),
)
MAX_LAG = 7
FIT_SHARE = 2 / 3
FDR = 0.05
HOLDOUT_ALPHA = 0.05
MIN_DAYS = 42  # fewer days than this: too few to fit and confirm anything

COLUMNS = ["tenant_id", "leader", "leader_label", "leader_segment", "follower", "follower_label", "lag_days",
           "direction", "fit_correlation", "fit_p_adjusted", "holdout_correlation", "holdout_p", "fit_days",
           "holdout_days", "tests", "explanation"]


def movement(values: pd.Series) -> pd.Series:
    """A daily series' day-to-day movement: logarithms less their weekday means and their centred
    two-week mean (index: consecutive days)."""
    logs = np.log1p(values.clip(lower=0).astype(float))
    weekday = pd.Series([d.weekday() for d in logs.index], index=logs.index)
    logs = logs - logs.groupby(weekday).transform("mean")
    return logs - logs.rolling(15, center=True, min_periods=7).mean()


def lead_lag(leader: pd.Series, follower: pd.Series, lag: int, rows: slice) -> tuple[float, float, int]:
    """Pearson's r (two-sided p) of the leader `lag` days earlier with the follower, over `rows` of the days."""
    x = np.r_[np.full(lag, np.nan), leader.to_numpy(float)[:len(leader) - lag]][rows]
    y = follower.to_numpy(float)[rows]
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 10 or x.std() == 0 or y.std() == 0:
        return 0.0, 1.0, len(x)
    from scipy import stats  # imported where used: a run with too few days never loads it

    r, p = stats.pearsonr(x, y)
    return float(r), float(p), len(x)


def find(series: Mapping[tuple[str, str | None], pd.Series], follower_of: Mapping[tuple[str, str | None], str],
         days: pd.DatetimeIndex | list) -> pd.DataFrame:
    """One tenant's relationships that survive: `series` maps (metric, segment or None) to its daily
    values on `days`; `follower_of` maps each leading series to the metric that may follow it."""
    days = list(days)
    if len(days) < MIN_DAYS:
        return pd.DataFrame(columns=COLUMNS)
    moved = {key: movement(values.reindex(days, fill_value=0.0)) for key, values in series.items()}
    cut = int(len(days) * FIT_SHARE)
    tests = []
    for key, follower in follower_of.items():
        if key not in moved or (follower, None) not in moved:
            continue
        for lag in range(1, MAX_LAG + 1):
            r, p, n = lead_lag(moved[key], moved[(follower, None)], lag, slice(0, cut))
            tests.append((key, follower, lag, r, p, n))
    if not tests:
        return pd.DataFrame(columns=COLUMNS)
    from statsmodels.stats.multitest import multipletests

    rejected, adjusted, _, _ = multipletests([t[4] for t in tests], alpha=FDR, method="fdr_bh")
    best: dict[tuple, tuple] = {}
    for test, keep, p_adj in zip(tests, rejected, adjusted, strict=True):
        if keep and (test[0] not in best or abs(test[3]) > abs(best[test[0]][3])):
            best[test[0]] = (*test, p_adj)
    found = []
    for (metric, segment), (_, follower, lag, r, _, n, p_adj) in best.items():
        held_r, held_p, held_n = lead_lag(moved[(metric, segment)], moved[(follower, None)], lag,
                                          slice(cut, len(days)))
        one_sided = held_p / 2 if np.sign(held_r) == np.sign(r) else 1.0
        if one_sided >= HOLDOUT_ALPHA:
            continue
        found.append({"leader": metric, "leader_segment": segment or "", "follower": follower, "lag_days": lag,
                      "direction": "together" if r > 0 else "opposite", "fit_correlation": round(r, 3),
                      "fit_p_adjusted": float(p_adj), "holdout_correlation": round(held_r, 3),
                      "holdout_p": float(one_sided), "fit_days": n, "holdout_days": held_n, "tests": len(tests)})
    return pd.DataFrame(found)


def sentence(row: Mapping, who: str, labels: Mapping[str, str], dimension_of: Mapping[str, str]) -> str:
    leader = labels.get(row["leader"], row["leader"])
    if row["leader_segment"]:
        leader = f"{leader} on {dimension_of.get(row['leader'], '')} {row['leader_segment']}".replace("  ", " ")
    follower = labels.get(row["follower"], row["follower"])
    days = f"{row['lag_days']} day{'s' * (row['lag_days'] != 1)}"
    how = ("rising when it rose and falling when it fell" if row["direction"] == "together"
           else "falling when it rose and rising when it fell")
    return (f"For {who}, {follower.lower()} has tended to move {days} after {leader.lower()}, {how}, in the "
            "earlier weeks and again in the later ones. This is a pattern worth watching, not proof that one "
            "drives the other.")


def correlations(source, tenants: Mapping[str, str]) -> pd.DataFrame:
    """Every tenant's surviving relationships among `CANDIDATES`, with their sentences (`source`:
    `ml.drivers.GovernedMetrics`; `tenants`: id -> name)."""
    frames = {}
    known = [c for c in CANDIDATES if source.known(c[0]) and source.known(c[2])]
    dimension_names = {}
    for leader, dimension, follower in known:
        # a dimension of the metric, or an entity it is grouped by (marketing spend's channel)
        names = {d.name.split("__")[-1]: (d.name, d.label) for d in source.dimensions(leader)}
        group_by, label = names.get(dimension, (dimension, dimension)) if dimension else (None, "")
        dimension_names[leader] = label
        frames[(leader, dimension)] = source.daily((leader,), group_by)
        frames[(follower, None)] = source.daily((follower,))
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    # the days every series covers (users signed up long before the first event, say)
    spans = [(f["day"].min(), f["day"].max()) for f in frames.values() if len(f)]
    first, last = max((s[0] for s in spans), default=None), min((s[1] for s in spans), default=None)
    days = list(pd.date_range(first, last, freq="D").date) if spans and first <= last else []
    out = []
    for tenant_id, name in tenants.items():
        series: dict[tuple[str, str | None], pd.Series] = {}
        follower_of: dict[tuple[str, str | None], str] = {}
        for leader, dimension, follower in known:
            if (leader, dimension) not in frames:
                continue
            frame = frames[(leader, dimension)]
            frame = frame[frame["tenant"] == tenant_id]
            if dimension:
                for segment, rows in frame.groupby("segment"):
                    series[(leader, segment)] = rows.groupby("day")[leader].sum()
                    follower_of[(leader, segment)] = follower
            else:
                series[(leader, None)] = frame.groupby("day")[leader].sum()
                follower_of[(leader, None)] = follower
            followed = frames[(follower, None)]
            series[(follower, None)] = followed[followed["tenant"] == tenant_id].groupby("day")[follower].sum()
        found = find(series, follower_of, days)
        for row in found.to_dict("records"):
            labels = {m: source.label(m) for m in (row["leader"], row["follower"])}
            out.append({"tenant_id": tenant_id, **row, "leader_label": labels[row["leader"]],
                        "follower_label": labels[row["follower"]],
                        "explanation": sentence(row, name or f"tenant {tenant_id}", labels, dimension_names)})
    return pd.DataFrame(out, columns=COLUMNS)
