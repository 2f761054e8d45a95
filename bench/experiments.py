"""Does the experiment analysis deserve trust? Its error rates, measured on simulated experiments.

The sample generator simulates experiments with a known true lift (the treatment multiplies each
session's purchase probability by 1 + lift, so orders per user and revenue per user rise by
exactly that lift) and, on its last experiment, a sample-ratio mismatch (part of the treatment
logged as control). Replayed in memory from many seeds, each sample's experiments go through the
same analysis as the pipeline's (`ml.experiments.analysis`), on exposures and outcomes counted as
the experiment marts count them (`marts_in_memory`; tests/experiments checks it against the marts).

Figures, each against its target and a baseline run alongside:
- A/A tests (each experiment's control users split at random in two, several times): the
  fixed-horizon false-positive rate (target 5 +- 1 %) and the coverage of the lift's 95 % interval
  (95 +- 1 %), with and without CUPED, against the delta-method interval (the baseline, which covers
  less); with a look every day, the always-valid sequence (target < 5 %) against the naive daily look
  at the fixed-horizon test (the baseline, far above 5 %);
- true lifts: how often the intervals of the experiments without a mismatch cover the generator's
  lift, across seeds (target: the nominal 95 %); CUPED's variance reduction;
- the sample-ratio check: the injected mismatch flagged, and how often clean experiments are;
- with `--data-dir` (after `make run`): the pipeline's own decisions on the default sample.

    python -m bench.experiments [--seeds 200] [--splits 4] [--data-dir data]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from ingestion.paths import DataLayout
from ingestion.sample_data import SIZES
from ingestion.sample_data.generator import Simulation, simulate, streams_for
from ml.experiments import analysis, metrics, stats
from ml.experiments.analysis import Inputs
from semantic import snapshots

MANIFEST = Path(__file__).resolve().parents[1] / "dbt_project" / "target" / "semantic_manifest.json"
# Four tenants of 1,500 users on average, one experiment each (500 to 2,000 users exposed): three with
# true lifts (+15 %, +30 %, -10 %), the fourth without a lift but with its sample-ratio mismatch.
BENCH_SIZE = replace(SIZES["default"], name="experiments", days=60, tenants=4, users=6000, anomalies=0,
                     experiments=4, sample_ratio_mismatches=1)
WINDOW_DAYS = 14
PRIMARY = "experiment_orders_per_user"
LIFT_METRICS = (PRIMARY, "experiment_revenue_per_user")  # the metrics whose true lift the generator sets
SECONDARY = ("experiment_revenue_per_user", "experiment_conversion_rate", "experiment_average_order_value")
ALPHA = 0.05


def _day(ts: pd.Series) -> pd.Series:
    return ts.dt.normalize()


def marts_in_memory(simulation: Simulation, window_days: int = WINDOW_DAYS) -> tuple[pd.DataFrame, ...]:
    """Exposures, outcomes per user and daily outcomes of a simulated sample, counted as the marts
    count them (fct_experiment_exposures, fct_experiment_outcomes, fct_experiment_outcomes_daily),
    for experiments declared without dates, control and treatment, `window_days` windows."""
    events, world = simulation.activity.events, simulation.world
    user_ids, tenant_ids = world.users["user_id"].to_numpy(), world.tenants["tenant_id"].to_numpy()
    names = np.array([e.experiment_id for e in simulation.experiments])
    at = pd.to_datetime(events["ts"], unit="s")

    assigned = events["event_type"] == "experiment_assigned"
    exposures = pd.DataFrame({
        "experiment_id": names[events.loc[assigned, "experiment"]], "user": events.loc[assigned, "user"],
        "user_id": user_ids[events.loc[assigned, "user"]],
        "tenant_id": tenant_ids[events.loc[assigned, "tenant"]],
        "variant": np.where(events.loc[assigned, "logged_treated"], "treatment", "control"),
        "exposed_at": at[assigned]}).sort_values("exposed_at", kind="stable")
    exposures = exposures.drop_duplicates(["experiment_id", "user_id"]).reset_index(drop=True)
    ends = _day(exposures.groupby("experiment_id")["exposed_at"].transform("max")) + pd.Timedelta(days=1)
    exposures["window_end_at"] = np.minimum(exposures["exposed_at"] + pd.Timedelta(days=window_days), ends)
    exposures["pre_start_at"] = exposures["exposed_at"] - pd.Timedelta(days=window_days)
    exposures["experiment_user_key"] = exposures["experiment_id"] + "|" + exposures["user_id"]
    exposures["exposure_date"] = _day(exposures["exposed_at"])

    orders = simulation.activity.orders
    facts = [pd.DataFrame({
        "user_id": orders["user_id"], "at": orders["created_at"], "ended": orders["created_at"],
        "orders": (orders["status"] != "cancelled").astype(float),
        "revenue": np.where(orders["status"] == "completed", orders["total_amount"], 0.0),
        "completed_orders": (orders["status"] == "completed").astype(float)})]
    exposed_users = np.isin(events["user"].to_numpy(), exposures["user"].unique())
    signed_in = events[exposed_users].assign(at=at[exposed_users],
                                             checkout=events.loc[exposed_users, "event_type"] == "checkout_completed")
    sessions = signed_in.groupby("session").agg(user=("user", "first"), at=("at", "min"), ended=("at", "max"),
                                                converted=("checkout", "max"))
    facts.append(pd.DataFrame({"user_id": user_ids[sessions["user"]], "at": sessions["at"], "ended": sessions["ended"],
                               "sessions": 1.0, "converted_sessions": sessions["converted"].astype(float)}))
    facts.append(pd.DataFrame({"user_id": user_ids[signed_in["user"]], "at": signed_in["at"], "ended": signed_in["at"],
                               "events": 1.0}))
    joined = pd.concat(facts, ignore_index=True).merge(exposures, on="user_id")
    joined = joined[(joined["at"] >= joined["pre_start_at"]) & (joined["at"] < joined["window_end_at"])]
    joined["is_pre_exposure"] = joined["ended"] < joined["exposed_at"]
    # a session going on at exposure counts on the exposure day
    after = joined["is_pre_exposure"] | (joined["at"] >= joined["exposed_at"])
    joined["activity_date"] = _day(joined["at"].where(after, joined["exposed_at"]))
    converted = events[events["event_type"] == "experiment_converted"]
    conversions = pd.DataFrame({"experiment_id": names[converted["experiment"]],
                                "user_id": user_ids[converted["user"]], "at": at[converted.index]}).merge(
        exposures, on=["experiment_id", "user_id"])
    conversions = conversions[(conversions["at"] >= conversions["exposed_at"])
                              & (conversions["at"] < conversions["window_end_at"])]
    conversions = conversions.sort_values("at").drop_duplicates("experiment_user_key")
    conversions = conversions.assign(converted=1.0, is_pre_exposure=False, activity_date=_day(conversions["at"]))
    columns = list(analysis.OUTCOME_COLUMNS)
    counted = pd.concat([joined, conversions], ignore_index=True)
    counted[columns] = counted.reindex(columns=columns).fillna(0.0)
    daily = counted.groupby(["experiment_user_key", "activity_date", "is_pre_exposure"], as_index=False)[columns].sum()
    post = daily[~daily["is_pre_exposure"]].groupby("experiment_user_key")[columns].sum()
    pre = daily[daily["is_pre_exposure"]].groupby("experiment_user_key")[columns].sum().add_prefix("pre_")
    outcomes = (exposures[["experiment_user_key"]].join(post, on="experiment_user_key")
                .join(pre, on="experiment_user_key").fillna(0.0))
    outcomes["pre_converted"] = (outcomes["pre_orders"] > 0).astype(float)
    exposures = exposures.assign(exclusion_reason=None, converted_before_exposure=False)
    return exposures, outcomes, daily[~daily["is_pre_exposure"]].drop(columns="is_pre_exposure")


def registry(simulation: Simulation) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The simulated experiments declared as the registry would declare them."""
    tenant_ids = simulation.world.tenants["tenant_id"].to_numpy()
    experiments = pd.DataFrame([{
        "experiment_id": e.experiment_id, "tenant_id": tenant_ids[e.tenant], "experiment_name": e.experiment_id,
        "primary_metric": PRIMARY, "secondary_metrics": ",".join(SECONDARY), "minimum_detectable_effect": 0.1,
        "alpha": ALPHA, "power": 0.8, "conversion_window_days": WINDOW_DAYS, "control_variant": "control",
    } for e in simulation.experiments])
    variants = pd.DataFrame([{"experiment_id": e.experiment_id, "variant": v, "traffic_share": 0.5}
                             for e in simulation.experiments for v in ("control", "treatment")])
    return experiments, variants


