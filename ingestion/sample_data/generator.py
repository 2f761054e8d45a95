"""Puts the simulation together and writes every output plus the ground truth."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from datetime import date, timedelta

import numpy as np

from ingestion.paths import DataLayout
from ingestion.sample_data.activity import (
    Activity,
    Anomaly,
    Experiment,
    plan_anomalies,
    plan_experiments,
    simulate_events,
)
from ingestion.sample_data.app_db import write_app_db
from ingestion.sample_data.calendar import day_factors, holidays_between
from ingestion.sample_data.faults import FAULTS, inject
from ingestion.sample_data.landing_files import render_events, write_event_files, write_marketing_files
from ingestion.sample_data.sizes import SampleSize
from ingestion.sample_data.world import World, build_subscriptions, build_world


def is_generated(layout: DataLayout) -> bool:
    """The ground truth is written last, so its presence means a complete sample."""
    return layout.ground_truth.exists()


@dataclass
class Simulation:
    world: World
    holidays: dict[date, str]
    anomalies: list[Anomaly]
    experiments: list[Experiment]
    activity: Activity


def streams_for(seed: int) -> list[np.random.Generator]:
    """The seed's child generators, one per part of the sample (see `generate`)."""
    return np.random.default_rng(seed).spawn(7)


def simulate(size: SampleSize, streams: list[np.random.Generator]) -> Simulation:
    """The simulated product's behaviour, in memory: what `generate` writes out.

    The same `streams_for(seed)` give the same simulation, which is how a benchmark recovers the
    generator's expected values for a sample already on disk.
    """
    world = build_world(size, streams[0])
    holidays = holidays_between(size.start_date, size.end_date)
    anomalies = plan_anomalies(size, streams[2], {(d - size.start_date).days for d in holidays}, world)
    experiments = plan_experiments(size, streams[2])
    activity = simulate_events(world, size, streams[3], anomalies, experiments)
    return Simulation(world, holidays, anomalies, experiments, activity)


def anomaly_truth(a: Anomaly, tenant_ids: list[str], size: SampleSize) -> dict:
    """An injected anomaly as the ground truth records it."""
    return {
        "tenant_id": tenant_ids[a.tenant],
        "date": (size.start_date + timedelta(days=a.day)).isoformat(),
        "metric": a.metric, "kind": a.kind, "factor": a.factor,
        # the users it was injected into (a cell of two dimensions: `within` names the second), and
        # how far they moved (drivers: ml/drivers.py)
        "segment": {"dimension": a.dimension, "value": a.value, "factor": a.segment_factor,
                    **({"within": {"dimension": a.within[0], "value": a.within[1]}} if a.within else {})},
    }


def truth_of(simulation: Simulation, size: SampleSize, seed: int) -> dict:
    """What the simulation injected: the anomalies, experiments and holidays of the ground truth."""
    tenant_ids = simulation.world.tenants["tenant_id"].tolist()
    return {
        "seed": seed,
        "size": {**asdict(size), "start_date": size.start_date.isoformat(), "end_date": size.end_date.isoformat()},
        "anomalies": [anomaly_truth(a, tenant_ids, size) for a in simulation.anomalies],
        "experiments": [{
            "experiment_id": e.experiment_id, "tenant_id": tenant_ids[e.tenant],
            "first_date": (size.start_date + timedelta(days=e.first_day)).isoformat(),
            "last_date": (size.start_date + timedelta(days=e.last_day)).isoformat(),
            "true_lift": e.lift,
            "lift_applies_to": "per-session purchase probability of the treatment group",
            "variants": {"control": 0.5, "treatment": 0.5},
            # a logging bug: this share of the treatment group's events say "control" (they are still treated)
            "sample_ratio_mismatch": ({"treatment_logged_as_control": e.treatment_logged_as_control}
                                      if e.treatment_logged_as_control else None),
        } for e in simulation.experiments],
        "holidays": {d.isoformat(): name for d, name in sorted(simulation.holidays.items())},
    }


def generate(layout: DataLayout, size: SampleSize, seed: int = 42, faults: tuple[str, ...] = ()) -> dict:
    """Write the whole sample for `size` under `layout` and return the ground truth.

    Each part draws from its own child generator, so changing one part (say, the marketing
    spend) does not shift the random stream of the others. `faults` (see faults.py) are
    injected last, into the finished sample, and recorded in the ground truth.
    """
    unknown = sorted(set(faults) - FAULTS.keys())
    if unknown:
        raise ValueError(f"unknown fault(s) {unknown}: choose from {sorted(FAULTS)}")
    started = time.perf_counter()
    layout.ensure()
    layout.ground_truth.unlink(missing_ok=True)
    streams = streams_for(seed)
    simulation = simulate(size, streams)
    world, activity, experiments = simulation.world, simulation.activity, simulation.experiments
    subscriptions, subscription_events = build_subscriptions(world, size, streams[1])
    write_app_db(layout.app_db, {
        "tenants": world.tenants, "users": world.users, "products": world.products,
        "orders": activity.orders, "order_items": activity.order_items,
        "subscriptions": subscriptions, "subscription_events": subscription_events,
    })
    lines = render_events(activity, world, experiments, streams[4])
    events = write_event_files(layout.events_dir, size, lines, activity.events["day"].to_numpy(), streams[6])
    activity_factor, _ = day_factors(size.start_date, size.days)
    marketing = write_marketing_files(layout.marketing_dir, world, size, activity_factor, streams[5])

    injected = inject(layout, list(faults), size.end_date)

    truth = {
        **truth_of(simulation, size, seed),
        "faults": injected,
        "events": events,
        "marketing": marketing,
        "app_db": {"orders": len(activity.orders), "users": len(world.users),
                   "subscriptions": len(subscriptions), "sessions": len(activity.sessions)},
    }
    layout.ground_truth.write_text(json.dumps(truth, indent=2))
    return {**truth, "seconds": round(time.perf_counter() - started, 2)}
