"""The analysis of synthetic experiments shaped as the marts: every bad input the issue names gets a
status and a sentence that says what is wrong, and the other experiments are still analysed."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests

from ml.experiments import analysis, metrics, stats
from orchestration.environment import SEMANTIC_MANIFEST
from tests.experiments import synthetic


@pytest.fixture(scope="module")
def definitions() -> dict[str, metrics.Metric]:
    columns = {*analysis.OUTCOME_COLUMNS, *(f"pre_{c}" for c in analysis.OUTCOME_COLUMNS)}
    return metrics.load(SEMANTIC_MANIFEST, columns)


def analyze(definitions, experiments, declared, frames) -> analysis.Analysis:
    return analysis.analyze(synthetic.inputs(experiments, declared, frames), definitions)


def decision(result: analysis.Analysis, experiment_id: str = "e1") -> dict:
    return result.decisions.set_index("experiment_id").loc[experiment_id].to_dict()


def test_the_experiment_metrics_come_from_the_semantic_layer(definitions):
    assert definitions["experiment_orders_per_user"] == metrics.Metric(
        "experiment_orders_per_user", "Orders per user", "orders", None, "pre_orders")
    aov = definitions["experiment_average_order_value"]
    assert (aov.numerator, aov.denominator, aov.covariate) == ("revenue", "completed_orders", None)
    manifest = json.loads(SEMANTIC_MANIFEST.read_text())
    missing = r"is not a column of the outcomes mart \(converted, revenue\)"
    with pytest.raises(metrics.MetricDefinitionError, match=missing):
        metrics.experiment_metrics(manifest, {"converted", "revenue"})
    with pytest.raises(metrics.MetricDefinitionError, match="no semantic model 'experiment_outcomes'"):
        metrics.experiment_metrics({"semantic_models": [], "metrics": []}, set())


def test_a_tiny_sample_is_underpowered_and_says_how_many_users_are_needed(definitions):
    frames = synthetic.users(np.random.default_rng(1), {"control": 40, "treatment": 40}, rate=0.05)
    result = analyze(definitions, [synthetic.registry()], synthetic.variants(), frames)
    verdict = decision(result)
    assert verdict["status"] == "not_enough_data"
    more = re.search(r"about ([\d,]+) more users per variant needed", verdict["decision"]).group(1)
    more = int(more.replace(",", ""))
    assert more == int(np.ceil(verdict["users_needed_per_variant"] - 40)) and more > 100
    assert "to detect a 10% change in orders per user with 80% power" in verdict["decision"]
    assert "the always-valid interval needs 100 users per variant" in verdict["decision"]
    assert verdict["users_per_variant"] == "control 40, treatment 40" and not verdict["srm_detected"]


def test_results_hold_every_variant_metric_and_day_with_holm_on_the_last(definitions):
    frames = synthetic.users(np.random.default_rng(2), {"control": 300, "treatment": 300}, lift=0.3, rate=0.1)
    result = analyze(definitions, [synthetic.registry()], synthetic.variants(), frames)
    rows = result.results
    days = rows["analysis_date"].nunique()
    assert len(rows) == days * 2 * 4  # two variants, four metrics
    last = rows[(rows["analysis_date"] == rows["analysis_date"].max()) & ~rows["is_control"]].set_index("metric")
    secondary = last[last["metric_role"] == "secondary"]
    assert secondary["adjusted_p_value"].to_numpy() == pytest.approx(
        multipletests(secondary["p_value"].to_numpy(), method="holm")[1])
    assert last.loc["experiment_orders_per_user", "adjusted_p_value"] == last.loc["experiment_orders_per_user",
                                                                                  "p_value"]
    assert rows.loc[rows["analysis_date"] < rows["analysis_date"].max(), "adjusted_p_value"].isna().all()
    assert rows.loc[rows["is_control"], "relative_lift"].isna().all()
    early = rows[rows["users"] < stats.MIN_USERS_PER_VARIANT]
    assert early["sequential_lower"].isna().all()
    assert np.isfinite(rows.select_dtypes("number").to_numpy(dtype=float)[~np.isnan(
        rows.select_dtypes("number").to_numpy(dtype=float))]).all()


def test_a_clear_winner_ships_and_a_clear_loser_keeps_the_control(definitions):
    frames = synthetic.users(np.random.default_rng(3), {"control": 1500, "treatment": 1500}, lift=0.6, rate=0.1)
    verdict = decision(analyze(definitions, [synthetic.registry()], synthetic.variants(), frames))
    assert verdict["status"] == "ship" and verdict["decision"].startswith("Ship treatment: orders per user +")
    frames = synthetic.users(np.random.default_rng(4), {"control": 1500, "treatment": 1500}, lift=-0.5, rate=0.1)
    verdict = decision(analyze(definitions, [synthetic.registry()], synthetic.variants(), frames))
    assert verdict["status"] == "keep_control" and "Keep control: treatment changes orders per user by \u2212" in \
        verdict["decision"]


def test_an_experiment_with_one_variant_cannot_be_analysed_and_the_others_still_are(definitions):
    one = synthetic.registry(experiment_id="e2", variant_count=1)
    frames = synthetic.users(np.random.default_rng(5), {"control": 50, "treatment": 50})
    declared = synthetic.variants() + synthetic.variants("e2", {"control": 1.0})
    result = analyze(definitions, [synthetic.registry(), one], declared, frames)
    verdict = decision(result, "e2")
    assert verdict["status"] == "invalid_design"
    assert verdict["decision"] == ("Cannot analyse this experiment: e2 declares 1 variant (control): an A/B test "
                                   "needs a control and at least one treatment.")
    assert decision(result)["status"] == "not_enough_data" and set(result.results["experiment_id"]) == {"e1"}


def test_an_experiment_in_the_registry_without_events_has_no_data_yet(definitions):
    frames = synthetic.users(np.random.default_rng(6), {"control": 50, "treatment": 50})
    declared = synthetic.variants() + synthetic.variants("e9")
    result = analyze(definitions, [synthetic.registry(), synthetic.registry(experiment_id="e9", tenant_id="t9")],
                     declared, frames)
    verdict = decision(result, "e9")
    assert verdict["status"] == "no_data" and verdict["users"] == 0 and np.isnan(verdict["srm_p_value"])
    assert verdict["decision"] == ("No data yet: no experiment_assigned events for e9 in tenant t9; check that the "
                                   "app logs them with this experiment id.")


def test_no_outcomes_yet(definitions):
    frames = synthetic.users(np.random.default_rng(7), {"control": 120, "treatment": 120}, rate=0.0)
    verdict = decision(analyze(definitions, [synthetic.registry()], synthetic.variants(), frames))
    assert verdict["status"] == "no_outcomes"
    assert verdict["decision"].startswith("No outcomes yet: orders per user is 0 in every variant (240 users analysed)")


def test_users_in_a_variant_missing_from_the_registry_are_left_out_and_counted(definitions):
    exposures, outcomes, daily = synthetic.users(np.random.default_rng(8), {"control": 60, "treatment": 60,
                                                                            "treatment_b": 7})
    exposures.loc[exposures["variant"] == "treatment_b", "exclusion_reason"] = "undeclared_variant"
    exposures.loc[exposures.index[:3], "exclusion_reason"] = "multiple_variants"
    result = analyze(definitions, [synthetic.registry()], synthetic.variants(), (exposures, outcomes, daily))
    verdict = decision(result)
    assert (verdict["users_excluded_undeclared_variant"], verdict["users_excluded_multiple_variants"]) == (7, 3)
    assert "7 users assigned to a variant the registry does not declare (treatment_b) are left out" in verdict["notes"]
    assert "3 users seen in more than one variant are left out" in verdict["notes"]
    assert verdict["users"] == 117 and set(result.results["variant"]) == {"control", "treatment"}


def test_conversions_logged_before_the_assignment_are_reported(definitions):
    exposures, outcomes, daily = synthetic.users(np.random.default_rng(9), {"control": 60, "treatment": 60})
    exposures.loc[exposures.index[:4], "converted_before_exposure"] = True
    verdict = decision(analyze(definitions, [synthetic.registry()], synthetic.variants(), (exposures, outcomes, daily)))
    assert verdict["conversions_before_exposure"] == 4
    assert "4 users logged a conversion before their assignment; those conversions are not counted" in verdict["notes"]


def test_a_variant_without_users_and_a_sample_ratio_mismatch_are_flagged_before_any_lift(definitions):
    frames = synthetic.users(np.random.default_rng(10), {"control": 80})
    verdict = decision(analyze(definitions, [synthetic.registry()], synthetic.variants(), frames))
    assert verdict["status"] == "one_variant_exposed" and "treatment has no analysed users" in verdict["decision"]
    frames = synthetic.users(np.random.default_rng(11), {"control": 650, "treatment": 350}, lift=0.5)
    verdict = decision(analyze(definitions, [synthetic.registry()], synthetic.variants(), frames))
    assert verdict["status"] == "sample_ratio_mismatch" and verdict["srm_detected"]
    assert verdict["decision"].startswith("Do not trust these results: sample ratio mismatch (p = ")
    assert "65%/35% (control, treatment) against the declared 50%/50%" in verdict["decision"]


def test_undeclared_metrics_are_named(definitions):
    frames = synthetic.users(np.random.default_rng(12), {"control": 50, "treatment": 50})
    bad = synthetic.registry(primary_metric="revenu_per_user", secondary_metrics="experiment_revenue_per_user,aov")
    verdict = decision(analyze(definitions, [bad], synthetic.variants(), frames))
    assert verdict["status"] == "invalid_design"
    assert "primary_metric 'revenu_per_user' is not an experiment metric" in verdict["decision"]
    assert "Secondary metric 'aov' is not an experiment metric and is left out" in verdict["notes"]
    control = synthetic.registry(control_variant="baseline")
    verdict = decision(analyze(definitions, [control], synthetic.variants(), frames))
    assert "control_variant 'baseline' is not one of its variants (control, treatment)" in verdict["decision"]


def test_no_experiment_analysable_still_gives_typed_tables(definitions):
    result = analysis.analyze(synthetic.inputs([synthetic.registry()], synthetic.variants(), (
        pd.DataFrame(columns=["experiment_user_key", "experiment_id", "user_id", "variant", "exposed_at",
                              "exposure_date", "window_end_at", "exclusion_reason", "converted_before_exposure"]),
        pd.DataFrame(columns=["experiment_user_key"]), pd.DataFrame(columns=["experiment_user_key", "activity_date"]))),
        definitions)
    assert result.results.empty and list(result.results.columns) == analysis.RESULT_COLUMNS
    assert decision(result)["status"] == "no_data"
    # typed even when empty: the warehouse table is created from the frame, and the marts cast it
    types = result.results.dtypes
    assert (str(types["analysis_date"]), str(types["is_control"]), str(types["metric"]), str(types["p_value"])) == (
        "datetime64[ns]", "bool", "string", "float64")
    assert str(result.decisions.dtypes["srm_detected"]) == "bool"
