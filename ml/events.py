"""The events calendar: days on which a metric is expected to move, declared as a dbt seed.

`dbt_project/seeds/events_calendar.csv` lists retail peaks (Black Friday, Cyber Monday), public
holidays and one tenant's own events (a launch, an outage). The forecasts learn each kind's
effect from its past occurrences and add it on the days ahead; anomaly detection expects the
movement of an event day instead of flagging it, and the insight names the event.

A bad row (a date that is not one, a tenant that does not exist, an unknown kind) is rejected
with the row, field and value, before any model is trained: a silently dropped Black Friday
would come back as a high-severity anomaly.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

SEED = Path(__file__).resolve().parents[1] / "dbt_project" / "seeds" / "events_calendar.csv"
RELATION = "marts.events_calendar"
COLUMNS = ["event_date", "event_id", "event_name", "event_kind", "tenant_id"]
KINDS = ("retail_peak", "holiday", "launch", "outage", "promotion", "other")
EVERY_TENANT = ""  # tenant_id of an event that concerns every tenant


class CalendarError(ValueError):
    """A row of the events calendar is wrong; the message names the row, the field and the value."""


def read_seed(path: Path = SEED) -> pd.DataFrame:
    """The calendar as the seed file has it (for benchmarks and tests that run without a warehouse)."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def read(run: Callable[[str], tuple[list[str], list[tuple]]], relation: str = RELATION) -> pd.DataFrame:
    """The calendar as dbt loaded it, read with `run` (a `Warehouse.query` or a published `Reader.run`:
    the SQL is the same in every dialect); empty when the seed was never loaded (a warehouse built
    before it)."""
    try:
        names, rows = run(f"select {', '.join(COLUMNS)} from {relation}")
    except Exception as err:  # any driver's "no such table"
        if "does not exist" in str(err).lower() or "not found" in str(err).lower():
            return pd.DataFrame(columns=COLUMNS)
        raise
    return pd.DataFrame(rows, columns=names).fillna("")


def validate(calendar: pd.DataFrame, tenants: set[str] | None = None, source: str = "events_calendar") -> pd.DataFrame:
    """The calendar with `event_date` parsed, or `CalendarError` naming the first bad row.

    Rows are numbered as in the seed file (the header is line 1). `tenants`: the tenants that exist;
    None skips that check.
    """
    missing = [c for c in COLUMNS if c not in calendar.columns]
    if missing:
        raise CalendarError(f"{source}: missing column(s) {missing}; expected {COLUMNS}")
    frame = calendar[COLUMNS].astype(str).apply(lambda c: c.str.strip()).replace({"nan": "", "None": ""})
    dates = pd.to_datetime(frame["event_date"], format="%Y-%m-%d", errors="coerce")
    for position, row in enumerate(frame.itertuples(index=False)):
        where = f"{source} line {position + 2}"
        if pd.isna(dates.iloc[position]):
            raise CalendarError(f"{where}: event_date {row.event_date!r} is not a date (YYYY-MM-DD)")
        if not row.event_id or not row.event_name:
            raise CalendarError(f"{where}: event_id and event_name are required")
        if row.event_kind not in KINDS:
            raise CalendarError(f"{where}: event_kind {row.event_kind!r} is not one of {list(KINDS)}")
        if tenants is not None and row.tenant_id and row.tenant_id not in tenants:
            raise CalendarError(f"{where}: tenant_id {row.tenant_id!r} is not a tenant of the warehouse "
                                f"(known: {', '.join(sorted(tenants)[:10])}); leave it empty for every tenant")
    return frame.assign(event_date=dates)


def for_series(calendar: pd.DataFrame, tenant_id: str, days: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """(kind, name) of the event on each day for one tenant's series ('' where none).

    The all-tenants series (and any series that is not a tenant's) takes the events of every tenant;
    a tenant's series takes those and its own. Two events on one day: the first in the calendar.
    """
    mine = calendar[(calendar["tenant_id"] == EVERY_TENANT) | (calendar["tenant_id"] == tenant_id)]
    mine = mine.drop_duplicates("event_date").set_index("event_date")
    kinds = mine["event_kind"].reindex(days).fillna("").to_numpy(dtype=object)
    names = mine["event_name"].reindex(days).fillna("").to_numpy(dtype=object)
    return kinds, names
