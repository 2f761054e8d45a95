"""The experiment marts on the tiny sample, built once for the session (`built`): they count what the
generator simulated, so that the benchmark, which counts other seeds' samples in memory the same way
(bench/experiments.py), grades the analysis on the marts' numbers; and the analysis reads them."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pytest

from bench.experiments import marts_in_memory
from ingestion.sample_data import SIZES
from ingestion.sample_data.generator import simulate, streams_for
from ml.experiments import analysis, metrics
from orchestration.environment import SEMANTIC_MANIFEST


@pytest.fixture(scope="module")
def marts(built) -> analysis.Inputs:
    layout, _ = built
    with duckdb.connect(str(layout.warehouse), read_only=True) as conn:
        return analysis.read(conn)


def test_outcomes_counted_in_memory_are_the_marts(built, marts):
    layout, _ = built
    truth = json.loads(layout.ground_truth.read_text())
    size = replace(SIZES["tiny"], end_date=date.fromisoformat(truth["size"]["end_date"]))
    exposures, outcomes, daily = marts_in_memory(simulate(size, streams_for(truth["seed"])))
    key = "experiment_user_key"
    got = marts.exposures.sort_values(key).reset_index(drop=True)
    assert len(got) > 50 and got["exclusion_reason"].isna().all()
    expected = exposures.sort_values(key).reset_index(drop=True)
    for column in ("experiment_user_key", "variant", "exposed_at", "window_end_at"):
        assert got[column].tolist() == expected[column].tolist(), column
    columns = [c for c in marts.outcomes.columns if c != key]
    pd.testing.assert_frame_equal(marts.outcomes.sort_values(key).reset_index(drop=True)[[key, *columns]],
                                  outcomes.sort_values(key).reset_index(drop=True)[[key, *columns]],
                                  check_dtype=False, atol=0.005)
    day_key = [key, "activity_date"]
    got_daily = marts.daily.assign(activity_date=pd.to_datetime(marts.daily["activity_date"]))
    pd.testing.assert_frame_equal(got_daily.sort_values(day_key).reset_index(drop=True),
                                  daily.sort_values(day_key).reset_index(drop=True)[got_daily.columns],
                                  check_dtype=False, atol=0.005)
    assert marts.outcomes["orders"].sum() > 0 and (marts.outcomes["pre_sessions"] > 0).any()


def test_the_analysis_reads_the_marts_and_decides_for_every_declared_experiment(marts):
    definitions = metrics.load(SEMANTIC_MANIFEST, set(marts.outcomes.columns))
    result = analysis.analyze(marts, definitions)
    decided = result.decisions.set_index("experiment_id")
    assert decided.loc["exp_01", "status"] == "not_enough_data"
    assert decided.loc["exp_01", "users"] == len(marts.exposures)
    # the registry declares the default sample's three experiments; the tiny sample runs only the first
    assert list(decided.loc[["exp_02", "exp_03"], "status"]) == ["no_data", "no_data"]
    last = result.results[result.results["analysis_date"] == result.results["analysis_date"].max()]
    control = last[last["is_control"] & (last["metric"] == "experiment_orders_per_user")]
    analysed = marts.outcomes.merge(marts.exposures, on="experiment_user_key")
    assert control["mean"].iloc[0] == pytest.approx(analysed.loc[analysed["variant"] == "control", "orders"].mean())
    assert np.isfinite(last.loc[~last["is_control"], "relative_lift"]).all()
