"""Insight drivers on the sample: is each detected injected anomaly attributed to the segment the
generator injected it into, how long does explaining one take, and do ordinary days stay quiet?

Run after `make run` (the default sample): it reads the run's warehouse (`ml.insights`, the marts)
and the sample's ground truth, and explains again, timed, each detected injected anomaly through the
semantic layer (`ml/drivers.py`): cold (a new engine, its queries included) and warm (the queries of
the run already made). An anomaly injected into a cell of two dimensions (the default sample's errors
of the mobile users in Germany) is attributed right only when the drivers name that cell, both
dimensions; a single segment, even one of the two, is wrong. The baseline attributes each anomaly
to the largest segment by volume (the biggest value of any of the metric's governed dimensions),
which is what a reader guesses without drivers. Ordinary days (the last `ORDINARY_DAYS` days of
every tenant and metric that the detector judged and did not flag, nor had an anomaly injected) are
explained against the detector's expected value as an anomaly is: a driver named there is a false
alarm.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from ingestion.paths import DataLayout
from ml import detection, drivers
from semantic.metricflow_engine import engine_on
from semantic.publication import DuckDbReader
from semantic.settings import SEMANTIC_MANIFEST

ORDINARY_DAYS = 14


def truth_cell(truth: dict) -> set[tuple[str, str]]:
    """The (dimension, value) pairs the generator injected an anomaly into: one, or two for a cell."""
    within = truth.get("within")
    return {(truth["dimension"], truth["value"])} | ({(within["dimension"], within["value"])} if within else set())


def matches(cell: tuple[tuple[str, str], ...] | None, truth: dict) -> bool:
    """A driver's segment ((dimension label, value), ...: `Explained.cell`) names the injected one:
    the same dimensions, each with the truth's value; a dimension is its label's last word (the
    user's device and the event's device are the same attribute here). A single segment does not
    match a cell of two, nor a cell a single segment."""
    return bool(cell) and {(label.split()[-1], value) for label, value in cell} == truth_cell(truth)


def where(truth: dict) -> str:
    return " & ".join(f"{d}={v}" for d, v in sorted(truth_cell(truth)))


def largest_segment(change: drivers.Change, source: drivers.GovernedMetrics) -> tuple[tuple[str, str], ...] | None:
    """The baseline: the segment with the most volume on the baseline days, over the metric's dimensions
    (one at a time: a reader guessing without drivers does not guess a cell)."""
    metric = drivers.METRIC_OF_SERIES.get(change.metric, change.metric)
    best = None
    for dimension in drivers.splitting(source, metric, change):
        daily = source.daily((metric,), dimension.name)
        mine = daily[(daily["tenant"] == change.tenant_id) & daily["day"].isin(change.baseline_days)]
        volume = mine.groupby("segment")[metric].sum()
        if len(volume) > 1 and (best is None or volume.max() > best[0]):
            best = (volume.max(), ((dimension.label, str(volume.idxmax())),))
    return best[1] if best else None


def detected_insight(insights: pd.DataFrame, anomaly: dict) -> dict | None:
    """The insight that detected an injected anomaly: its metric's, else the strongest on its tenant-day."""
    day = pd.Timestamp(anomaly["date"]).date()
    kinds = insights["insight_type"].astype(str)
    found = insights[kinds.str.startswith("anomaly") & (insights["tenant_id"] == anomaly["tenant_id"])
                     & (pd.to_datetime(insights["date_day"]).dt.date == day)]
    if found.empty:
        return None
    same = found[found["metric"] == anomaly["metric"]]
    chosen = same if not same.empty else found.loc[[found["score"].abs().idxmax()]]
    return chosen.iloc[0].to_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("PLATFORM_DATA_DIR", "data")))
    args = parser.parse_args()
    layout = DataLayout(args.data_dir.resolve())
    truth = json.loads(layout.ground_truth.read_text())
    connection = duckdb.connect(str(layout.warehouse), read_only=True)
    try:
        insights = connection.execute("select * from ml.insights").df()
        daily = connection.execute("select * from marts.metrics_daily").df()
        warm = drivers.GovernedMetrics(engine_on(DuckDbReader(connection), SEMANTIC_MANIFEST))
        rows, cold_seconds, warm_seconds = [], [], []
        for anomaly in truth["anomalies"]:
            insight = detected_insight(insights, anomaly)
            if insight is None:
                rows.append({**anomaly, "detected": False})
                continue
            change = drivers.change_of(insight)
            started = time.perf_counter()
            drivers.explain(change, drivers.GovernedMetrics(engine_on(DuckDbReader(connection), SEMANTIC_MANIFEST)))
            cold_seconds.append(time.perf_counter() - started)
            drivers.explain(change, warm)  # the run's queries made once
            started = time.perf_counter()
            explained = drivers.explain(change, warm)
            warm_seconds.append(time.perf_counter() - started)
            baseline = largest_segment(change, warm)
            rows.append({**anomaly, "detected": True, "metric_explained": insight["metric"], "named": explained.cell,
                         "correct": matches(explained.cell, anomaly["segment"]), "baseline": baseline,
                         "baseline_correct": matches(baseline, anomaly["segment"]), "sentence": explained.sentence})
        judged = _judged(daily, connection)
        ordinary = _ordinary(insights, judged, truth, warm)
        undetected = _undetected(judged, [r for r in rows if not r["detected"]], warm)
    finally:
        connection.close()
    found = [r for r in rows if r["detected"]]
    print(f"sample: {truth['size']['name']}, {len(truth['anomalies'])} injected anomalies, {len(found)} detected")
    for r in rows:
        if not r["detected"]:
            print(f"  {r['tenant_id']} {r['date']} {r['metric']} {r['kind']} in {where(r['segment'])}: not detected")
            continue
        print(f"  {r['tenant_id']} {r['date']} {r['metric']} {r['kind']} in {where(r['segment'])}: drivers name "
              f"{r['named']} ({'right' if r['correct'] else 'WRONG'}); largest segment {r['baseline']} "
              f"({'right' if r['baseline_correct'] else 'wrong'})\n      {r['sentence']}")
    if found:
        accuracy = np.mean([r["correct"] for r in found])
        print(f"attribution accuracy (detected injected anomalies): drivers {accuracy:.0%}"
              f" ({sum(r['correct'] for r in found)}/{len(found)}), baseline largest segment "
              f"{np.mean([r['baseline_correct'] for r in found]):.0%} "
              f"({sum(r['baseline_correct'] for r in found)}/{len(found)})")
        cells = [r for r in found if "within" in r["segment"]]
        print(f"  of them injected into a cell of two dimensions: {len(cells)}, named as that "
              f"cell by the drivers {sum(r['correct'] for r in cells)}/{len(cells)}, by the baseline "
              f"{sum(r['baseline_correct'] for r in cells)}/{len(cells)}; injected cells the detector missed: "
              f"{sum('within' in r['segment'] for r in rows if not r['detected'])}")
        print(f"time to explain one anomaly: cold (new engine, its queries) median {np.median(cold_seconds):.2f} s, "
              f"max {max(cold_seconds):.2f} s; warm (queries made) median {np.median(warm_seconds) * 1000:.0f} ms")
    if undetected:
        print(f"injected anomalies the detector missed, explained anyway (the decomposition's own bar): "
              f"{sum(r[2] for r in undetected)}/{len(undetected)} attributed right, "
              f"{sum(r[1] is not None and not r[2] for r in undetected)} wrong, "
              f"{sum(r[1] is None for r in undetected)} with no driver named")
        for anomaly, top, right in undetected:
            print(f"  {anomaly['tenant_id']} {anomaly['date']} {anomaly['metric']} in {where(anomaly['segment'])}: "
                  f"{top} ({'right' if right else 'none' if top is None else 'WRONG'})")
    print(f"ordinary days: {ordinary[0]} tenant-day-metrics explained, {ordinary[1]} with a driver named "
          f"({ordinary[2]} by the decomposition's own bar, without the detector's verdict)")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def _judged(daily: pd.DataFrame, connection) -> pd.DataFrame:
    """Every day the detector judges, with its expected value (`ml.detection.judge`, as the run does)."""
    from ml import events
    from ml.forecaster import Setup
    from ml.series import FAMILIES, METRICS, metrics_daily_frame, metrics_daily_sql, to_panel

    cursor = connection.cursor()
    cursor.execute(metrics_daily_sql())
    wide = metrics_daily_frame([d[0] for d in cursor.description], cursor.fetchall())
    calendar = events.read(DuckDbReader(connection).run)
    calendar = events.validate(calendar, set(wide["tenant_id"].unique()))
    frames = []
    for family in FAMILIES:
        panel, _ = to_panel(wide, family, calendar)
        spec = METRICS[FAMILIES[family][0]]
        setup = Setup(spec.freq, spec.season, spec.season)
        lengths = panel.groupby("unique_id")["y"].transform("size")
        frames.append(detection.judge(panel[lengths > setup.min_length], setup))
    return pd.concat(frames, ignore_index=True)


