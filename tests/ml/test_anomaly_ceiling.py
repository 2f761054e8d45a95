"""The anomaly ceiling: the best precision and recall an oracle reaches on a sample (bench/anomaly_ceiling.py)."""

from __future__ import annotations

import json

import duckdb
import pandas as pd

from bench.anomaly_ceiling import Ceiling, ceiling, counted_as_the_mart
from ingestion.sample_data.generator import simulate, streams_for
from ml.series import read_metrics_daily
from tests.conftest import TINY


def test_the_frontier_counts_the_granted_anomalies_and_every_ordinary_day_ranked_above_a_find():
    ranked = pd.DataFrame({"injected": [True, False, False, True, False]})
    result = Ceiling(ranked, others=2, injected=4)
    points = result.frontier()
    assert points[["flagged", "found"]].values.tolist() == [[3, 3], [6, 4]]
    assert points["precision"].tolist() == [1.0, 4 / 6] and points["recall"].tolist() == [0.75, 1.0]
    assert not result.reaches(0.9) and result.reaches(0.75)


def _mart_orders(layout) -> pd.DataFrame:
    with duckdb.connect(str(layout.warehouse), read_only=True) as conn:
        return read_metrics_daily(conn, metrics=("orders",))


def test_orders_counted_in_memory_are_the_marts(built):
    """The other seeds' samples exist only in memory, so the benchmark counts their orders itself:
    it must count them as `metrics_daily` does, or it grades the oracle on other numbers. (The tiny
    sample has no cancelled orders, so this checks the tenant and UTC day, not the cancelled filter.)"""
    layout, _ = built
    truth = json.loads(layout.ground_truth.read_text())
    counted = counted_as_the_mart(simulate(TINY, streams_for(truth["seed"])))
    mart = _mart_orders(layout)
    mart = mart[mart["orders"] > 0].astype({"orders": int})
    key = ["tenant_id", "date_day"]
    pd.testing.assert_frame_equal(counted.sort_values(key).reset_index(drop=True)[[*key, "orders"]],
                                  mart.sort_values(key).reset_index(drop=True)[[*key, "orders"]],
                                  check_dtype=False)


def test_the_oracle_ranks_the_samples_days_and_finds_its_orders_anomaly(built):
    layout, _ = built
    truth = json.loads(layout.ground_truth.read_text())
    result = ceiling(truth, _mart_orders(layout))
    orders = [a for a in truth["anomalies"] if a["metric"] == "orders"]
    assert (result.others, result.injected) == (len(truth["anomalies"]) - len(orders), len(truth["anomalies"]))
    found = result.ranked[result.ranked["injected"]]
    assert [(r.tenant_id, r.date_day.date().isoformat()) for r in found.itertuples()] == [
        (a["tenant_id"], a["date"]) for a in orders]
    holidays = {pd.Timestamp(d) for d in truth["holidays"]}
    assert not result.ranked["date_day"].isin(holidays).any()
    assert result.frontier()["recall"].iloc[-1] == 1.0
