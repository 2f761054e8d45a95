"""Every declared experiment analysed as it stood on each day, from the experiment marts.

For each experiment: is its design analysable, which exposures are left out and why, each
variant's users and metrics on every day, each treatment against the control (Welch, delta
method, CUPED, the always-valid confidence sequence, chance to win, Holm-adjusted p-values for the
secondary metrics), the sample-ratio check, and on the last day the decision a data scientist
would write (`decisions.py`). Nothing here reads the warehouse: `read` does, then hands frames in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from ml.experiments import decisions, stats
from ml.experiments.metrics import Metric
from ml.experiments.moments import DailyMoments, daily_moments

OUTCOME_COLUMNS = ("converted", "orders", "revenue", "completed_orders", "sessions", "converted_sessions", "events")


@dataclass(frozen=True)
class Inputs:
    """What the analysis reads from the marts."""

    experiments: pd.DataFrame  # dim_experiments
    variants: pd.DataFrame  # dim_experiment_variants
    exposures: pd.DataFrame  # fct_experiment_exposures: every exposure, those left out too
    outcomes: pd.DataFrame  # fct_experiment_outcomes: analysed users, with their pre-exposure values
    daily: pd.DataFrame  # fct_experiment_outcomes_daily after exposure
    last_day: date | None  # the last day of data (fct_events)


def _frame(conn, sql: str) -> pd.DataFrame:
    cursor = conn.cursor()
    cursor.execute(sql)
    return pd.DataFrame(cursor.fetchall(), columns=[d[0] for d in cursor.description])


def read(conn, schema: str = "marts") -> Inputs:
    """The marts through a DB-API connection (DuckDB or PostgreSQL)."""
    numbers = ", ".join(f"cast({c} as double precision) as {c}" for c in OUTCOME_COLUMNS)
    covariates = ", ".join(f"cast(pre_{c} as double precision) as pre_{c}" for c in OUTCOME_COLUMNS)
    last_day = _frame(conn, f"select max(event_date) as last_day from {schema}.fct_events")["last_day"].iloc[0]
    return Inputs(
        experiments=_frame(conn, f"select * from {schema}.dim_experiments order by experiment_id"),
        variants=_frame(conn, f"select * from {schema}.dim_experiment_variants order by experiment_variant_key"),
        exposures=_frame(conn, f"select experiment_user_key, experiment_id, user_id, variant, exposed_at, "
                               f"exposure_date, window_end_at, exclusion_reason, converted_before_exposure "
                               f"from {schema}.fct_experiment_exposures"),
        outcomes=_frame(conn, f"select experiment_user_key, {numbers}, {covariates} "
                              f"from {schema}.fct_experiment_outcomes"),
        daily=_frame(conn, f"select experiment_user_key, activity_date, {numbers} "
                           f"from {schema}.fct_experiment_outcomes_daily where not is_pre_exposure"),
        last_day=pd.Timestamp(last_day).date() if last_day is not None and not pd.isna(last_day) else None,
    )


@dataclass(frozen=True)
class Design:
    """An experiment's declaration, as the analysis uses it."""

    experiment_id: str
    tenant_id: str
    name: str
    variants: tuple[str, ...]  # control first
    shares: tuple[float, ...]
    primary: Metric | None
    secondary: tuple[Metric, ...]
    minimum_detectable_effect: float
    alpha: float
    power: float
    problems: tuple[str, ...]  # why it cannot be analysed
    notes: tuple[str, ...]  # what is left out of the analysis

    @property
    def control(self) -> str:
        return self.variants[0]

    @property
    def metrics(self) -> tuple[Metric, ...]:
        return ((self.primary,) if self.primary else ()) + self.secondary