def _undetected(judged: pd.DataFrame, missed: list[dict], source: drivers.GovernedMetrics) -> list[tuple]:
    """The injected anomalies the detector missed, explained anyway against its expected value for the
    day (the decomposition's own bar, no verdict to lean on): (anomaly, segment named, right)."""
    out = []
    for anomaly in missed:
        day = pd.Timestamp(anomaly["date"])
        row = judged[(judged["tenant_id"] == anomaly["tenant_id"]) & (judged["metric"] == anomaly["metric"])
                     & (pd.to_datetime(judged["ds"]) == day)]
        if row.empty:
            continue
        row = row.iloc[0]
        insight = {"insight_type": "anomaly_drop", "metric": anomaly["metric"], "tenant_id": anomaly["tenant_id"],
                   "date_day": day.date(), "value": float(row["y"]), "expected": float(row["expected"])}
        top = drivers.explain(drivers.change_of(insight), source).cell or None
        out.append((anomaly, top, matches(top, anomaly["segment"])))
    return out


def _ordinary(insights: pd.DataFrame, judged: pd.DataFrame, truth: dict, source: drivers.GovernedMetrics
              ) -> tuple[int, int, int]:
    """Tenant-day-metrics of the last days the detector judged ordinary (no injected or detected
    anomaly that day), explained against the detector's expected value as an anomaly would be: how
    many, and how many named a driver."""
    judged = judged[(judged["tenant_id"] != "all") & ~judged["event"].astype(bool)].copy()
    judged["day"] = pd.to_datetime(judged["ds"]).dt.date
    last = judged["day"].max()
    flagged = {(t, pd.Timestamp(d).date()) for t, d, k in zip(insights["tenant_id"], insights["date_day"],
                                                              insights["insight_type"], strict=True)
               if str(k).startswith("anomaly")}
    injected = {(a["tenant_id"], pd.Timestamp(a["date"]).date()) for a in truth["anomalies"]}
    explained, named, named_alone = 0, 0, 0
    for row in judged[judged["day"] > last - timedelta(days=ORDINARY_DAYS)].itertuples(index=False):
        if (row.tenant_id, row.day) in flagged | injected or abs(row.score) >= detection.THRESHOLD:
            continue
        insight = {"insight_type": "anomaly_drop", "metric": row.metric, "tenant_id": row.tenant_id,
                   "date_day": row.day, "value": float(row.y), "expected": float(row.expected), "score": row.score}
        explained += 1
        named += drivers.explain(drivers.change_of(insight), source).top is not None
        # the decomposition's own bar alone (no verdict of the detector's to lean on)
        result = drivers.explain(drivers.change_of({**insight, "score": np.nan}), source)
        named_alone += result.top is not None
        if result.top is not None:
            print(f"  ordinary day, a driver by the decomposition's own bar: {row.tenant_id} {row.day} {row.metric}: "
                  f"{result.sentence}")
    return explained, named, named_alone


if __name__ == "__main__":
    main()