def inputs_of(simulation: Simulation) -> Inputs:
    experiments, variants = registry(simulation)
    exposures, outcomes, daily = marts_in_memory(simulation)
    last_day = (pd.Timestamp(simulation.activity.events["ts"].max(), unit="s")).date()
    return Inputs(experiments, variants, exposures, outcomes, daily, last_day)


def aa_tests(inputs: Inputs, definitions: dict[str, metrics.Metric], rng: np.random.Generator,
             splits: int, seed: int) -> list[dict]:
    """Each experiment's control users split at random into two arms, `splits` times: A/A tests with
    their real exposure days and outcomes. Daily looks start, as the analysis' do, once both arms have
    the minimum sample (`stats.MIN_USERS_PER_VARIANT`)."""
    found = []
    chosen = [definitions[m] for m in LIFT_METRICS]
    for experiment in inputs.experiments.to_dict("records"):
        design = analysis.design_of(experiment, inputs.variants, definitions)
        design = replace(design, primary=chosen[0], secondary=tuple(chosen[1:]))
        mine = inputs.exposures[(inputs.exposures["experiment_id"] == experiment["experiment_id"])
                                & (inputs.exposures["variant"] == "control")]
        for split in range(splits):
            arms = mine.assign(variant=np.where(rng.random(len(mine)) < 0.5, "control", "treatment"))
            seen = analysis.looks(design, arms, inputs.outcomes, inputs.daily, inputs.last_day)
            srm = stats.sample_ratio_mismatch(seen.moments.n.T, [0.5, 0.5])
            looked = seen.moments.n.min(axis=0) >= stats.MIN_USERS_PER_VARIANT
            for metric in chosen:
                r = analysis.compare_metric(seen.moments, metric, "primary", 1, ALPHA, ALPHA, stats.SEQUENTIAL_TUNING)
                cuped = r.adjusted or r.plain
                found.append({
                    "split": f"{seed}/{experiment['experiment_id']}/{split}", "metric": metric.name,
                    "false_positive": r.plain.p_value[-1] < ALPHA,
                    "covered": _holds(r.plain, 0.0),
                    "covered_delta": bool(abs(r.plain.relative[-1]) <= stats_t(r.plain) * r.plain.relative_se[-1]),
                    "false_positive_cuped": cuped.p_value[-1] < ALPHA,
                    "covered_cuped": _holds(cuped, 0.0),
                    "looked": bool(looked.any()),
                    "naive_daily_false_positive": bool((r.plain.p_value[looked] < ALPHA).any()),
                    "sequential_daily_false_positive": bool(((r.sequential[0] > 0) | (r.sequential[1] < 0)).any()),
                    "srm_flagged": bool(srm[-1] < stats.SRM_THRESHOLD)})
    return found


