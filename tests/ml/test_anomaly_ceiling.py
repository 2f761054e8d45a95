"""The anomaly ceiling: the best precision and recall an oracle reaches on a sample (bench/anomaly_ceiling.py)."""

from __future__ import annotations

import json

import pandas as pd

from bench.anomaly_ceiling import Ceiling, ceiling, counted_as_the_mart
from ingestion.sample_data import SIZES
from ingestion.sample_data.generator import simulate, streams_for


def test_the_frontier_counts_the_granted_anomalies_and_every_ordinary_day_ranked_above_a_find():
    ranked = pd.DataFrame({"injected": [True, False, False, True, False]})
    result = Ceiling(ranked, others=2, injected=4)
    points = result.frontier()
    assert points[["flagged", "found"]].values.tolist() == [[3, 3], [6, 4]]
    assert points["precision"].tolist() == [1.0, 4 / 6] and points["recall"].tolist() == [0.75, 1.0]
    assert not result.reaches(0.9) and result.reaches(0.75)


def test_the_oracle_ranks_the_samples_days_and_finds_its_orders_anomaly(tiny_sample):
    truth = json.loads(tiny_sample.ground_truth.read_text())
    simulation = simulate(SIZES["tiny"], streams_for(truth["seed"]))
    result = ceiling(truth, counted_as_the_mart(simulation))
    orders = [a for a in truth["anomalies"] if a["metric"] == "orders"]
    assert (result.others, result.injected) == (len(truth["anomalies"]) - len(orders), len(truth["anomalies"]))
    found = result.ranked[result.ranked["injected"]]
    assert [(r.tenant_id, r.date_day.date().isoformat()) for r in found.itertuples()] == [
        (a["tenant_id"], a["date"]) for a in orders]
    holidays = {pd.Timestamp(d) for d in truth["holidays"]}
    assert not result.ranked["date_day"].isin(holidays).any()
    assert result.frontier()["recall"].iloc[-1] == 1.0