def design_of(experiment: dict, variants: pd.DataFrame, metrics: dict[str, Metric]) -> Design:
    """The declaration checked: a control and at least one treatment, metrics that exist."""
    eid = experiment["experiment_id"]
    declared = variants[variants["experiment_id"] == eid]
    names = declared["variant"].tolist()
    control = experiment["control_variant"]
    problems, notes = [], []
    if len(names) < 2:
        problems.append(f"{eid} declares {len(names)} variant{'s' if len(names) != 1 else ''} "
                        f"({', '.join(names) or 'none'}): an A/B test needs a control and at least one treatment")
    if control not in names:
        problems.append(f"{eid}: control_variant {control!r} is not one of its variants ({', '.join(names)})")
    known = ", ".join(sorted(metrics))
    primary = metrics.get(experiment["primary_metric"])
    if primary is None:
        problems.append(f"{eid}: primary_metric {experiment['primary_metric']!r} is not an experiment metric "
                        f"(the experiment metrics are {known})")
    secondary = []
    listed = experiment.get("secondary_metrics")
    for name in (listed if isinstance(listed, str) else "").split(","):
        if not name.strip() or (primary and name.strip() == primary.name):
            continue
        if name.strip() in metrics:
            secondary.append(metrics[name.strip()])
        else:
            notes.append(f"secondary metric {name.strip()!r} is not an experiment metric and is left out")
    order = [control] + [v for v in names if v != control] if control in names else names
    shares = declared.set_index("variant")["traffic_share"]
    return Design(eid, experiment["tenant_id"], experiment.get("experiment_name") or eid, tuple(order),
                  tuple(float(shares[v]) for v in order), primary, tuple(secondary),
                  float(experiment["minimum_detectable_effect"]), float(experiment["alpha"]),
                  float(experiment["power"]), tuple(problems), tuple(notes))


def exclusion_notes(exposures: pd.DataFrame) -> tuple[dict[str, int], list[str]]:
    """Counts of exposures left out (by reason) and of conversions logged before exposure, as sentences."""
    counts = {reason: int((exposures["exclusion_reason"] == reason).sum())
              for reason in ("multiple_variants", "undeclared_variant", "outside_dates")}
    counts["converted_before_exposure"] = int(exposures["converted_before_exposure"].fillna(False).astype(bool).sum())
    notes = []
    if counts["multiple_variants"]:
        notes.append(f"{counts['multiple_variants']:,} users seen in more than one variant are left out")
    if counts["undeclared_variant"]:
        undeclared = exposures["exclusion_reason"] == "undeclared_variant"
        names = sorted(exposures.loc[undeclared, "variant"].astype(str).unique())
        notes.append(f"{counts['undeclared_variant']:,} users assigned to a variant the registry does not declare "
                     f"({', '.join(names)}) are left out")
    if counts["outside_dates"]:
        notes.append(f"{counts['outside_dates']:,} users assigned only outside the declared dates are left out")
    if counts["converted_before_exposure"]:
        notes.append(f"{counts['converted_before_exposure']:,} users logged a conversion before their assignment; "
                     "those conversions are not counted")
    return counts, notes


@dataclass(frozen=True)
class Looks:
    """One experiment's users and their daily moments: what it looked like on each day."""

    days: pd.DatetimeIndex
    moments: DailyMoments  # moments.n: users per variant (first axis) and day


def looks(design: Design, analysed: pd.DataFrame, outcomes: pd.DataFrame, daily: pd.DataFrame,
          last_day: date | None) -> Looks:
    """Daily moments of the metrics' columns for the analysed exposures (their variants all declared)."""
    first = pd.Timestamp(analysed["exposure_date"].min())
    closes = pd.to_datetime(analysed["window_end_at"]).max() - pd.Timedelta(microseconds=1)
    end = closes.normalize() if last_day is None else min(closes.normalize(), pd.Timestamp(last_day))
    days = pd.date_range(first, max(first, end), freq="D")
    position = pd.Series(np.arange(len(analysed)), index=analysed["experiment_user_key"].to_numpy())
    arm = analysed["variant"].map({v: i for i, v in enumerate(design.variants)}).to_numpy()
    exposure_day = (pd.to_datetime(analysed["exposure_date"]) - first).dt.days.to_numpy()
    columns = sorted({c for m in design.metrics for c in (*m.columns, *([m.covariate] if m.covariate else []))})
    covariate_columns = [m.covariate for m in design.metrics if m.covariate]
    covariates = (outcomes.set_index("experiment_user_key").reindex(analysed["experiment_user_key"])
                  [covariate_columns].fillna(0.0).reset_index(drop=True))
    mine = daily[daily["experiment_user_key"].isin(position.index)]
    activity = pd.DataFrame({"user": position[mine["experiment_user_key"]].to_numpy(),
                             "day": (pd.to_datetime(mine["activity_date"]) - first).dt.days.to_numpy()})
    for column in columns:
        if column not in covariate_columns:
            activity[column] = mine[column].to_numpy(dtype=float)
    moments = daily_moments(arm, exposure_day, covariates, activity, columns, len(design.variants), len(days))
    return Looks(days, moments)