def _holds(comparison: stats.Comparison, lift: float) -> bool:
    """The last day's lift interval holds `lift` (an unbounded one, nan, holds every lift)."""
    lower, upper = comparison.relative_lower[-1], comparison.relative_upper[-1]
    return bool(np.isnan(lower) or lower <= lift <= upper)


def stats_t(comparison: stats.Comparison) -> float:
    """The Welch t quantile of the last day's 95 % interval."""
    return float(scipy_stats.t.ppf(1 - ALPHA / 2, comparison.df[-1]))


def true_lift_results(simulation: Simulation, inputs: Inputs, result: analysis.Analysis) -> list[dict]:
    """Per experiment and lift metric: the final intervals against the generator's true lift."""
    rows = []
    last = result.results[result.results["analysis_date"] == result.results.groupby("experiment_id")[
        "analysis_date"].transform("max")]
    for experiment in simulation.experiments:
        decision = result.decisions.set_index("experiment_id").loc[experiment.experiment_id]
        for metric in LIFT_METRICS:
            row = last[(last["experiment_id"] == experiment.experiment_id) & (last["metric"] == metric)
                       & ~last["is_control"].astype(bool)]
            daily = result.results[(result.results["experiment_id"] == experiment.experiment_id)
                                   & (result.results["metric"] == metric) & ~result.results["is_control"].astype(bool)]
            r = row.iloc[0]
            truth = experiment.lift
            rows.append({
                "experiment": experiment.experiment_id, "metric": metric, "true_lift": truth,
                "mismatched": experiment.treatment_logged_as_control > 0,
                "srm_flagged": bool(decision["srm_detected"]),
                "covered": bool(pd.isna(r["relative_lower"]) or r["relative_lower"] <= truth <= r["relative_upper"]),
                "covered_cuped": bool(pd.isna(r["cuped_relative_lower"])
                                      or r["cuped_relative_lower"] <= truth <= r["cuped_relative_upper"]),
                # on every day the sequence is drawn (from the minimum sample on)
                "sequence_covered_every_day": bool((daily["sequential_lower"].isna() | (
                    (daily["sequential_lower"] <= truth) & (truth <= daily["sequential_upper"]))).all()),
                "variance_reduction": r["variance_reduction"]})
    return rows


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def report_aa(aa: pd.DataFrame) -> list[bool]:
    tests = aa["split"].nunique()
    looked = aa.drop_duplicates("split")["looked"].mean()
    print(f"\nA/A tests: {tests:,} random splits of control groups (alpha 0.05). Fixed horizon: one look on the last "
          f"day. Daily: a look every day from {stats.MIN_USERS_PER_VARIANT} users per arm ({pct(looked)} of the tests "
          "get there)")
    print(f"{'metric':30} {'FPR':>7} {'coverage':>9} {'FPR CUPED':>10} {'cov. CUPED':>11} {'cov. delta':>11} "
          f"{'daily, fixed-horizon test':>26} {'daily, always-valid':>20}")
    fixed, daily = [], []
    for metric, g in aa.groupby("metric", sort=False):
        f = [g[c].mean() for c in ("false_positive", "covered", "false_positive_cuped", "covered_cuped",
                                   "naive_daily_false_positive", "sequential_daily_false_positive", "covered_delta")]
        print(f"{metric:30} {pct(f[0]):>7} {pct(f[1]):>9} {pct(f[2]):>10} {pct(f[3]):>11} {pct(f[6]):>11} "
              f"{pct(f[4]):>26} {pct(f[5]):>20}")
        fixed += [abs(f[0] - 0.05) <= 0.01, abs(f[1] - 0.95) <= 0.01, abs(f[2] - 0.05) <= 0.01,
                  abs(f[3] - 0.95) <= 0.01]
        daily.append(f[5] < 0.05)
    print(f"targets: fixed-horizon FPR 5 +- 1 % and coverage of the lift's 95 % interval (Fieller) 95 +- 1 %, with "
          f"and without CUPED: {verdict(all(fixed))}; daily looks at the always-valid sequence < 5 %: "
          f"{verdict(all(daily))}. Baselines: the delta-method interval of the lift (cov. delta), daily looks at "
          "the fixed-horizon test")
    srm = aa.drop_duplicates("split")["srm_flagged"].mean()
    print(f"sample-ratio check on the A/A splits (50/50 by construction): {pct(srm)} flagged")
    return fixed + daily


