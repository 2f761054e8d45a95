"""The sample generator: deterministic, realistic, and honest about what it injected."""

from __future__ import annotations

import filecmp
import json
import sqlite3

import numpy as np
import orjson
import pandas as pd
import pytest

from ingestion.events.schema import validate_event
from ingestion.paths import DataLayout
from ingestion.sample_data import SIZES, generate
from ingestion.sample_data.activity import _multipliers, plan_anomalies
from ingestion.sample_data.calendar import holidays_between
from ingestion.sample_data.generator import anomaly_truth, simulate, streams_for
from ingestion.sample_data.world import build_world
from tests.conftest import TINY


def _same_tree(a: DataLayout, b: DataLayout) -> bool:
    for sub in ("landing/events", "landing/marketing", "sample"):
        cmp = filecmp.dircmp(a.root / sub, b.root / sub)
        if cmp.left_only or cmp.right_only or cmp.diff_files:
            return False
        _, mismatch, errors = filecmp.cmpfiles(a.root / sub, b.root / sub, cmp.common_files, shallow=False)
        if mismatch or errors:
            return False
    dumps = []
    for layout in (a, b):
        with sqlite3.connect(layout.app_db) as conn:
            dumps.append(list(conn.iterdump()))
    return dumps[0] == dumps[1]


def test_same_seed_same_bytes(tiny_sample, tmp_path):
    again = DataLayout(tmp_path / "again")
    generate(again, TINY, seed=42)
    assert _same_tree(tiny_sample, again)


def test_other_seed_other_data(tiny_sample, tmp_path):
    other = DataLayout(tmp_path / "other")
    generate(other, TINY, seed=7)
    assert not _same_tree(tiny_sample, other)


def test_ground_truth_describes_the_injections(tiny_sample):
    truth = json.loads(tiny_sample.ground_truth.read_text())
    size = TINY
    assert len(truth["anomalies"]) == size.anomalies
    assert {a["metric"] for a in truth["anomalies"]} <= {"active_users", "orders", "errors"}
    assert all(a["segment"]["dimension"] in {"device", "country"} and a["segment"]["value"]
               for a in truth["anomalies"])
    assert all(size.start_date.isoformat() <= a["date"] <= size.end_date.isoformat() for a in truth["anomalies"])
    assert len(truth["experiments"]) == size.experiments
    assert all("true_lift" in e for e in truth["experiments"])
    events = truth["events"]
    assert events["late_events"] > 0 and events["duplicate_lines"] > 0
    assert sum(events["malformed_lines"].values()) > 0


def test_each_anomaly_moves_only_the_segment_the_truth_records():
    """The injected anomaly's day: the segment of the tenant's users the ground truth names moved by
    its factor (mobile users all gone), the tenant's other users as usual (drivers: ml/drivers.py)."""
    simulation = simulate(TINY, streams_for(42))
    drop = simulation.anomalies[0]
    assert (drop.metric, drop.kind, drop.dimension, drop.value, drop.segment_factor) == (
        "active_users", "drop", "device", "mobile", 0.0)
    sessions = simulation.activity.sessions
    users = simulation.world.users
    signed_in = sessions[(sessions["user"] >= 0) & (sessions["tenant"] == drop.tenant)]
    device = users["device"].to_numpy()[signed_in["user"].to_numpy()]
    signup = simulation.world.user_signup_day[signed_in["user"].to_numpy()]
    that_day = (signed_in["day"] == drop.day).to_numpy()
    # only users signing up that day (active whatever happens) remain in the segment
    assert (that_day & (device == "mobile") & (signup != drop.day)).sum() == 0
    others = [((signed_in["day"] == d).to_numpy() & (device != "mobile")).sum() for d in (drop.day - 7, drop.day)]
    assert others[1] > 0.6 * others[0]


def test_event_files_hold_exactly_what_the_truth_says(tiny_sample):
    """Every line is a valid event except the malformed ones; duplicates repeat an earlier id."""
    truth = json.loads(tiny_sample.ground_truth.read_text())["events"]
    files = sorted(tiny_sample.events_dir.glob("*.jsonl"))
    assert len(files) == truth["files"]
    valid_ids, copies, invalid = set(), 0, 0
    for path in files:
        for line in path.read_bytes().splitlines():
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:
                invalid += 1
                continue
            if validate_event(event) is not None:
                invalid += 1
            elif event["event_id"] in valid_ids:
                copies += 1
            else:
                valid_ids.add(event["event_id"])
    assert len(valid_ids) == truth["valid_events"]
    assert copies == truth["duplicate_lines"]
    assert invalid == sum(truth["malformed_lines"].values())


