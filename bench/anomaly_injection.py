"""Anomaly detection judged on injected anomalies, beside a seasonal robust z-score and an oracle.

Anomalies are injected into clean series (real daily series from `bench.real_series`, and the
sample's metrics when a data directory is given): spikes and drops sized in units of the day's own
noise, in four buckets (below 3, 3 to 4, 4 to 6, 6 and above), a few days apart, never on a
calendar event, which stays in as an expected event.

The day's own noise is measured on the variance-stabilized scale of `ml.detection` (Anscombe's
root): the robust spread of the clean series around its two-sided seasonal median (the same
weekday one and two weeks before and after). The oracle knows that two-sided median of the clean
series and the noise: its score, |injected - median| / noise, is what no detector that sees only
the past can beat (the anomaly ceiling of this evaluation; `bench.anomaly_ceiling` gives the
sample generator's own for its orders).

Real series carry anomalies of their own (a storm that grounded flights, a heat wave, a holiday
of another country): measured so, the NYC departures had 139 days per 1,000 beyond 3 noise units
and 62 beyond 6 before anything was injected, so at 1 false alarm per 1,000 even the oracle found
nothing. A day whose own value is beyond `NATURAL` (4) noise units of its two-sided seasonal median
before injection is therefore `natural`: what the benchmark would call an anomaly of the 4-6
bucket had it injected it, and beyond what Gaussian noise reaches once in 10,000 days. It stays
in the series (every detector must live with it in its history, as in production) but counts
neither as clean nor as injected, and no anomaly is injected next to it. The benchmark prints how
many such days each panel had.

Every detector is read at the threshold that keeps false alarms within 1 per 1,000 clean
series-days (the budget), and `ml.detection` also at its shipped threshold. `ml.detection` has two
verdicts, each read at its own budget: as of the day (provisional) on every judged day, and once
the two weeks after the day are known (confirmed, `detection.CONFIRM_SEASONS`) on the days that
have them, beside the baseline and the oracle on those same days.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ml import detection
from ml.forecaster import Setup

BUCKETS = ((0.0, 3.0, "<3"), (3.0, 4.0, "3-4"), (4.0, 6.0, "4-6"), (6.0, 99.0, ">=6"))
SIZES = (2.0, 2.5, 3.2, 3.8, 4.5, 5.5, 7.0, 9.0)
BUDGET = 1 / 1000
NATURAL = 4.0  # noise units beyond which a day was anomalous before injection


def _two_sided(stab: np.ndarray, event: np.ndarray, season: int = 7) -> np.ndarray:
    out = np.full(len(stab), np.nan)
    for i in range(len(stab)):
        near = [stab[j] for k in (1, 2) for j in (i - k * season, i + k * season)
                if 0 <= j < len(stab) and not event[j]]
        out[i] = np.median(near) if near else np.nan
    return out


def inject(panel: pd.DataFrame, seed: int, every: int = 12, first: int = 35) -> pd.DataFrame:
    """`panel` (unique_id, ds, y, nonneg, counts, event, ...) with anomalies injected: columns
    `size` (signed, in noise units; 0 for clean days), `noise`, `oracle` (the oracle's score)."""
    rng = np.random.default_rng(seed)
    parts = []
    for _, rows in panel.sort_values(["unique_id", "ds"]).groupby("unique_id", sort=False):
        rows = rows.copy()
        nonneg = rows["nonneg"].to_numpy(bool)
        event = rows["event"].to_numpy(object) != ""
        stab = detection.stabilized(rows["y"].to_numpy(float), nonneg)
        median = _two_sided(stab, event)
        noise = 1.4826 * np.nanmedian(np.abs(stab - median)[~event])
        if rows["counts"].any():
            noise = max(noise, 1.0)
        natural = ~event & (np.abs(stab - median) / noise >= NATURAL)
        size = np.zeros(len(rows))
        day = first + int(rng.integers(0, every))
        while day < len(rows) - 2:
            if not (event | natural)[max(0, day - 1):day + 2].any():
                size[day] = rng.choice(SIZES) * rng.choice([-1.0, 1.0])
            day += every + int(rng.integers(-3, 4))
        injected = stab + size * noise
        # a drop cannot go below zero where values cannot: its size is what is left
        floor = detection.stabilized(np.zeros(len(rows)), nonneg)
        injected = np.where(nonneg, np.maximum(injected, floor), injected)
        size = np.where(size != 0, (injected - stab) / noise, 0.0)
        y = np.where(nonneg, np.maximum(injected, 0) ** 2 / 4 - 0.375, injected)
        rows["y"] = np.where(size != 0, np.where(nonneg, np.maximum(y, 0.0), y), rows["y"])
        rows["size"], rows["noise"], rows["natural"] = size, noise, natural
        rows["oracle"] = np.abs(detection.stabilized(rows["y"].to_numpy(float), nonneg) - median) / noise
        parts.append(rows)
    return pd.concat(parts, ignore_index=True)


def seasonal_robust_z(panel: pd.DataFrame, season: int = 7, weeks: int = 4, window: int = 56) -> pd.Series:
    """The baseline: root-scale value less the median of the same weekday over the `weeks` before,
    over the robust spread (MAD) of those residuals over the `window` days before (counts' at least 1)."""
    out = pd.Series(np.nan, index=panel.index)
    for _, rows in panel.groupby("unique_id", sort=False):
        stab = pd.Series(detection.stabilized(rows["y"].to_numpy(float), rows["nonneg"].to_numpy(bool)))
        lags = np.column_stack([stab.shift(season * k) for k in range(1, weeks + 1)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the first weeks: no same weekday before
            residual = stab - np.nanmedian(lags, axis=1)
        mad = residual.shift(1).rolling(window, min_periods=14).apply(
            lambda r: 1.4826 * np.median(np.abs(r - np.median(r))), raw=True)
        if rows["counts"].any():
            mad = mad.clip(lower=1.0)
        out[rows.index] = (residual / mad).to_numpy()
    return out


DAILY = Setup("D", 7, 7)


def judge_all(injected: pd.DataFrame, setup: Setup = DAILY, last: int | None = None) -> tuple[pd.DataFrame,
                                                                                              pd.DataFrame]:
    """Our scores and the baseline's for every judged day of `injected` (the `last` days), and our
    judgments: `ours` as of the day (the provisional verdict), `confirmed` once the weeks after it
    are known (`detection.confirmed_strength`; NaN for the last days, which have no confirmed
    verdict yet)."""
    ours = detection.judge(injected.drop(columns=["size", "noise", "oracle", "natural"]), setup, last=last)
    scored = injected.assign(baseline=seasonal_robust_z(injected))
    ours = ours.assign(ours=ours["score"].where(~ours["shift"], 0.0),  # a lasting move is not flagged
                       confirmed=detection.confirmed_strength(ours))
    scored = scored.merge(ours[["unique_id", "ds", "ours", "confirmed"]], on=["unique_id", "ds"], how="inner")
    return scored.dropna(subset=["baseline", "ours", "oracle"]), ours


def threshold_at_budget(clean: np.ndarray, budget: float = BUDGET) -> float:
    """The lowest threshold at which at most `budget` of the clean days score above it."""
    ranked = np.sort(np.abs(clean))[::-1]
    allowed = int(np.floor(budget * len(ranked)))
    return float(ranked[allowed] + 1e-9) if allowed < len(ranked) else 0.0


def evaluate(scored: pd.DataFrame, ours: tuple[str, ...] = ("ours",),
             shipped: dict[str, float] | None = None) -> dict[str, pd.DataFrame]:
    """Recall by size bucket and direction at the budget, the precision-recall curve, and false
    alarms, of our verdicts `ours` (columns of `scored`: "ours" as of the day, "confirmed" once
    confirmed) beside the baseline and the oracle, on the days every one of them judged; `shipped`:
    each verdict's shipped threshold (as of the day: `detection.THRESHOLD`)."""
    shipped = shipped or {"ours": detection.THRESHOLD}
    detectors = (*ours, "baseline", "oracle")
    scored = scored.dropna(subset=list(ours))
    clean = scored[(scored["size"] == 0) & (scored["event"] == "") & ~scored["natural"]]
    anomalies = scored[scored["size"] != 0]
    thresholds = {name: threshold_at_budget(clean[name].to_numpy()) for name in detectors}

    def recall(of: pd.DataFrame) -> dict:
        return {**{n: float((of[n].abs() >= t).mean()) for n, t in thresholds.items()},
                **{f"{n}_shipped": float((of[n].abs() >= t).mean()) for n, t in shipped.items()}}

    bucket = pd.cut(anomalies["size"].abs(), [b[0] for b in BUCKETS] + [99.0], labels=[b[2] for b in BUCKETS],
                    right=False)
    direction = np.where(anomalies["size"] > 0, "spike", "drop")
    by_bucket = pd.DataFrame([{"size": name_bucket, "kind": kind, "injected": len(of_bucket), **recall(of_bucket)}
                              for (name_bucket, kind), of_bucket in anomalies.groupby([bucket, direction],
                                                                                      observed=True)])
    overall = pd.DataFrame({name: {"injected": len(of), **recall(of)}
                            for name, of in anomalies.groupby(bucket, observed=True)}).T
    curve = []
    for threshold in (3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 8.0):
        row = {"threshold": threshold}
        for name in detectors:
            flagged_clean = int((clean[name].abs() >= threshold).sum())
            found = int((anomalies[name].abs() >= threshold).sum())
            row[f"{name}_precision"] = found / (found + flagged_clean) if found + flagged_clean else np.nan
            row[f"{name}_recall"] = found / len(anomalies)
            row[f"{name}_false_per_1000"] = 1000 * flagged_clean / len(clean)
        curve.append(row)
    events_ = scored[scored["event"] != ""]
    summary = pd.DataFrame([{
        "days": len(scored), "clean_days": len(clean), "anomalies": len(anomalies), "event_days": len(events_),
        "natural_anomaly_days": int(scored["natural"].sum()),
        **{f"{n}_threshold_at_budget": t for n, t in thresholds.items()},
        **{f"{n}_false_per_1000_at_shipped": 1000 * float((clean[n].abs() >= t).mean()) for n, t in shipped.items()},
        **{f"{n}_event_days_beyond_shipped": int((events_[n].abs() >= t).sum()) for n, t in shipped.items()},
    }])
    big = anomalies[anomalies["size"].abs() >= BUCKETS[-1][0]]
    panels = pd.DataFrame({name: {"injected": len(of), **recall(of)} for name, of in big.groupby("panel")}).T \
        if "panel" in big else pd.DataFrame()
    return {"by_bucket": by_bucket, "overall": overall, "curve": pd.DataFrame(curve), "summary": summary,
            "panels": panels}