def estimate(moments: DailyMoments, metric: Metric, arm: int) -> stats.Estimate:
    n = moments.n[arm]
    y = metric.numerator
    if metric.denominator is None:
        return stats.mean_metric(n, moments.sums[y][arm], moments.product(y, y)[arm])
    d = metric.denominator
    return stats.ratio_metric(n, moments.sums[y][arm], moments.sums[d][arm], moments.product(y, y)[arm],
                              moments.product(d, d)[arm], moments.product(y, d)[arm])


def _covariate_moments(moments: DailyMoments, metric: Metric, arm: int) -> dict[str, np.ndarray]:
    x, y = metric.covariate, metric.numerator
    return {"x": moments.sums[x][arm], "xx": moments.product(x, x)[arm], "xy": moments.product(x, y)[arm]}


@dataclass(frozen=True)
class MetricResult:
    """One treatment against the control on one metric, on every day."""

    metric: Metric
    role: str
    treatment: int
    control: stats.Estimate
    treated: stats.Estimate
    plain: stats.Comparison
    adjusted: stats.Comparison | None  # CUPED
    variance_reduction: np.ndarray | None
    decisive: stats.Comparison  # CUPED where the metric has a covariate, else plain
    decisive_control: stats.Estimate
    sequential: tuple[np.ndarray, np.ndarray]
    chance_to_win: np.ndarray


def compare_metric(moments: DailyMoments, metric: Metric, role: str, treatment: int, alpha: float,
                   sequential_alpha: float, tuning: float) -> MetricResult:
    control, treated = estimate(moments, metric, 0), estimate(moments, metric, treatment)
    plain = stats.compare(control, treated, alpha)
    adjusted, reduction, decisive, decisive_control = None, None, plain, control
    if metric.covariate:
        cuped = stats.cuped(control, treated, {"control": _covariate_moments(moments, metric, 0),
                                               "treatment": _covariate_moments(moments, metric, treatment)})
        adjusted, reduction = stats.compare(cuped.control, cuped.treatment, alpha), cuped.variance_reduction
        decisive, decisive_control = adjusted, cuped.control
    lower, upper = stats.confidence_sequence(decisive.relative, decisive.relative_se,
                                             control.n + treated.n, sequential_alpha, tuning)
    enough = np.minimum(control.n, treated.n) >= stats.MIN_USERS_PER_VARIANT
    sequential = (np.where(enough, lower, np.nan), np.where(enough, upper, np.nan))
    return MetricResult(metric, role, treatment, control, treated, plain, adjusted, reduction, decisive,
                        decisive_control, sequential,
                        stats.chance_to_win(decisive.relative, decisive.relative_se))


def compare_all(design: Design, moments: DailyMoments, tuning: float) -> list[MetricResult]:
    """Every metric of the design, each treatment against the control. The primary metric's confidence
    sequence is at alpha; the secondary ones' at alpha over their number (Bonferroni)."""
    results = []
    secondary_alpha = design.alpha / max(1, len(design.secondary))
    for treatment in range(1, len(design.variants)):
        for metric in design.metrics:
            role = "primary" if metric is design.primary else "secondary"
            results.append(compare_metric(moments, metric, role, treatment, design.alpha,
                                          design.alpha if role == "primary" else secondary_alpha, tuning))
    return results


def holm_adjusted(results: list[MetricResult]) -> dict[int, float]:
    """Per result (by position), on the last day: the Welch p-value with the secondary metrics of each
    treatment Holm-adjusted together; the primary metric's as it is. (Only the last day: statsmodels'
    Holm runs a garbage collection per call, too slow to repeat for every day of every experiment.)"""
    adjusted = {i: float(r.plain.p_value[-1]) for i, r in enumerate(results)}
    for treatment in {r.treatment for r in results}:
        group = [i for i, r in enumerate(results) if r.treatment == treatment and r.role == "secondary"]
        if group:
            fixed = stats.adjust_p_values([adjusted[i] for i in group])
            adjusted.update({i: float(fixed[k]) for k, i in enumerate(group)})
    return adjusted