def test_app_database_is_consistent_with_events(tiny_sample):
    with sqlite3.connect(tiny_sample.app_db) as conn:
        orders = dict(conn.execute("select order_id, total_amount from orders"))
        orphans = conn.execute(
            "select count(*) from orders where user_id not in (select user_id from users)").fetchone()
        tables = {r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")}
    assert orphans == (0,)
    assert {"tenants", "users", "products", "orders", "order_items", "subscriptions", "subscription_events"} <= tables
    checkouts = {}
    for path in tiny_sample.events_dir.glob("*.jsonl"):
        for line in path.read_bytes().splitlines():
            if b'"checkout_completed"' in line:
                try:
                    event = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if validate_event(event) is None:
                    checkouts[event["properties"]["order_id"]] = event["properties"]["revenue"]
    assert checkouts.keys() == orders.keys()
    assert all(abs(checkouts[o] - orders[o]) < 0.005 for o in orders)


def test_sizes_scale_events():
    assert SIZES["tiny"].users < SIZES["default"].users < SIZES["large"].users
    assert SIZES["default"].days == 90
    assert SIZES["default"].scaled(10).users == 10 * SIZES["default"].users


def test_expected_orders_are_what_the_sessions_went_on_to_place():
    """The anomaly ceiling (bench/anomaly_ceiling.py) treats `expected_orders` as the truth: outside
    the injected orders anomalies, the orders placed must be Poisson around it, in total and per day."""
    size = SIZES["default"]  # ~7,000 orders: a 5 % error in the expectation shows
    simulation = simulate(size, streams_for(42))
    expected = simulation.activity.expected_orders.set_index(["tenant", "day"])["orders"]
    orders = simulation.activity.orders
    tenant = orders["tenant_id"].map({t: i for i, t in enumerate(simulation.world.tenants["tenant_id"])})
    day = (orders["created_at"].dt.normalize() - pd.Timestamp(size.start_date)).dt.days
    placed = pd.Series(1, index=pd.MultiIndex.from_arrays([tenant, day])).groupby(level=[0, 1]).sum()
    placed = placed.reindex(expected.index, fill_value=0)
    injected = {(a.tenant, a.day) for a in simulation.anomalies if a.metric == "orders"}
    ordinary = [key not in injected for key in expected.index]
    lam, n = expected[ordinary].to_numpy(), placed[ordinary].to_numpy()
    assert abs(n.sum() - lam.sum()) < 4 * np.sqrt(lam.sum())
    assert abs(np.sum((n - lam) ** 2 / lam) / len(lam) - 1) < 0.25  # Poisson: variance equals the mean
    for tenant_day in injected:
        factor = next(a.factor for a in simulation.anomalies if (a.tenant, a.day) == tenant_day)
        assert abs(placed[tenant_day] - factor * expected[tenant_day]) < 4 * np.sqrt(factor * expected[tenant_day])


def test_an_anomaly_confined_to_one_device_in_one_country_moves_that_cell_and_the_truth_records_both():
    """The default sample's errors spike into the mobile users in Germany of its tenant: only they
    are pushed, and the ground truth names both dimensions (ml/drivers.py names such a cell)."""
    size = SIZES["default"]
    streams = streams_for(42)
    world = build_world(size, streams[0])
    holidays = {(d - size.start_date).days for d in holidays_between(size.start_date, size.end_date)}
    cell = [a for a in plan_anomalies(size, streams[2], holidays, world) if a.within is not None]
    assert [(a.metric, a.dimension, a.value, a.within) for a in cell] == [("errors", "device", "mobile",
                                                                            ("country", "DE"))]
    anomaly = cell[0]
    users = np.arange(len(world.users))
    pushed = _multipliers(world, cell, "errors", world.user_tenant, anomaly.day, users) != 1.0
    of_tenant = world.user_tenant == anomaly.tenant
    in_cell = (world.users["device"].to_numpy() == "mobile") & (world.users["country"].to_numpy() == "DE")
    assert pushed.any() and (pushed == (of_tenant & in_cell)).all()
    # the tenant's errors as a whole about 12x: the cell's factor makes up for its size
    assert anomaly.segment_factor == pytest.approx(1 + (12.0 - 1) / in_cell[of_tenant].mean(), rel=1e-3)
    truth = anomaly_truth(anomaly, world.tenants["tenant_id"].tolist(), size)
    assert truth["segment"]["dimension"] == "device" and truth["segment"]["value"] == "mobile"
    assert truth["segment"]["within"] == {"dimension": "country", "value": "DE"}