def report_lifts(lifts: pd.DataFrame) -> list[bool]:
    clean = lifts[~lifts["mismatched"]]
    print(f"\nTrue lifts: {clean['experiment'].nunique()} experiments with a lift in each of "
          f"{clean['seed'].nunique()} samples; the last day's 95 % intervals against the generator's lift")
    print(f"{'metric':30} {'lift':>6} {'n':>5} {'interval':>9} {'CUPED':>8} {'always-valid, every day':>24}")
    for (metric, lift), g in clean.groupby(["metric", "true_lift"], sort=False):
        print(f"{metric:30} {lift:>+6.0%} {len(g):>5} {pct(g['covered'].mean()):>9} "
              f"{pct(g['covered_cuped'].mean()):>8} {pct(g['sequence_covered_every_day'].mean()):>24}")
    overall = [clean["covered"].mean(), clean["covered_cuped"].mean(), clean["sequence_covered_every_day"].mean()]
    print(f"{'all':30} {'':>6} {len(clean):>5} {pct(overall[0]):>9} {pct(overall[1]):>8} {pct(overall[2]):>24}")
    tolerance = max(0.01, 2 * np.sqrt(0.95 * 0.05 / len(clean)))
    ok = [abs(overall[0] - 0.95) <= tolerance, abs(overall[1] - 0.95) <= tolerance, overall[2] >= 0.95]
    print(f"targets: coverage at the nominal 95 % (+- {pct(tolerance)}: 1 point, or two standard errors of "
          f"{len(clean)} intervals): {verdict(ok[0] and ok[1])}; the always-valid sequence on every day at once, "
          f"at least 95 %: {verdict(ok[2])}")
    reduction = clean.dropna(subset=["variance_reduction"]).groupby("metric", sort=False)["variance_reduction"]
    print("CUPED variance reduction (each user's value of the same metric over the 14 days before exposure): "
          + "; ".join(f"{m} median {pct(s.median())}, mean {pct(s.mean())}, best {pct(s.max())}" for m, s in reduction))
    return ok


