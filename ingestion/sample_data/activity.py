"""Simulated behaviour: sessions, product events and the orders they produce, day by day.

Everything is vectorised with numpy per day so that the large size stays practical. Sessions of
one user on one day start three hours apart, so a 30-minute inactivity rule recovers them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ingestion.sample_data.calendar import day_factors
from ingestion.sample_data.sizes import SampleSize
from ingestion.sample_data.world import World

EVENT_TYPES = np.array([
    "session_start", "page_view", "feature_used", "add_to_cart", "checkout_started",
    "checkout_completed", "error", "signup", "experiment_assigned", "experiment_converted",
])
# Position of each event type inside a session (page views, features and errors are interleaved).
_ORDER_BASE = np.array([0.0, 1.0, 1.0, 2.0, 3.0, 4.0, 1.0, 0.5, 0.7, 4.5])
_ORDER_JITTER = np.array([0.0, 1.0, 1.0, 0.9, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
PATHS = np.array(["/", "/catalog", "/product", "/search", "/cart", "/account", "/blog", "/help"])
FEATURES = np.array(["search", "wishlist", "reviews", "recommendations", "compare", "gift_cards"])
ERRORS = {"E500": "internal server error", "E502": "bad gateway", "E404": "page not found",
          "TIMEOUT": "request timed out"}
USER_AGENTS = {"desktop": "Mozilla/5.0 (X11; Linux x86_64)", "mobile": "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0)",
               "tablet": "Mozilla/5.0 (iPad; CPU OS 18_0)"}
LOCALES = {"US": "en-US", "GB": "en-GB", "DE": "de-DE", "FR": "fr-FR", "CA": "en-CA", "BR": "pt-BR",
           "IN": "en-IN", "AU": "en-AU"}


@dataclass(frozen=True)
class Anomaly:
    """A metric pushed on one tenant's day, inside one segment of its users (`dimension` = `value`,
    a column of the users: device, country), or one cell of two columns (`within` adds the second:
    mobile users in Germany): the segment's users move by `segment_factor`, chosen so the tenant as
    a whole moves by about `factor` (as far as the segment is large enough; a drop never goes below
    zero). What drives the change is then known: the ground truth records it."""

    tenant: int
    day: int
    metric: str  # active_users | orders | errors
    kind: str  # spike | drop
    factor: float
    dimension: str = "device"
    value: str = "mobile"
    segment_factor: float = 1.0
    within: tuple[str, str] | None = None  # (dimension, value): the segment narrowed to a cell of two

    def hits(self, users: pd.DataFrame, user: np.ndarray) -> np.ndarray:
        """Which of `user` (rows of `users`) are in the segment."""
        hit = users[self.dimension].to_numpy()[user] == self.value
        if self.within is not None:
            hit &= users[self.within[0]].to_numpy()[user] == self.within[1]
        return hit


@dataclass(frozen=True)
class Experiment:
    experiment_id: str
    tenant: int
    first_day: int
    last_day: int
    lift: float  # relative lift of the purchase propensity in the treatment group
    # Share of the treatment group whose assignment (and conversion) events say "control": a logging
    # bug that a sample-ratio-mismatch check must catch. The users still get the treatment.
    treatment_logged_as_control: float = 0.0


# The share of treatment users mislabelled in an experiment with an injected sample-ratio mismatch:
# 50/50 becomes about 65/35, which a chi-square test flags at p < 0.001 from 150 users on.
MISLABELLED_SHARE = 0.3


# Shares of orders that end refunded and cancelled (the rest complete).
REFUNDED_SHARE = 0.04
CANCELLED_SHARE = 0.02


@dataclass
class Activity:
    sessions: pd.DataFrame
    events: pd.DataFrame
    orders: pd.DataFrame
    order_items: pd.DataFrame
    # Per tenant and day: the number of orders the day's sessions were expected to place, had no
    # order anomaly been injected. The best prediction any detector could make (bench/anomaly_ceiling.py).
    expected_orders: pd.DataFrame


def anomaly_window(size: SampleSize) -> range:
    """The days an anomaly may fall on (holidays aside): never in the first four weeks, since
    forecasts need history, nor in the last two."""
    return range(min(28, size.days // 2), size.days - 2)


# What each anomaly pushes, how far (the tenant as a whole), and the segment of users it is injected into:
# drops into segments large enough to carry them, spikes into large and small ones alike, and one into a
# cell of two dimensions (errors of the mobile users in Germany: about 5 % of the users). The tiny sample
# takes the first two, so changing the others leaves it as it was.
ANOMALY_KINDS = [("active_users", "drop", 0.45, ("device", "mobile")), ("orders", "spike", 2.6, ("device", "desktop")),
                 ("errors", "spike", 12.0, ("device", "mobile"), ("country", "DE")),
                 ("orders", "drop", 0.3, ("device", "mobile")), ("active_users", "spike", 1.7, ("country", "US")),
                 ("errors", "spike", 15.0, ("device", "tablet"))]


def plan_anomalies(size: SampleSize, rng: np.random.Generator, holidays: set[int], world: World) -> list[Anomaly]:
    """Spikes and drops on known days of the `anomaly_window`, never on a holiday, each in one segment
    of the tenant's users (`ANOMALY_KINDS`; no random draw picks it, so the other draws stay as they were)."""
    window = anomaly_window(size)
    chosen: list[Anomaly] = []
    taken: set[tuple[int, int]] = set()
    while len(chosen) < size.anomalies:
        tenant, day = int(rng.integers(size.tenants)), int(rng.integers(window.start, window.stop))
        if (tenant, day) in taken or day in holidays:
            continue
        taken.add((tenant, day))
        metric, kind, factor, (dimension, value), *within = ANOMALY_KINDS[len(chosen) % len(ANOMALY_KINDS)]
        anomaly = Anomaly(tenant, day, metric, kind, factor, dimension, value, within=within[0] if within else None)
        of_tenant = anomaly.hits(world.users, np.flatnonzero(world.user_tenant == tenant))
        share = float(np.mean(of_tenant)) if len(of_tenant) else 0.0
        segment_factor = max(0.0, 1.0 + (factor - 1.0) / share) if share > 0 else factor
        chosen.append(replace(anomaly, segment_factor=round(segment_factor, 4)))
    return chosen