def result_rows(design: Design, seen: Looks, results: list[MetricResult], needed: dict[int, float]) -> pd.DataFrame:
    """One row per day, variant and metric: the control's rows carry its users and mean only."""
    frames = []
    days = seen.days.date
    adjusted = holm_adjusted(results)
    for metric in design.metrics:
        control = estimate(seen.moments, metric, 0)
        frames.append(pd.DataFrame({
            "analysis_date": days, "variant": design.control, "is_control": True, "metric": metric.name,
            "metric_label": metric.label, "metric_role": "primary" if metric is design.primary else "secondary",
            "users": control.n, "mean": control.mean}))
    for i, r in enumerate(results):
        treated = r.treated
        last = np.zeros(len(days), bool)
        last[-1] = True
        frames.append(pd.DataFrame({
            "analysis_date": days, "variant": design.variants[r.treatment], "is_control": False,
            "metric": r.metric.name, "metric_label": r.metric.label, "metric_role": r.role,
            "users": treated.n, "mean": treated.mean,
            "absolute_lift": r.plain.absolute, "absolute_lower": r.plain.absolute_lower,
            "absolute_upper": r.plain.absolute_upper,
            "relative_lift": r.plain.relative, "relative_lower": r.plain.relative_lower,
            "relative_upper": r.plain.relative_upper, "p_value": r.plain.p_value,
            "cuped_relative_lift": r.adjusted.relative if r.adjusted else np.nan,
            "cuped_relative_lower": r.adjusted.relative_lower if r.adjusted else np.nan,
            "cuped_relative_upper": r.adjusted.relative_upper if r.adjusted else np.nan,
            "variance_reduction": r.variance_reduction if r.variance_reduction is not None else np.nan,
            "adjusted_p_value": np.where(last, adjusted[i], np.nan),
            "sequential_lower": r.sequential[0], "sequential_upper": r.sequential[1],
            "chance_to_win": r.chance_to_win,
            "users_needed_per_variant": np.where(last, needed.get(i, np.nan), np.nan)}))
    rows = pd.concat(frames, ignore_index=True).replace([np.inf, -np.inf], np.nan)
    # the outcomes are counts and revenue, never negative: no variant can lose more than all of it
    for bound in ("relative_lower", "cuped_relative_lower", "sequential_lower"):
        rows[bound] = rows[bound].clip(lower=-1.0)
    rows.insert(0, "tenant_id", design.tenant_id)
    rows.insert(0, "experiment_id", design.experiment_id)
    return rows


def analyze_experiment(design: Design, exposures: pd.DataFrame, outcomes: pd.DataFrame, daily: pd.DataFrame,
                       last_day: date | None, tuning: float = stats.SEQUENTIAL_TUNING
                       ) -> tuple[pd.DataFrame, dict]:
    """One experiment: its daily result rows and its decision (a dict, one row of the decisions table)."""
    counts, notes = exclusion_notes(exposures)
    analysed = exposures[exposures["exclusion_reason"].isna()]
    summary = {"experiment_id": design.experiment_id, "tenant_id": design.tenant_id,
               "experiment_name": design.name, "analysis_date": last_day,
               "primary_metric": design.primary.name if design.primary else None,
               "users": len(analysed), "users_excluded_multiple_variants": counts["multiple_variants"],
               "users_excluded_undeclared_variant": counts["undeclared_variant"],
               "users_excluded_outside_dates": counts["outside_dates"],
               "conversions_before_exposure": counts["converted_before_exposure"],
               "first_exposure_date": pd.Timestamp(analysed["exposure_date"].min()).date() if len(analysed) else None,
               "users_per_variant": None, "srm_p_value": np.nan, "srm_detected": False,
               "users_needed_per_variant": np.nan}
    notes = list(design.notes) + notes
    if design.problems:
        return pd.DataFrame(), {**summary, **decisions.invalid(design), "notes": decisions.join(notes)}
    if analysed.empty:
        return pd.DataFrame(), {**summary, **decisions.no_data(design, len(exposures)), "notes": decisions.join(notes)}
    seen = looks(design, analysed, outcomes, daily, last_day)
    users = seen.moments.n[:, -1].astype(int)
    srm = stats.sample_ratio_mismatch(seen.moments.n.T, design.shares)
    results = compare_all(design, seen.moments, tuning)
    needed = {i: stats.users_needed(_last(r.decisive_control), design.minimum_detectable_effect, design.alpha,
                                    design.power, tuning)
              for i, r in enumerate(results) if r.role == "primary"}
    rows = result_rows(design, seen, results, needed)
    summary.update({
        "analysis_date": seen.days[-1].date(),
        "users_per_variant": ", ".join(f"{v} {n:,}" for v, n in zip(design.variants, users, strict=True)),
        "srm_p_value": float(srm[-1]), "srm_detected": bool(srm[-1] < stats.SRM_THRESHOLD),
        "users_needed_per_variant": max((v for v in needed.values()), default=np.nan)})
    primary = [(r, needed[i]) for i, r in enumerate(results) if r.role == "primary"]
    verdict = decisions.decide(design, users, float(srm[-1]), primary)
    return rows, {**summary, **verdict, "notes": decisions.join(notes)}


