"""Small synthetic experiments, shaped as the experiment marts are, for the analysis' tests."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

from ml.experiments.analysis import OUTCOME_COLUMNS, Inputs

START = date(2026, 9, 1)


def registry(**changes) -> dict:
    """One experiment as dim_experiments holds it."""
    return {"experiment_id": "e1", "tenant_id": "t1", "experiment_name": "Test", "hypothesis": "It helps.",
            "primary_metric": "experiment_orders_per_user",
            "secondary_metrics": ",".join(["experiment_conversion_rate", "experiment_revenue_per_user",
                                           "experiment_average_order_value"]),
            "start_date": None, "stop_date": None, "minimum_detectable_effect": 0.1, "alpha": 0.05, "power": 0.8,
            "conversion_window_days": 14, "control_variant": "control", "variant_count": 2, **changes}


def variants(experiment_id: str = "e1", shares: dict[str, float] | None = None) -> list[dict]:
    shares = shares or {"control": 0.5, "treatment": 0.5}
    return [{"experiment_variant_key": f"{experiment_id}|{v}", "experiment_id": experiment_id, "variant": v,
             "is_control": i == 0, "traffic_share": s} for i, (v, s) in enumerate(shares.items())]


def users(rng: np.random.Generator, counts: dict[str, int], lift: float = 0.0, rate: float = 0.05,
          experiment_id: str = "e1", days: int = 20, window: int = 14) -> tuple[pd.DataFrame, ...]:
    """Exposures, outcomes and daily outcomes of users in each variant: orders arrive every day of the
    window at `rate` (times 1 + `lift` in any variant but the first), each worth about 50."""
    exposures, daily = [], []
    for i, (variant, n) in enumerate(counts.items()):
        for u in range(n):
            key = f"{experiment_id}|{variant}-{u}"
            day = int(rng.integers(0, days // 2))
            exposed = START + timedelta(days=day)
            exposures.append({"experiment_user_key": key, "experiment_id": experiment_id, "user_id": f"{variant}-{u}",
                              "variant": variant, "exposed_at": pd.Timestamp(exposed) + pd.Timedelta(hours=9),
                              "exposure_date": exposed,
                              "window_end_at": pd.Timestamp(exposed + timedelta(days=window)) + pd.Timedelta(hours=9),
                              "exclusion_reason": None, "converted_before_exposure": False})
            orders = rng.poisson(rate * (1 + (lift if i else 0.0)), window)
            first = True
            for d in np.flatnonzero(orders):
                daily.append({"experiment_user_key": key, "activity_date": exposed + timedelta(days=int(d)),
                              "converted": float(first), "orders": float(orders[d]),
                              "revenue": float(orders[d] * rng.lognormal(3.9, 0.4)),
                              "completed_orders": float(orders[d]), "sessions": float(orders[d]),
                              "converted_sessions": float(orders[d]), "events": 3.0 * orders[d]})
                first = False
    exposures = pd.DataFrame(exposures)
    daily = pd.DataFrame(daily, columns=["experiment_user_key", "activity_date", *OUTCOME_COLUMNS])
    outcomes = exposures[["experiment_user_key"]].join(
        daily.groupby("experiment_user_key")[list(OUTCOME_COLUMNS)].sum(), on="experiment_user_key").fillna(0.0)
    outcomes["converted"] = (outcomes["converted"] > 0).astype(float)
    for column in OUTCOME_COLUMNS:
        outcomes[f"pre_{column}"] = 0.0
    return exposures, outcomes, daily


def inputs(experiments: list[dict], declared: list[dict], frames: tuple[pd.DataFrame, ...],
           last_day: date = START + timedelta(days=40)) -> Inputs:
    exposures, outcomes, daily = frames
    return Inputs(pd.DataFrame(experiments), pd.DataFrame(declared), exposures, outcomes, daily, last_day)
