"""The sample generator's experiments: a sample-ratio mismatch mislabels part of the treatment group
and changes nothing else, and the ground truth says so."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from ingestion.sample_data import SIZES
from ingestion.sample_data.activity import MISLABELLED_SHARE
from ingestion.sample_data.generator import simulate, streams_for, truth_of
from tests.conftest import TINY


def test_a_sample_ratio_mismatch_mislabels_part_of_the_treatment_and_nothing_else():
    size = replace(TINY, users=900, experiments=2, sample_ratio_mismatches=1)
    mismatched = simulate(size, streams_for(3))
    clean = simulate(replace(size, sample_ratio_mismatches=0), streams_for(3))
    a, b = mismatched.activity.events, clean.activity.events
    pd.testing.assert_frame_equal(a.drop(columns="logged_treated"), b.drop(columns="logged_treated"))
    assert (b["logged_treated"] == b["treated"]).all()
    changed = a["logged_treated"] != b["logged_treated"]
    assert set(a.loc[changed, "experiment"]) == {1} and a.loc[changed, "treated"].all()
    assigned = a[(a["event_type"] == "experiment_assigned") & (a["experiment"] == 1) & a["treated"]]
    assert abs((~assigned["logged_treated"]).mean() - MISLABELLED_SHARE) < 0.1
    pd.testing.assert_frame_equal(mismatched.activity.orders, clean.activity.orders)

    truth = truth_of(mismatched, size, 3)["experiments"]
    assert [e["sample_ratio_mismatch"] for e in truth] == [None, {"treatment_logged_as_control": MISLABELLED_SHARE}]
    assert all(e["variants"] == {"control": 0.5, "treatment": 0.5} for e in truth)
    assert np.isclose(truth[1]["true_lift"], mismatched.experiments[1].lift)


def test_the_default_sample_injects_its_mismatch_in_the_last_experiment():
    assert SIZES["default"].sample_ratio_mismatches == 1 and SIZES["tiny"].sample_ratio_mismatches == 0
