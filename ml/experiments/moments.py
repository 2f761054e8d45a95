"""Each variant's sufficient statistics on every day of an experiment, as its data stood that day.

Looking at an experiment on day d means: the users exposed by d, each with the outcomes they had
by d. A user's values only change on the days they did something, so the sums, sums of squares
and cross products of every variant are built from those changes alone (a user entering at
exposure, then each day with activity replacing the user's running values) and cumulated over
the days: memory and time follow the rows of the daily outcomes mart, not users times days.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations_with_replacement

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class DailyMoments:
    """Per variant (first axis) and day (second axis): users, and sums and cross products of columns."""

    n: np.ndarray
    sums: dict[str, np.ndarray]
    products: dict[tuple[str, str], np.ndarray]

    def product(self, a: str, b: str) -> np.ndarray:
        return self.products[(a, b)] if (a, b) in self.products else self.products[(b, a)]


def daily_moments(arm: np.ndarray, exposure_day: np.ndarray, covariates: pd.DataFrame, activity: pd.DataFrame,
                  columns: list[str], arms: int, days: int) -> DailyMoments:
    """Sufficient statistics of `columns` per arm and day 0..days-1, cumulated.

    Users are positions 0..U-1: `arm[u]` (0..arms-1), `exposure_day[u]`, and their fixed
    pre-exposure `covariates` (a frame of U rows; its columns may appear in `columns`).
    `activity` holds each user's increments of the other columns: `user` (position), `day`
    (on or after their exposure day) and one column per outcome. Days past the last are ignored.
    """
    arm, exposure_day = np.asarray(arm, dtype=int), np.asarray(exposure_day, dtype=int)
    users = len(arm)
    post = [c for c in columns if c not in covariates.columns]
    fixed = [c for c in columns if c in covariates.columns]
    x = covariates[fixed].to_numpy(dtype=float) if fixed else np.zeros((users, 0))

    activity = activity[activity["day"] < days].sort_values(["user", "day"], kind="stable")
    who = activity["user"].to_numpy(dtype=int)
    increments = activity[post].to_numpy(dtype=float)
    running = pd.DataFrame(increments).groupby(who).cumsum().to_numpy() if len(activity) else increments
    # the user entering on the exposure day (values 0, covariates known), then each day of activity
    before = np.vstack([np.zeros((users, len(post))), running - increments])
    after = np.vstack([np.zeros((users, len(post))), running])
    fixed_values = np.vstack([x, x[who]])
    before = np.hstack([before, np.vstack([np.zeros_like(x), x[who]])])
    after = np.hstack([after, fixed_values])
    event_arm = np.concatenate([arm, arm[who]])
    event_day = np.concatenate([exposure_day, activity["day"].to_numpy(dtype=int)])
    kept = event_day < days
    slot = (event_arm * days + event_day)[kept]
    before, after = before[kept], after[kept]

    def cumulate(weights: np.ndarray) -> np.ndarray:
        return np.cumsum(np.bincount(slot, weights=weights, minlength=arms * days).reshape(arms, days), axis=1)

    names = post + fixed
    entering = np.concatenate([np.ones(users), np.zeros(len(who))])[kept]
    sums = {c: cumulate(after[:, i] - before[:, i]) for i, c in enumerate(names)}
    products = {(a, b): cumulate(after[:, i] * after[:, j] - before[:, i] * before[:, j])
                for (i, a), (j, b) in combinations_with_replacement(list(enumerate(names)), 2)}
    return DailyMoments(cumulate(entering), sums, products)