def report_srm(lifts: pd.DataFrame) -> list[bool]:
    per_experiment = lifts.drop_duplicates(["experiment", "seed"])
    injected, clean = per_experiment[per_experiment["mismatched"]], per_experiment[~per_experiment["mismatched"]]
    print(f"\nSample-ratio mismatch (chi-square, flagged at p < {stats.SRM_THRESHOLD}): the injected one flagged "
          f"in {injected['srm_flagged'].sum()}/{len(injected)} samples; clean experiments flagged "
          f"{clean['srm_flagged'].sum()}/{len(clean)}")
    return [bool(injected["srm_flagged"].all()), clean["srm_flagged"].mean() <= 0.01]


def report_pipeline(data_dir: Path) -> list[bool]:
    """The decisions the pipeline published for the sample in `data_dir`, against its ground truth."""
    layout = DataLayout(data_dir)
    current = snapshots.current(data_dir / "published")
    if current is None or not layout.ground_truth.exists():
        print(f"\n{data_dir}: no published sample (run `make run` first); skipped")
        return []
    truth = {e["experiment_id"]: e for e in json.loads(layout.ground_truth.read_text())["experiments"]}
    conn, _ = snapshots.connect_current(data_dir / "published")
    with conn:
        decided = conn.execute(f"select experiment_id, status, srm_p_value, decision from "
                               f"{snapshots.CATALOG}.marts.fct_experiment_decisions order by 1").fetchall()
        lifts = dict(((e, m), (lo, hi)) for e, m, lo, hi in conn.execute(
            f"select experiment_id, metric, relative_lower, relative_upper from {snapshots.CATALOG}.marts."
            f"fct_experiment_results where not is_control").fetchall())
    print(f"\nThe pipeline's decisions on the published sample in {data_dir} (data version {current.version}):")
    checks = []
    for eid, status, srm, decision in decided:
        t = truth.get(eid)
        if t is None:
            print(f"  {eid}: not in the sample's ground truth; {status}")
            continue
        lo, hi = lifts.get((eid, PRIMARY), (None, None))
        injected = t.get("sample_ratio_mismatch") is not None
        covered = lo is not None and lo <= t["true_lift"] <= hi
        print(f"  {eid}: true lift {t['true_lift']:+.0%}, {'mismatch injected' if injected else 'no mismatch'}; "
              f"{status}, SRM p = {srm:.2g}, orders per user 95 % CI {lo:+.1%} to {hi:+.1%} "
              f"({'covers' if covered else 'misses'} the truth)\n    {decision}")
        checks.append((status == "sample_ratio_mismatch") == injected)
    print(f"  the injected mismatch, and only it, flagged: {verdict(all(checks))}")
    return checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=200, help="simulated samples (each has four experiments)")
    parser.add_argument("--splits", type=int, default=4, help="A/A splits of each experiment's control group")
    parser.add_argument("--data-dir", type=Path, help="also report the pipeline's decisions on this sample")
    args = parser.parse_args()
    gc.freeze()  # statsmodels' Holm adjustment collects garbage on every call: not the imported modules'
    definitions = metrics.load(MANIFEST, {*analysis.OUTCOME_COLUMNS, *(f"pre_{c}" for c in analysis.OUTCOME_COLUMNS)})
    started = time.perf_counter()
    aa, lifts = [], []
    for seed in range(args.seeds):
        simulation = simulate(BENCH_SIZE, streams_for(seed))
        inputs = inputs_of(simulation)
        result = analysis.analyze(inputs, definitions)
        lifts += [{**row, "seed": seed} for row in true_lift_results(simulation, inputs, result)]
        aa += aa_tests(inputs, definitions, np.random.default_rng(seed), args.splits, seed)
    print(f"bench.experiments: {args.seeds} simulated samples of {BENCH_SIZE.users:,} users over {BENCH_SIZE.tenants} "
          f"tenants and {BENCH_SIZE.days} days, {BENCH_SIZE.experiments} experiments each, "
          f"{time.perf_counter() - started:.0f} s")
    checks = report_aa(pd.DataFrame(aa)) + report_lifts(pd.DataFrame(lifts)) + report_srm(pd.DataFrame(lifts))
    if args.data_dir:
        checks += report_pipeline(args.data_dir)
    print(f"\n{sum(checks)}/{len(checks)} targets met")
    return 0 if all(checks) else 1


if __name__ == "__main__":
    sys.exit(main())
