"""The decision sentence of an experiment, as a data scientist would write it, and its status.

The decision reads the primary metric's always-valid confidence sequence: it holds at every look,
so the sentence may be read, and acted on, any day. Before it, the checks that make any lift
meaningless: an undeclarable design, no exposures, a variant with no users, a sample-ratio
mismatch, no outcomes at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ml.experiments.stats import MIN_USERS_PER_VARIANT, SRM_THRESHOLD

if TYPE_CHECKING:
    from ml.experiments.analysis import Design, MetricResult

# The statuses, from the one that most needs attention (used to rank A/B/n treatments).
STATUSES = ("invalid_design", "no_data", "one_variant_exposed", "sample_ratio_mismatch", "no_outcomes",
            "keep_control", "ship", "not_enough_data", "no_detectable_effect")


def join(notes: list[str]) -> str | None:
    return "; ".join(notes).capitalize() + "." if notes else None


def _verdict(status: str, sentence: str) -> dict:
    return {"status": status, "decision": sentence}


def invalid(design: Design) -> dict:
    return _verdict("invalid_design", "Cannot analyse this experiment: " + "; ".join(design.problems) + ".")


def no_data(design: Design, exposures: int) -> dict:
    if exposures:
        return _verdict("no_data", f"No analysable exposures yet: all {exposures:,} users assigned to "
                                   f"{design.experiment_id} are left out (see the notes).")
    return _verdict("no_data", f"No data yet: no experiment_assigned events for {design.experiment_id} in tenant "
                               f"{design.tenant_id}; check that the app logs them with this experiment id.")


def _pct(x: float) -> str:
    return f"{x:+.1%}".replace("-", "\u2212")


def _interval(lower: float, upper: float, alpha: float) -> str:
    if np.isnan(lower):
        return f"the always-valid interval needs {MIN_USERS_PER_VARIANT} users per variant"
    return f"always-valid {1 - alpha:.0%} interval {_pct(lower)} to {_pct(upper)}"


def _split(design: Design, users: np.ndarray) -> str:
    total = users.sum()
    observed = "/".join(f"{n / total:.0%}" for n in users)
    declared = "/".join(f"{s:.0%}" for s in design.shares)
    return f"{observed} ({', '.join(design.variants)}) against the declared {declared}"


def treatment_verdict(design: Design, result: MetricResult, needed: float, users: np.ndarray) -> dict:
    """One treatment's verdict on the primary metric, on the last day."""
    label = result.metric.label.lower()
    treatment = design.variants[result.treatment]
    means = np.nan_to_num([result.control.mean[-1], result.treated.mean[-1]])
    if not means.any():
        return _verdict("no_outcomes", f"No outcomes yet: {label} is 0 in every variant "
                                       f"({users.sum():,} users analysed); wait for outcomes before reading a lift.")
    lower, upper = max(result.sequential[0][-1], -1.0), result.sequential[1][-1]  # never below -100 %
    relative = result.decisive.relative[-1]
    interval = _interval(lower, upper, design.alpha)
    if lower > 0:
        return _verdict("ship", f"Ship {treatment}: {label} {_pct(relative)} ({interval}, "
                                f"chance to win {result.chance_to_win[-1]:.0%}).")
    if upper < 0:
        return _verdict("keep_control", f"Keep {design.control}: {treatment} changes {label} by {_pct(relative)} "
                                        f"({interval}).")
    have = int(min(users[0], users[result.treatment]))
    mde = design.minimum_detectable_effect
    if not np.isfinite(needed):
        return _verdict("not_enough_data", f"Not enough data yet: {label} does not vary enough across "
                                           f"{have:,} users per variant to size the sample; keep it running.")
    if have < needed:
        more = int(np.ceil(needed - have))
        return _verdict("not_enough_data", f"Not enough data yet: about {more:,} more users per variant needed to "
                                           f"detect a {mde:.0%} change in {label} with {design.power:.0%} power "
                                           f"(so far {_pct(relative)}; {interval}).")
    return _verdict("no_detectable_effect", f"No effect detected: after {have:,} users per variant, enough for a "
                                            f"{mde:.0%} change, {label} is {_pct(relative)} ({interval}); keep "
                                            f"{design.control} unless a secondary metric says otherwise.")


def decide(design: Design, users: np.ndarray, srm_p_value: float, primary: list[tuple[MetricResult, float]]) -> dict:
    """The experiment's verdict on its last day (`users` per variant, control first)."""
    if (users > 0).sum() < len(users):
        missing = [v for v, n in zip(design.variants, users, strict=True) if n == 0]
        return _verdict("one_variant_exposed", f"Nothing to compare yet: {', '.join(missing)} "
                                               f"{'has' if len(missing) == 1 else 'have'} no analysed users "
                                               f"({_split(design, users)}); check that every variant's "
                                               "assignments are logged.")
    if srm_p_value < SRM_THRESHOLD:
        return _verdict("sample_ratio_mismatch", f"Do not trust these results: sample ratio mismatch "
                                                 f"(p = {srm_p_value:.1g}), {_split(design, users)}. Find why users "
                                                 "are lost or mislabelled before reading any lift.")
    verdicts = [treatment_verdict(design, result, needed, users) for result, needed in primary]
    if len(verdicts) == 1:
        return verdicts[0]
    worst = min(verdicts, key=lambda v: STATUSES.index(v["status"]))
    return _verdict(worst["status"], " ".join(f"{design.variants[r.treatment]}: {v['decision']}"
                                              for (r, _), v in zip(primary, verdicts, strict=True)))
