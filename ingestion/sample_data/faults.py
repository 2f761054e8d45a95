"""Faults a sample can be generated with, to prove the quality gates (`--fault NAME`).

Each fault edits the finished sample in place, on its last day (so the trailing history that
volume bands learn from stays clean), and returns what it did for the ground truth.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import date, datetime, timedelta

import orjson

from ingestion.events.schema import validate_event
from ingestion.paths import DataLayout, write_atomically

# How much later a client's retry reports a checkout again (`duplicate_order_ids`).
RETRY_DELAY = timedelta(seconds=30)


def _edit_last_day(layout: DataLayout, last_day: date, edit: Callable[[list[dict]], list[dict]]) -> None:
    path = layout.events_dir / f"events_{last_day.isoformat()}.jsonl"
    events, other = [], []
    for line in path.read_bytes().splitlines():
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            other.append(line)  # the sample's own malformed lines stay as they are
            continue
        (events if isinstance(doc, dict) and str(doc.get("timestamp", ""))[:10] == last_day.isoformat()
         else other).append(doc if isinstance(doc, dict) else line)
    lines = [orjson.dumps(d) if isinstance(d, dict) else d for d in (*other, *edit(events))]
    write_atomically(path, b"\n".join(lines) + b"\n")


def volume_drop(layout: DataLayout, last_day: date) -> dict:
    """One tenant loses 90 % of its events on the last day."""
    tenant = "t001"
    kept = {}

    def edit(events):
        theirs = [e for e in events if e.get("tenant_id") == tenant]
        kept["before"], kept["after"] = len(theirs), len(theirs[::10])
        return [e for e in events if e.get("tenant_id") != tenant] + theirs[::10]

    _edit_last_day(layout, last_day, edit)
    return {"tenant_id": tenant, "date": last_day.isoformat(), **kept}


def null_user_ids(layout: DataLayout, last_day: date) -> dict:
    """Six in ten identified events of the last day lose their user_id (they stay valid: anonymous)."""
    changed = 0

    def edit(events):
        nonlocal changed
        for i, e in enumerate(e for e in events if e.get("user_id")):
            if i % 10 < 6:
                e["anonymous_id"], e["user_id"] = f"anon-{e['user_id']}", None
                changed += 1
        return events

    _edit_last_day(layout, last_day, edit)
    return {"date": last_day.isoformat(), "events_changed": changed}


def duplicate_order_ids(layout: DataLayout, last_day: date) -> dict:
    """Five checkouts are reported twice, under new event ids, 30 seconds later (a client retrying
    without an idempotency key)."""
    copies = []

    def edit(events):
        # valid checkouts only: a copy of one of the sample's malformed events never lands
        for e in [e for e in events if e.get("event_type") == "checkout_completed" and validate_event(e) is None][:5]:
            retried = datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")) + RETRY_DELAY
            copies.append({**e, "event_id": e["event_id"][:-4] + "d0d0",
                           "timestamp": retried.isoformat().replace("+00:00", "Z")})
        return events + copies

    _edit_last_day(layout, last_day, edit)
    return {"date": last_day.isoformat(), "duplicate_event_ids": [c["event_id"] for c in copies],
            "order_ids": [c["properties"]["order_id"] for c in copies]}


def future_events(layout: DataLayout, last_day: date) -> dict:
    """Five events are dated a year later than they happened (a client clock gone wrong). Checkouts
    are left alone, so that this fault and a duplicated order never meet in one event (the later
    copy of an order is decided by its timestamp)."""
    moved = []

    def edit(events):
        for e in [e for e in events if e.get("event_type") != "checkout_completed"][:5]:
            e["timestamp"] = str(int(e["timestamp"][:4]) + 1) + e["timestamp"][4:]
            moved.append(e["event_id"])
        return events

    _edit_last_day(layout, last_day, edit)
    return {"date": last_day.isoformat(), "event_ids": moved}


def negative_revenue(layout: DataLayout, last_day: date) -> dict:
    """Three orders get a negative total in the app database."""
    with sqlite3.connect(layout.app_db) as conn:
        ids = [r[0] for r in conn.execute("SELECT order_id FROM orders ORDER BY created_at DESC, order_id LIMIT 3")]
        conn.executemany("UPDATE orders SET total_amount = -total_amount WHERE order_id = ?", [(i,) for i in ids])
    return {"order_ids": ids}


def dropped_column(layout: DataLayout, last_day: date) -> dict:
    """The app database's users table loses its country column."""
    with sqlite3.connect(layout.app_db) as conn:
        conn.execute("ALTER TABLE users DROP COLUMN country")
    return {"table": "users", "column": "country"}


FAULTS: dict[str, Callable[[DataLayout, date], dict]] = {
    f.__name__: f for f in (volume_drop, null_user_ids, duplicate_order_ids, future_events, negative_revenue,
                            dropped_column)
}


def inject(layout: DataLayout, names: list[str], last_day: date) -> dict[str, dict]:
    return {name: FAULTS[name](layout, last_day) for name in names}