def plan_experiments(size: SampleSize, rng: np.random.Generator) -> list[Experiment]:
    """The size's experiments; the last `size.sample_ratio_mismatches` of them mislabel part of their
    treatment group (`MISLABELLED_SHARE`), which draws nothing from `rng`: the rest of the sample
    is the same with or without them."""
    lifts = [0.0, 0.15, 0.3, -0.1]
    found = []
    for i in range(size.experiments):
        first = int(rng.integers(0, max(1, size.days // 3)))
        mismatched = i >= size.experiments - size.sample_ratio_mismatches
        found.append(Experiment(f"exp_{i + 1:02d}", tenant=i % size.tenants, first_day=first,
                                last_day=min(size.days - 1, first + max(14, size.days // 2)),
                                lift=lifts[(i + 1) % len(lifts)],
                                treatment_logged_as_control=MISLABELLED_SHARE if mismatched else 0.0))
    return found


def _multipliers(world: World, anomalies: list[Anomaly], metric: str, tenant: np.ndarray, day: np.ndarray | int,
                 user: np.ndarray) -> np.ndarray:
    """Per row (a user or a session: its tenant, day and user, -1 for anonymous): how far the
    anomalies of `metric` push it. Anonymous rows belong to no segment and are never pushed."""
    mult = np.ones(len(tenant))
    for a in anomalies:
        if a.metric != metric:
            continue
        hit = (tenant == a.tenant) & (day == a.day) & (user >= 0) & a.hits(world.users, np.maximum(user, 0))
        mult[hit] *= a.segment_factor
    return mult


def _rank_within(groups: np.ndarray) -> np.ndarray:
    """0, 1, 2... inside each run of equal consecutive values."""
    starts = np.r_[0, np.flatnonzero(np.diff(groups)) + 1]
    lengths = np.diff(np.r_[starts, len(groups)])
    return np.arange(len(groups)) - np.repeat(starts, lengths)


def simulate_sessions(world: World, size: SampleSize, rng: np.random.Generator,
                      anomalies: list[Anomaly]) -> pd.DataFrame:
    activity, _ = day_factors(size.start_date, size.days)
    hours = np.arange(6, 15)
    hour_p = np.array([2, 4, 6, 7, 7, 6, 5, 4, 3], dtype=float)
    hour_p /= hour_p.sum()
    frames = []
    for d in range(size.days):
        eligible = np.flatnonzero(world.user_signup_day <= d)
        tenant = world.user_tenant[eligible]
        p = world.user_engagement[eligible] * activity[d] * _multipliers(world, anomalies, "active_users", tenant, d,
                                                                           eligible)
        active = (rng.random(len(eligible)) < np.clip(p, 0, 0.95)) | (world.user_signup_day[eligible] == d)
        users = eligible[active]
        per_user = 1 + np.minimum(rng.poisson(0.3, len(users)), 2)
        user = np.repeat(users, per_user)
        k = _rank_within(user)
        start_sec = np.repeat(rng.choice(hours, len(users), p=hour_p) * 3600 + rng.integers(0, 3600, len(users)),
                              per_user) + k * 3 * 3600
        # anonymous visitors: a quarter as many sessions as signed-in users, per tenant
        anon_n = rng.poisson(0.25 * np.bincount(world.user_tenant[users], minlength=size.tenants))
        anon_tenant = np.repeat(np.arange(size.tenants), anon_n)
        frames.append(pd.DataFrame({
            "day": d,
            "user": np.r_[user, np.full(len(anon_tenant), -1)],
            "tenant": np.r_[world.user_tenant[user], anon_tenant],
            "start_sec": np.r_[start_sec, rng.integers(0, 22 * 3600, len(anon_tenant))],
            "first_of_day": np.r_[k == 0, np.ones(len(anon_tenant), bool)],
        }))
    sessions = pd.concat(frames, ignore_index=True)
    sessions["session_id"] = [f"{x:012x}" for x in rng.integers(0, 2**48, len(sessions))]
    sessions["anonymous_id"] = np.where(
        sessions["user"] < 0, [f"anon-{x:010x}" for x in rng.integers(0, 2**40, len(sessions))], None)
    return sessions


def _experiment_columns(sessions: pd.DataFrame, world: World, experiments: list[Experiment],
                        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per session: experiment index (-1 none), treatment flag, whether it is the assignment, and the
    treatment flag its experiment events log (see `Experiment.treatment_logged_as_control`)."""
    exp_idx = np.full(len(sessions), -1)
    treated = np.zeros(len(sessions), bool)
    assigned = np.zeros(len(sessions), bool)
    logged = np.zeros(len(sessions), bool)
    variant_of_user = rng.random(len(world.users)) < 0.5
    user, day, tenant = sessions["user"].to_numpy(), sessions["day"].to_numpy(), sessions["tenant"].to_numpy()
    for e, exp in enumerate(experiments):
        in_exp = (user >= 0) & (tenant == exp.tenant) & (day >= exp.first_day) & (day <= exp.last_day)
        rows = np.flatnonzero(in_exp)
        exp_idx[rows] = e
        treated[rows] = variant_of_user[user[rows]]
        # which users a logging bug mislabels: a fixed share of user numbers, independent of the variant
        mislabelled = user[rows] % 100 < round(100 * exp.treatment_logged_as_control)
        logged[rows] = treated[rows] & ~mislabelled
        _, first = np.unique(user[rows], return_index=True)
        assigned[rows[first]] = True
    return exp_idx, treated, assigned, logged


def simulate_events(world: World, size: SampleSize, rng: np.random.Generator, anomalies: list[Anomaly],
                    experiments: list[Experiment]) -> Activity:
    sessions = simulate_sessions(world, size, rng, anomalies)
    _, purchase_factor = day_factors(size.start_date, size.days)
    n = len(sessions)
    user, day, tenant = sessions["user"].to_numpy(), sessions["day"].to_numpy(), sessions["tenant"].to_numpy()
    mult = {m: _multipliers(world, anomalies, m, tenant, day, user) for m in ("orders", "errors")}
    signed_in = user >= 0
    exp_idx, treated, assigned, logged = _experiment_columns(sessions, world, experiments, rng)
    lift = np.array([e.lift for e in experiments] + [0.0])[exp_idx]
    paying = signed_in & (world.user_plan[np.maximum(user, 0)] != "free")
    usual = signed_in * 0.07 * purchase_factor[day] * np.where(paying, 1.3, 1.0) * np.where(treated, 1.0 + lift, 1.0)
    p_buy = usual * mult["orders"]
    purchase = rng.random(n) < p_buy
    expected_orders = (pd.DataFrame({"tenant": tenant, "day": day, "orders": usual})
                       .groupby(["tenant", "day"], as_index=False)["orders"].sum())
    cart = np.where(purchase, 1 + rng.poisson(0.5, n), signed_in & (rng.random(n) < 0.12))
    converted = np.zeros(n, bool)
    if experiments:
        buyers = np.flatnonzero(purchase & (exp_idx >= 0))
        _, first = np.unique(user[buyers] * len(experiments) + exp_idx[buyers], return_index=True)
        converted[buyers[first]] = True
    counts = np.column_stack([
        np.ones(n, int),                                         # session_start
        1 + rng.poisson(3.0, n),                                 # page_view
        signed_in * rng.poisson(1.2, n),                         # feature_used
        cart,                                                    # add_to_cart
        purchase | ((cart > 0) & (rng.random(n) < 0.3)),         # checkout_started
        purchase,                                                # checkout_completed
        rng.poisson(0.02 * mult["errors"]),         # error
        signed_in & (world.user_signup_day[np.maximum(user, 0)] == day) & sessions["first_of_day"].to_numpy(),
        assigned,                                                # experiment_assigned
        converted,                                               # experiment_converted
    ]).astype(int)

    session_of = np.repeat(np.arange(n), counts.sum(axis=1))
    codes = np.repeat(np.tile(np.arange(len(EVENT_TYPES)), n), counts.ravel())
    key = _ORDER_BASE[codes] + _ORDER_JITTER[codes] * rng.random(len(codes)) * 0.99
    order = np.lexsort((key, session_of))
    session_of, codes = session_of[order], codes[order]
    # seconds since the session's start: cumulative gaps, restarted at each session's first event
    firsts = np.r_[0, np.flatnonzero(np.diff(session_of)) + 1]
    gaps = rng.exponential(35.0, len(codes)).astype(int) + 1
    gaps[firsts] = 0
    within = np.cumsum(gaps)
    within -= np.repeat(within[firsts], counts.sum(axis=1))  # every session has a session_start
    epoch0 = int(pd.Timestamp(size.start_date).timestamp())
    ts = epoch0 + day[session_of] * 86400 + sessions["start_sec"].to_numpy()[session_of] + within

    orders, items = _orders(world, size, rng, session_of, codes, ts, sessions)
    events = pd.DataFrame({
        "event_id": [f"{a:016x}{b:016x}" for a, b in rng.integers(0, 2**63, (len(codes), 2))],
        "event_type": EVENT_TYPES[codes],
        "ts": ts,
        "day": day[session_of],
        "tenant": tenant[session_of],
        "user": user[session_of],
        "session": session_of,
        "experiment": exp_idx[session_of],
        "treated": treated[session_of],
        "logged_treated": logged[session_of],
    })
    events["order_id"] = None
    completed = codes == 5
    events.loc[completed, "order_id"] = orders["order_id"].to_numpy()
    return Activity(sessions=sessions, events=events, orders=orders, order_items=items,
                    expected_orders=expected_orders)


def _orders(world: World, size: SampleSize, rng: np.random.Generator, session_of: np.ndarray, codes: np.ndarray,
            ts: np.ndarray, sessions: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One order per completed checkout, with items priced from the tenant's catalogue."""
    at = np.flatnonzero(codes == 5)
    n = len(at)
    tenant = sessions["tenant"].to_numpy()[session_of[at]]
    user = sessions["user"].to_numpy()[session_of[at]]
    created = pd.to_datetime(ts[at], unit="s")
    n_items = 1 + rng.poisson(0.6, n)
    item_order = np.repeat(np.arange(n), n_items)
    product = tenant[item_order] * size.products_per_tenant + rng.integers(0, size.products_per_tenant, len(item_order))
    quantity = 1 + rng.poisson(0.25, len(item_order))
    price = world.products["price"].to_numpy()[product]
    total = np.round(np.bincount(item_order, weights=quantity * price, minlength=n), 2)
    status_draw = rng.random(n)
    status = np.where(status_draw < REFUNDED_SHARE, "refunded",
                      np.where(status_draw < REFUNDED_SHARE + CANCELLED_SHARE, "cancelled", "completed"))
    end = pd.Timestamp(size.end_date) + pd.Timedelta(hours=23, minutes=59)
    changed = created + pd.to_timedelta(np.where(status == "refunded", rng.integers(1, 10, n) * 86400,
                                                 np.where(status == "cancelled", rng.integers(600, 7200, n), 0)),
                                        unit="s")
    status = np.where(changed > end, "completed", status)
    updated = np.where(changed > end, created, changed)
    order_ids = [f"o{i + 1:08d}" for i in range(n)]
    orders = pd.DataFrame({
        "order_id": order_ids,
        "tenant_id": world.tenants["tenant_id"].to_numpy()[tenant],
        "user_id": world.users["user_id"].to_numpy()[user],
        "status": status,
        "currency": "USD",
        "total_amount": total,
        "created_at": created,
        "updated_at": pd.to_datetime(updated),
    })
    items = pd.DataFrame({
        "order_item_id": [f"{order_ids[o]}-{k + 1}"
                          for o, k in zip(item_order, _rank_within(item_order), strict=True)],
        "order_id": np.array(order_ids)[item_order],
        "product_id": world.products["product_id"].to_numpy()[product],
        "quantity": quantity,
        "unit_price": price,
        "updated_at": created[item_order],
    })
    return orders, items
