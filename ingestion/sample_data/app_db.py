"""The app database: the product's operational tables in SQLite, and changes made to them.

Each table has a primary key and an `updated_at` that moves on every change, which is what
the incremental loader relies on.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from ingestion.sample_data.world import PLAN_MRR

# Table -> (DDL columns, primary key). Timestamps are DATETIME so SQLAlchemy reflects them as such.
TABLES: dict[str, tuple[str, str]] = {
    "tenants": ("tenant_id TEXT, name TEXT NOT NULL, industry TEXT, country TEXT, tier TEXT, "
                "created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL", "tenant_id"),
    "users": ("user_id TEXT, tenant_id TEXT NOT NULL, email_domain TEXT, signup_at DATETIME NOT NULL, plan TEXT, "
              "country TEXT, device TEXT, acquisition_channel TEXT, updated_at DATETIME NOT NULL", "user_id"),
    "products": ("product_id TEXT, tenant_id TEXT NOT NULL, name TEXT, category TEXT, price NUMERIC(12,2) NOT NULL, "
                 "created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL", "product_id"),
    "orders": ("order_id TEXT, tenant_id TEXT NOT NULL, user_id TEXT NOT NULL, status TEXT NOT NULL, "
               "currency TEXT, total_amount NUMERIC(12,2) NOT NULL, created_at DATETIME NOT NULL, "
               "updated_at DATETIME NOT NULL", "order_id"),
    "order_items": ("order_item_id TEXT, order_id TEXT NOT NULL, product_id TEXT NOT NULL, quantity INTEGER, "
                    "unit_price NUMERIC(12,2), updated_at DATETIME NOT NULL", "order_item_id"),
    "subscriptions": ("subscription_id TEXT, tenant_id TEXT NOT NULL, user_id TEXT NOT NULL, plan TEXT, "
                      "mrr NUMERIC(12,2), status TEXT, started_at DATETIME NOT NULL, cancelled_at DATETIME, "
                      "updated_at DATETIME NOT NULL", "subscription_id"),
    "subscription_events": ("subscription_event_id TEXT, subscription_id TEXT NOT NULL, event_type TEXT NOT NULL, "
                            "plan TEXT, mrr NUMERIC(12,2), effective_at DATETIME NOT NULL, "
                            "updated_at DATETIME NOT NULL",
                            "subscription_event_id"),
}
PRIMARY_KEYS = {table: pk for table, (_, pk) in TABLES.items()}


def _sql_value(value):
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT:
        return None
    if isinstance(value, (pd.Timestamp, datetime)):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_app_db(path: Path, frames: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Create the app database from scratch with one frame per table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    with sqlite3.connect(tmp) as conn:
        for table, (columns, pk) in TABLES.items():
            conn.execute(f"CREATE TABLE {table} ({columns}, PRIMARY KEY ({pk}))")
            frame = frames[table]
            names = [c.split()[0] for c in columns.split(", ")]
            rows = [tuple(_sql_value(v) for v in row) for row in frame[names].itertuples(index=False)]
            conn.executemany(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})", rows)
    tmp.replace(path)
    return {table: len(frame) for table, frame in frames.items()}


def mutate_app_db(path: Path, at: datetime, seed: int = 1) -> dict[str, int]:
    """Simulate the app at work after a load: refunds, plan upgrades, a new user with an order.

    Every changed or new row gets `updated_at = at`. Returns how many rows changed per table, which
    is exactly what an incremental load should pick up next.
    """
    rng = np.random.default_rng(seed)
    stamp = at.strftime("%Y-%m-%d %H:%M:%S")
    changed: dict[str, int] = {}
    with sqlite3.connect(path) as conn:
        completed = [r[0] for r in conn.execute(
            "SELECT order_id FROM orders WHERE status = 'completed' ORDER BY order_id")]
        refunds = [completed[i] for i in sorted(rng.choice(len(completed), min(5, len(completed)), replace=False))]
        conn.executemany("UPDATE orders SET status = 'refunded', updated_at = ? WHERE order_id = ?",
                         [(stamp, o) for o in refunds])
        active = conn.execute("SELECT subscription_id, plan FROM subscriptions WHERE status = 'active' "
                              "AND plan != 'enterprise' ORDER BY subscription_id LIMIT 3").fetchall()
        upgrade = {"starter": "pro", "pro": "enterprise"}
        for sub_id, plan in active:
            new_plan = upgrade[plan]
            conn.execute("UPDATE subscriptions SET plan = ?, mrr = ?, updated_at = ? WHERE subscription_id = ?",
                         (new_plan, PLAN_MRR[new_plan], stamp, sub_id))
            (n,) = conn.execute("SELECT count(*) FROM subscription_events WHERE subscription_id = ?",
                                (sub_id,)).fetchone()
            conn.execute("INSERT INTO subscription_events VALUES (?, ?, 'upgraded', ?, ?, ?, ?)",
                         (f"{sub_id}-{n + 1:03d}", sub_id, new_plan, PLAN_MRR[new_plan], stamp, stamp))
        tenant_id, product_id, price = conn.execute(
            "SELECT tenant_id, product_id, price FROM products ORDER BY product_id LIMIT 1").fetchone()
        user_id, order_id = f"u-new-{seed}", f"o-new-{seed}"
        conn.execute("INSERT INTO users VALUES (?, ?, 'example.com', ?, 'free', 'US', 'mobile', 'organic', ?)",
                     (user_id, tenant_id, stamp, stamp))
        conn.execute("INSERT INTO orders VALUES (?, ?, ?, 'completed', 'USD', ?, ?, ?)",
                     (order_id, tenant_id, user_id, price, stamp, stamp))
        conn.execute("INSERT INTO order_items VALUES (?, ?, ?, 1, ?, ?)",
                     (f"{order_id}-1", order_id, product_id, price, stamp))
    changed["orders"] = len(refunds) + 1
    changed["subscriptions"] = len(active)
    changed["subscription_events"] = len(active)
    changed["users"] = 1
    changed["order_items"] = 1
    return changed
