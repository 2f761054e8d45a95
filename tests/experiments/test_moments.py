"""Daily moments from the days users did something equal the moments of every user on every day."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml.experiments.moments import daily_moments


def test_moments_from_changes_equal_the_brute_force_sums_on_every_day():
    rng = np.random.default_rng(7)
    users, days, arms = 60, 12, 3
    arm, exposure_day = rng.integers(0, arms, users), rng.integers(0, days + 2, users)  # some exposed too late
    covariates = pd.DataFrame({"pre_orders": rng.poisson(1.0, users).astype(float)})
    rows = [(u, d, rng.poisson(1.0), rng.gamma(2.0)) for u in range(users) for d in range(exposure_day[u], days + 3)
            if rng.random() < 0.3]
    activity = pd.DataFrame(rows, columns=["user", "day", "orders", "revenue"]).sample(frac=1, random_state=1)
    columns = ["orders", "revenue", "pre_orders"]
    got = daily_moments(arm, exposure_day, covariates, activity, columns, arms, days)

    values = np.zeros((users, days, len(columns)))  # each user's running values, by the end of each day
    for u, d, orders, revenue in rows:
        if d < days:
            values[u, d:, 0] += orders
            values[u, d:, 1] += revenue
    values[:, :, 2] = covariates["pre_orders"].to_numpy()[:, None]
    exposed = exposure_day[:, None] <= np.arange(days)[None, :]
    for a in range(arms):
        mask = exposed & (arm == a)[:, None]
        assert np.array_equal(got.n[a], mask.sum(0))
        for i, c in enumerate(columns):
            assert np.allclose(got.sums[c][a], (values[:, :, i] * mask).sum(0))
            for j, other in enumerate(columns):
                assert np.allclose(got.product(c, other)[a], (values[:, :, i] * values[:, :, j] * mask).sum(0))
