"""Writes simulated events and marketing spend into the landing zone, with realistic faults.

Files are written under a temporary name, fsync'd and renamed, as every landing-zone writer
must: a loader never sees a half-written file. Faults are injected on purpose and counted
for the ground truth: late events (in a later day's file), exact duplicates, malformed lines.
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

from ingestion.paths import write_atomically
from ingestion.sample_data.activity import ERRORS, FEATURES, LOCALES, PATHS, USER_AGENTS, Activity, Experiment
from ingestion.sample_data.sizes import SampleSize
from ingestion.sample_data.world import CHANNELS, COUNTRIES, DEVICES, World

LATE_SHARE, DUPLICATE_SHARE, MALFORMED_SHARE = 0.01, 0.004, 0.001
# events turned into Python values at a time when rendering (render_events)
RENDER_CHUNK = 250_000
MALFORMED_KINDS = ("not_json", "missing_field", "unknown_event_type", "wrong_type")
PAID_CHANNELS = [c for c in CHANNELS if c not in ("organic", "referral")]
MARKETING_COLUMNS = ["date", "tenant_id", "channel", "campaign", "impressions", "clicks", "spend"]


def render_events(activity: Activity, world: World, experiments: list[Experiment],
                  rng: np.random.Generator) -> Iterator[bytes]:
    """One JSON document per simulated event, in the shape the collector accepts, in day order.

    A generator: the writer streams them into files. The random draws are made for every event at
    once (numbers in arrays, so the stream of draws does not depend on the chunking), and turned into
    Python values a chunk of events at a time: a list per field for the whole sample took about
    470 bytes per event, 13 GiB at 30 times the default sample (docs/scaling.md).
    """
    ev = activity.events
    n = len(ev)
    tenant_ids = world.tenants["tenant_id"].to_numpy()
    users = world.users
    user_ids, plans = users["user_id"].to_numpy(), users["plan"].to_numpy()
    u_country, u_device = users["country"].to_numpy(), users["device"].to_numpy()
    sessions = activity.sessions
    session_ids = sessions["session_id"].to_numpy()
    anonymous_ids = sessions["anonymous_id"].to_numpy()
    anon_country = rng.choice(COUNTRIES, len(sessions))
    anon_device = rng.choice(DEVICES, len(sessions))
    revenue = dict(zip(activity.orders["order_id"], activity.orders["total_amount"].tolist(), strict=True))
    session_revenue = {s: revenue[o] for s, o in zip(ev["session"][ev["order_id"].notna()],
                                                     ev["order_id"][ev["order_id"].notna()], strict=True)}
    products = world.products
    n_p = len(products) // len(tenant_ids)
    path_drawn = rng.integers(0, len(PATHS), n)
    feature_drawn = rng.integers(0, len(FEATURES), n)
    product_drawn = ev["tenant"].to_numpy() * n_p + rng.integers(0, n_p, n)
    quantity_drawn = 1 + rng.poisson(0.3, n)
    cart_drawn = np.round(rng.lognormal(3.6, 0.5, n), 2)
    error_codes = list(ERRORS)
    error_drawn = rng.integers(0, len(error_codes), n)
    fields = [ev[name].to_numpy() for name in ("event_id", "event_type", "ts", "tenant", "user", "session",
                                                "experiment", "logged_treated", "order_id")]
    for start in range(0, n, RENDER_CHUNK):
        part = slice(start, start + RENDER_CHUNK)
        ids, kinds, ts, tenants, users_, sessions_, experiment_ids, logged, orders = (f[part] for f in fields)
        stamps = np.char.add(np.datetime_as_string(ts.astype("datetime64[s]"), unit="s"), "Z")
        columns = zip(ids, kinds.tolist(), stamps.tolist(), tenants.tolist(), users_.tolist(), sessions_.tolist(),
                      experiment_ids.tolist(), logged.tolist(), orders, strict=True)
        # the chunk's draws as Python values, by position in the chunk
        path, feature = PATHS[path_drawn[part]].tolist(), FEATURES[feature_drawn[part]].tolist()
        product_id = products["product_id"].to_numpy()[product_drawn[part]].tolist()
        product_price = products["price"].to_numpy()[product_drawn[part]].tolist()
        quantity, cart_guess = quantity_drawn[part].tolist(), cart_drawn[part].tolist()
        error_code = [error_codes[i] for i in error_drawn[part]]
        for i, (event_id, etype, stamp, t, u, s, e, logged_treated, order_id) in enumerate(columns):
            if etype == "page_view":
                props = {"path": path[i]}
            elif etype == "session_start":
                props = {"landing_page": path[i]}
            elif etype == "feature_used":
                props = {"feature": feature[i]}
            elif etype == "add_to_cart":
                props = {"product_id": product_id[i], "quantity": quantity[i], "price": product_price[i]}
            elif etype == "checkout_started":
                props = {"cart_value": session_revenue.get(s, cart_guess[i])}
            elif etype == "checkout_completed":
                props = {"order_id": order_id, "revenue": revenue[order_id]}
            elif etype == "error":
                props = {"code": error_code[i], "message": ERRORS[error_code[i]]}
            elif etype == "signup":
                props = {"plan": str(plans[u])}
            else:  # experiment_assigned / experiment_converted, with the variant the app logged
                props = {"experiment_id": experiments[e].experiment_id,
                         "variant": "treatment" if logged_treated else "control"}
            if u >= 0:
                country, device = str(u_country[u]), str(u_device[u])
            else:
                country, device = str(anon_country[s]), str(anon_device[s])
            yield orjson.dumps({
                "event_id": event_id,
                "event_type": etype,
                "timestamp": stamp,
                "tenant_id": str(tenant_ids[t]),
                "user_id": str(user_ids[u]) if u >= 0 else None,
                "anonymous_id": anonymous_ids[s] if u < 0 else None,
                "session_id": str(session_ids[s]),
                "properties": props,
                "context": {"schema_version": 1, "device": device, "country": country, "locale": LOCALES[country],
                            "user_agent": USER_AGENTS[device], "library": "sample-generator"},
            })


def _malformed(line: bytes, kind: str, rng: np.random.Generator) -> bytes:
    if kind == "not_json":
        return line[: len(line) // 2]
    doc = orjson.loads(line)
    doc["event_id"] = f"{int(rng.integers(0, 2**63)):016x}bad"
    if kind == "missing_field":
        del doc["tenant_id"]
    elif kind == "unknown_event_type":
        doc["event_type"] = "page_veiw"
    else:  # wrong_type
        doc["timestamp"] = 1767225600
    return orjson.dumps(doc)


def write_event_files(directory: Path, size: SampleSize, lines: Iterable[bytes], day: np.ndarray,
                      rng: np.random.Generator) -> dict:
    """Stream day-ordered lines into one file per day, with late, duplicate and malformed lines.

    Lines only ever move to the same or a later day's file, so a day's file is complete, and
    written, as soon as the first line of a later day arrives.
    """
    n = len(day)
    file_day = day.copy()
    late = rng.random(n) < LATE_SHARE
    file_day[late] = np.minimum(day[late] + rng.integers(1, 4, late.sum()), size.days - 1)
    dup_day = np.full(n, -1)
    dup = rng.random(n) < DUPLICATE_SHARE
    dup_day[dup] = np.minimum(file_day[dup] + rng.integers(0, 3, dup.sum()), size.days - 1)
    bad = rng.random(n) < MALFORMED_SHARE
    bad_kinds: Counter[str] = Counter()

    directory.mkdir(parents=True, exist_ok=True)
    pending: dict[int, list[bytes]] = defaultdict(list)
    written = 0

    def flush_before(limit: int) -> None:
        nonlocal written
        while written < limit:
            name = (pd.Timestamp(size.start_date) + pd.Timedelta(days=written)).strftime("events_%Y-%m-%d.jsonl")
            write_atomically(directory / name, b"\n".join(pending.pop(written, [])) + b"\n")
            written += 1

    for i, line in enumerate(lines):
        flush_before(day[i])
        line = bytes(memoryview(line))  # orjson's result keeps a 4 KiB buffer: hold an exact copy
        pending[file_day[i]].append(line)
        if dup_day[i] >= 0:
            pending[dup_day[i]].append(line)
        if bad[i]:
            kind = MALFORMED_KINDS[sum(bad_kinds.values()) % len(MALFORMED_KINDS)]
            bad_kinds[kind] += 1
            pending[file_day[i]].append(_malformed(line, kind, rng))
    flush_before(size.days)
    return {
        "files": size.days,
        "valid_events": n,
        "late_events": int((file_day > day).sum()),
        "duplicate_lines": int(dup.sum()),
        "malformed_lines": dict(bad_kinds),
    }


def write_marketing_files(directory: Path, world: World, size: SampleSize, activity_factor: np.ndarray,
                          rng: np.random.Generator) -> dict:
    """Daily spend per tenant on each paid channel, one CSV file per channel and day."""
    directory.mkdir(parents=True, exist_ok=True)
    tenant_ids = world.tenants["tenant_id"].tolist()
    users_per_tenant = np.bincount(world.user_tenant, minlength=size.tenants)
    base = 0.9 * users_per_tenant / max(size.days, 1) * 30
    share = {"paid_search": 0.45, "social": 0.3, "email": 0.05, "display": 0.2}
    rows = 0
    for d in range(size.days):
        day = (pd.Timestamp(size.start_date) + pd.Timedelta(days=d)).date()
        trend = 1.0 + 0.4 * d / max(size.days, 1)
        for channel in PAID_CHANNELS:
            spend = np.round(base * share[channel] * activity_factor[d] * trend
                             * rng.lognormal(0, 0.15, size.tenants), 2)
            impressions = (spend * rng.uniform(80, 140, size.tenants)).astype(int)
            clicks = (impressions * rng.uniform(0.008, 0.03, size.tenants)).astype(int)
            out = [MARKETING_COLUMNS]
            out += [[day.isoformat(), t, channel, f"{channel}_always_on", impressions[i], clicks[i], f"{spend[i]:.2f}"]
                    for i, t in enumerate(tenant_ids)]
            write_atomically(directory / f"spend_{channel}_{day.isoformat()}.csv", _csv_bytes(out))
            rows += len(tenant_ids)
    return {"files": size.days * len(PAID_CHANNELS), "rows": rows}


def _csv_bytes(rows: list[list]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue().encode()
