"""The simulated product's entities: tenants, their end users, products and subscriptions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ingestion.sample_data.sizes import SampleSize

TENANT_NAMES = [
    "Acme Outfitters", "Blue Fern Goods", "Copper Kettle", "Dune Supply", "Elm & Oak", "Fable Books",
    "Granite Gear", "Harbor Threads", "Iris Botanicals", "Juniper Home", "Kite Toys", "Lumen Lighting",
    "Maple Pantry", "Nimbus Audio", "Orchid Beauty", "Pine Peak Sports", "Quill Stationery",
    "River Coffee", "Sable Pets", "Tide Swimwear",
]
INDUSTRIES = ["apparel", "home", "food", "electronics", "beauty", "sports", "books", "toys"]
COUNTRIES = np.array(["US", "GB", "DE", "FR", "CA", "BR", "IN", "AU"])
COUNTRY_P = np.array([0.42, 0.12, 0.1, 0.08, 0.08, 0.08, 0.07, 0.05])
DEVICES = np.array(["desktop", "mobile", "tablet"])
DEVICE_P = np.array([0.45, 0.47, 0.08])
CHANNELS = np.array(["organic", "paid_search", "social", "email", "referral", "display"])
CHANNEL_P = np.array([0.34, 0.22, 0.18, 0.1, 0.1, 0.06])
PLANS = np.array(["free", "starter", "pro", "enterprise"])
PLAN_P = np.array([0.55, 0.25, 0.15, 0.05])
PLAN_MRR = {"starter": 29.0, "pro": 99.0, "enterprise": 499.0}
CATEGORIES = ["basics", "premium", "accessories", "seasonal", "bundles"]


@dataclass
class World:
    tenants: pd.DataFrame
    users: pd.DataFrame
    products: pd.DataFrame
    # per user: index into tenants, first active day relative to the start (negative: before), engagement
    user_tenant: np.ndarray
    user_signup_day: np.ndarray
    user_engagement: np.ndarray
    user_plan: np.ndarray


def _ts(start: pd.Timestamp, day: np.ndarray, seconds: np.ndarray) -> pd.Series:
    return start + pd.to_timedelta(day, unit="D") + pd.to_timedelta(seconds, unit="s")


def build_world(size: SampleSize, rng: np.random.Generator) -> World:
    start = pd.Timestamp(size.start_date)
    n_t = size.tenants
    weight = rng.lognormal(0.0, 0.6, n_t)
    weight /= weight.sum()
    tenant_ids = [f"t{i + 1:03d}" for i in range(n_t)]
    tenants = pd.DataFrame({
        "tenant_id": tenant_ids,
        "name": [TENANT_NAMES[i % len(TENANT_NAMES)] + ("" if i < len(TENANT_NAMES) else f" {i}")
                 for i in range(n_t)],
        "industry": [INDUSTRIES[i % len(INDUSTRIES)] for i in range(n_t)],
        "country": rng.choice(COUNTRIES[:5], n_t),
        "tier": rng.choice(["growth", "scale", "enterprise"], n_t, p=[0.5, 0.35, 0.15]),
        "created_at": _ts(start, -rng.integers(200, 900, n_t), rng.integers(0, 86400, n_t)),
    })
    tenants["updated_at"] = tenants["created_at"]

    n_u = size.users
    user_tenant = rng.choice(n_t, n_u, p=weight)
    # 55% of users exist before the window; the rest sign up with a growing rate inside it.
    existing = rng.random(n_u) < 0.55
    growth_draw = np.sqrt(rng.random(n_u))  # density rising linearly over the window
    signup_day = np.where(existing, -rng.integers(1, 365, n_u), (growth_draw * size.days).astype(int))
    signup_day = np.minimum(signup_day, size.days - 1)
    signup_sec = rng.integers(6 * 3600, 22 * 3600, n_u)
    plan = rng.choice(PLANS, n_u, p=PLAN_P)
    engagement = rng.beta(2.0, 5.5, n_u) * np.where(plan == "free", 0.8, 1.15)
    users = pd.DataFrame({
        "user_id": [f"u{i + 1:07d}" for i in range(n_u)],
        "tenant_id": np.array(tenant_ids)[user_tenant],
        "email_domain": rng.choice(["example.com", "example.org", "example.net"], n_u),
        "signup_at": _ts(start, signup_day, signup_sec),
        "plan": plan,
        "country": rng.choice(COUNTRIES, n_u, p=COUNTRY_P),
        "device": rng.choice(DEVICES, n_u, p=DEVICE_P),
        "acquisition_channel": rng.choice(CHANNELS, n_u, p=CHANNEL_P),
    })
    users["updated_at"] = users["signup_at"]

    n_p = size.products_per_tenant
    products = pd.DataFrame({
        "product_id": [f"p{t + 1:03d}{j + 1:04d}" for t in range(n_t) for j in range(n_p)],
        "tenant_id": np.repeat(tenant_ids, n_p),
        "name": [f"{CATEGORIES[j % len(CATEGORIES)].title()} item {j + 1}" for _ in range(n_t) for j in range(n_p)],
        "category": [CATEGORIES[j % len(CATEGORIES)] for _ in range(n_t) for j in range(n_p)],
        "price": np.round(rng.lognormal(3.3, 0.6, n_t * n_p), 2),
    })
    products["created_at"] = start - pd.Timedelta(days=400)
    products["updated_at"] = products["created_at"]
    return World(tenants, users, products, user_tenant, signup_day, engagement, plan)


def build_subscriptions(world: World, size: SampleSize, rng: np.random.Generator
                        ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Subscriptions of paying users with monthly plan changes and cancellations.

    Returns the current state (`subscriptions`) and the full history (`subscription_events`),
    from which MRR on any day can be rebuilt.
    """
    order = ["starter", "pro", "enterprise"]
    subs, events = [], []
    paying = np.flatnonzero(world.user_plan != "free")
    for n, u in enumerate(paying):
        sub_id = f"s{n + 1:07d}"
        plan = str(world.user_plan[u])
        started = world.users.at[u, "signup_at"]
        history = [("started", plan, started)]
        status, cancelled_at = "active", None
        anniversary = started + pd.Timedelta(days=30)
        while anniversary.date() <= size.end_date:
            draw = rng.random()
            if draw < 0.035:
                status, cancelled_at = "cancelled", anniversary
                history.append(("cancelled", plan, anniversary))
                break
            rank = order.index(plan)
            if draw < 0.065 and rank < 2:
                plan = order[rank + 1]
                history.append(("upgraded", plan, anniversary))
            elif draw < 0.085 and rank > 0:
                plan = order[rank - 1]
                history.append(("downgraded", plan, anniversary))
            anniversary += pd.Timedelta(days=30)
        for k, (kind, p, at) in enumerate(history):
            events.append({
                "subscription_event_id": f"{sub_id}-{k + 1:03d}", "subscription_id": sub_id, "event_type": kind,
                "plan": p, "mrr": 0.0 if kind == "cancelled" else PLAN_MRR[p], "effective_at": at, "updated_at": at,
            })
        subs.append({
            "subscription_id": sub_id, "tenant_id": world.users.at[u, "tenant_id"],
            "user_id": world.users.at[u, "user_id"], "plan": plan, "mrr": PLAN_MRR[plan], "status": status,
            "started_at": started, "cancelled_at": cancelled_at, "updated_at": history[-1][2],
        })
    # Subscriptions that started long before the window keep their history: MRR needs it.
    return pd.DataFrame(subs), pd.DataFrame(events)