def _last(estimate_: stats.Estimate) -> stats.Estimate:
    return stats.Estimate(estimate_.n[-1], estimate_.mean[-1], estimate_.variance[-1])


@dataclass(frozen=True)
class Analysis:
    results: pd.DataFrame  # experiment x variant x metric x day
    decisions: pd.DataFrame  # experiment, as of its last day


def analyze(inputs: Inputs, metrics: dict[str, Metric], tuning: float = stats.SEQUENTIAL_TUNING) -> Analysis:
    frames, verdicts = [], []
    for experiment in inputs.experiments.to_dict("records"):
        design = design_of(experiment, inputs.variants, metrics)
        eid = experiment["experiment_id"]
        exposures = inputs.exposures[inputs.exposures["experiment_id"] == eid]
        rows, verdict = analyze_experiment(design, exposures, inputs.outcomes, inputs.daily, inputs.last_day, tuning)
        frames.append(rows)
        verdicts.append(verdict)
    found = [f for f in frames if not f.empty]
    results = pd.concat(found, ignore_index=True) if found else pd.DataFrame(columns=RESULT_COLUMNS)
    return Analysis(_typed(results.reindex(columns=RESULT_COLUMNS)),
                    _typed(pd.DataFrame(verdicts, columns=DECISION_COLUMNS)))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Each column with its type even when empty, as the warehouse table is created from it:
    dates, flags, text and numbers."""
    types = {}
    for column in frame.columns:
        if column.endswith("_date"):
            types[column] = "datetime64[ns]"
        elif column.startswith("is_") or column == "srm_detected":
            types[column] = bool
        elif column in TEXT_COLUMNS:
            types[column] = "string"
        else:
            types[column] = float
    return frame.astype(types)


RESULT_COLUMNS = [
    "experiment_id", "tenant_id", "analysis_date", "variant", "is_control", "metric", "metric_label", "metric_role",
    "users", "mean", "absolute_lift", "absolute_lower", "absolute_upper", "relative_lift", "relative_lower",
    "relative_upper", "p_value", "adjusted_p_value", "cuped_relative_lift", "cuped_relative_lower",
    "cuped_relative_upper", "variance_reduction", "sequential_lower", "sequential_upper", "chance_to_win",
    "users_needed_per_variant",
]
DECISION_COLUMNS = [
    "experiment_id", "tenant_id", "experiment_name", "analysis_date", "status", "decision", "notes",
    "primary_metric", "first_exposure_date", "users", "users_per_variant", "users_excluded_multiple_variants",
    "users_excluded_undeclared_variant", "users_excluded_outside_dates", "conversions_before_exposure",
    "srm_p_value", "srm_detected", "users_needed_per_variant",
]
TEXT_COLUMNS = {"experiment_id", "tenant_id", "variant", "metric", "metric_label", "metric_role", "experiment_name",
                "status", "decision", "notes", "primary_metric", "users_per_variant"}
