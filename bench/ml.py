"""Benchmark of forecasting and anomaly detection on the default sample.

Reads the published snapshot of a data directory the main job has filled (`make run` first),
trains every family into a throwaway MLflow store, and prints:

- per metric, days 1 to 7 ahead, for the all-tenants series and the tenants' series: MAPE,
  sMAPE, MASE of LightGBM against seasonal naive and ETS on the same folds, and the coverage
  of the 80 % and 95 % intervals;
- anomaly detection against the sample's ground truth (precision, recall);
- training plus backtest wall time, and how it grows with the number of series (tenants
  resampled from the sample's own to reach 16 and 32).

    make bench-ml            # or: python -m bench.ml --data-dir data
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ml import backtest, features, forecasting, scoring
from ml.baselines import Baselines
from ml.model import Forecaster
from ml.series import FAMILIES, read_metrics_daily, to_series
from ml.tracking import Store
from ml.training import train_family
from semantic import snapshots

HEADLINE = ("revenue", "orders", "active_users")


def read(data_dir: Path) -> pd.DataFrame:
    conn, snapshot = snapshots.connect_current(data_dir / "published")
    try:
        return read_metrics_daily(conn, relation=f"{snapshots.CATALOG}.marts.metrics_daily")
    finally:
        conn.close()


def accuracy(reports: dict) -> None:
    print("\nBacktest, days 1 to 7 ahead (4 rolling origins a week apart):")
    print("(MAPE to MASE: the shipped forecast; LGBM, naive, ETS: MASE of the booster alone and the baselines)")
    print(f"{'metric':<13} {'series':<7} {'MAPE':>7} {'sMAPE':>7} {'MASE':>6} {'LGBM':>6} {'naive':>6} {'ETS':>6} "
          f"{'vs naive':>9} {'cov80':>6} {'cov95':>6} {'weight':>6}")
    for report in reports.values():
        scores = report.scores[report.scores["window"] == "h1-7"]
        for (metric, level), rows in scores.groupby(["metric", "level"]):
            by = rows.set_index("model")
            model, booster = by.loc["forecast"], by.loc["lightgbm"]
            naive, ets = by.loc["seasonal_naive"], by.loc["ets"]
            weight = report.weights.get((metric, level, "h1-7"), 1.0)
            print(f"{metric:<13} {level:<7} {model.mape:>7.1%} {model.smape:>7.1%} {model.mase:>6.3f} "
                  f"{booster.mase:>6.3f} {naive.mase:>6.3f} {ets.mase:>6.3f} {1 - model.mase / naive.mase:>+9.1%} "
                  f"{model.coverage_80:>6.2f} {model.coverage_95:>6.2f} {weight:>6.2f}")
    print("(weight: the booster's share of the final model's forecast days 1 to 7 ahead, chosen on its inner cutoffs)")
    for report in reports.values():
        print(f"{report.family}: pooled MASE {report.model_mase:.3f} vs seasonal naive {report.naive_mase:.3f} "
              f"({1 - report.model_mase / report.naive_mase:+.1%}); {report.reason}")


def resampled(wide: pd.DataFrame, tenants: int, seed: int = 1) -> pd.DataFrame:
    """`tenants` tenants: the sample's own, then Poisson resamples of them under new ids."""
    rng = np.random.default_rng(seed)
    own = sorted(wide["tenant_id"].unique())
    frames = [wide[wide["tenant_id"].isin(own[:tenants])]]
    for i in range(max(0, tenants - len(own))):
        copy = wide[wide["tenant_id"] == own[i % len(own)]].copy()
        copy["tenant_id"] = f"r{i:03d}"
        for metric in ("orders", "active_users", "sessions", "errors"):
            copy[metric] = rng.poisson(copy[metric].clip(lower=0)).astype(float)
        copy["revenue"] = copy["revenue"] * rng.gamma(50, 1 / 50, len(copy))
        frames.append(copy)
    return pd.concat(frames, ignore_index=True)


def scaling(wide: pd.DataFrame) -> None:
    print("\nTraining plus backtest wall time by number of series (both families, no MLflow):")
    print(f"{'tenants':>8} {'series':>7} {'rows':>8} {'seconds':>8} {'ms/series':>10}")
    for tenants in (2, 4, 8, 16, 32):
        frame = resampled(wide, tenants)
        started, rows_total, series_total = time.perf_counter(), 0, 0
        for metrics in FAMILIES.values():
            series, _ = to_series(frame, metrics)
            rows, _ = features.build(series, metrics)
            shared = Baselines(series, features.MAX_HORIZON)
            backtest.run(rows, series, baselines=shared)
            Forecaster().fit(rows, shared)
            rows_total += len(rows)
            series_total += rows.groupby(["tenant_id", "metric"]).ngroups
        seconds = time.perf_counter() - started
        print(f"{tenants:>8} {series_total:>7} {rows_total:>8,} {seconds:>8.1f} {1000 * seconds / series_total:>10.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--no-scaling", action="store_true", help="accuracy and anomalies only (about 2 minutes)")
    args = parser.parse_args()
    wide = read(args.data_dir)
    print(f"default sample: {wide['tenant_id'].nunique()} tenants, {wide['date_day'].nunique()} days "
          f"({wide['date_day'].min().date()} to {wide['date_day'].max().date()})")
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'mlflow.db'}", Path(tmp) / "artifacts")
        store.experiment("commerce")  # create the store's tables outside the timings
        reports, seconds = {}, {}
        for family in FAMILIES:
            started = time.perf_counter()
            reports[family] = train_family(family, wide, store)
            seconds[family] = time.perf_counter() - started
        accuracy(reports)
        print("\nWall time, training + 4-fold backtest + MLflow logging and registry: "
              + ", ".join(f"{f} {s:.1f} s" for f, s in seconds.items()) + f" (total {sum(seconds.values()):.1f} s)")
        models = {family: forecasting.load(store, family) for family in FAMILIES}
        found = forecasting.find_insights(models, wide)
    truth_path = args.data_dir / "sample" / "ground_truth.json"
    if truth_path.exists():
        result = scoring.score(found, json.loads(truth_path.read_text())["anomalies"])
        print(f"\nAnomalies against the ground truth ({result['injected']} injected): precision "
              f"{result['precision']:.2f}, recall {result['recall']:.2f} (tenant-days; exact metric recall "
              f"{result['recall_exact_metric']:.2f}); false positives {result['false_positives']}, "
              f"missed {result['missed']}")
    if not args.no_scaling:
        scaling(wide)


if __name__ == "__main__":
    main()
