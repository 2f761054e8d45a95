"""Daily metric series read from the marts, made regular before any model sees them.

A series is one metric of one tenant, or of all tenants together (`TOTAL`). Every series covers
every day of the mart's window: a missing day is added with its date and filled, never shifted
onto a neighbour, and values that cannot be true (NaN, negative counts or money) are replaced the
same way. What was filled is counted, so a run can say how much of its input it had to repair.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

TOTAL = "all"  # the tenant id of the all-tenants series

# Metric families: one MLflow experiment and one global model each.
FAMILIES: dict[str, tuple[str, ...]] = {
    "commerce": ("revenue", "orders"),
    "engagement": ("active_users", "sessions", "errors"),
}
METRICS: tuple[str, ...] = tuple(m for family in FAMILIES.values() for m in family)


def metrics_daily_sql(relation: str = "marts.metrics_daily", metrics: tuple[str, ...] = METRICS) -> str:
    """The metrics of `metrics_daily` per tenant and day (the SQL is the same in every dialect)."""
    columns = ", ".join(f"cast({m} as double precision) as {m}" for m in metrics)
    return f"select date_day, tenant_id, {columns} from {relation} order by date_day, tenant_id"


def metrics_daily_frame(names: list[str], rows: list[tuple]) -> pd.DataFrame:
    """That query's result, wide (one column per metric)."""
    frame = pd.DataFrame(rows, columns=names)
    frame["date_day"] = pd.to_datetime(frame["date_day"])
    return frame


def read_metrics_daily(conn, metrics: tuple[str, ...] = METRICS, relation: str = "marts.metrics_daily") -> pd.DataFrame:
    """`metrics_daily` from a DB-API connection to any of the warehouses."""
    cursor = conn.cursor()
    cursor.execute(metrics_daily_sql(relation, metrics))
    return metrics_daily_frame([d[0] for d in cursor.description], cursor.fetchall())


@dataclass
class Repairs:
    """What regularizing changed, per series: missing dates and impossible values filled."""

    missing_dates: dict[tuple[str, str], int] = field(default_factory=dict)
    invalid_values: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.missing_dates.values()) + sum(self.invalid_values.values())

    def describe(self) -> list[str]:
        lines = [f"{t}/{m}: {n} missing date(s) filled" for (t, m), n in sorted(self.missing_dates.items())]
        lines += [f"{t}/{m}: {n} NaN or negative value(s) replaced"
                  for (t, m), n in sorted(self.invalid_values.items())]
        return lines


def to_series(wide: pd.DataFrame, metrics: tuple[str, ...]) -> tuple[pd.DataFrame, Repairs]:
    """Long series frame (tenant_id, metric, date_day, value, filled) on a complete daily calendar.

    The total is summed from the repaired tenant series, so it never counts a value the tenants
    do not have.
    """
    repairs = Repairs()
    if wide.empty:
        return pd.DataFrame(columns=["tenant_id", "metric", "date_day", "value", "filled"]), repairs
    days = pd.date_range(wide["date_day"].min(), wide["date_day"].max(), freq="D")
    parts = []
    for tenant_id, rows in wide.groupby("tenant_id", sort=True):
        rows = rows.drop_duplicates("date_day", keep="last").set_index("date_day").reindex(days)
        missing = rows["tenant_id"].isna()
        for metric in metrics:
            values = rows[metric].to_numpy(dtype=float, na_value=np.nan)
            invalid = ~missing.to_numpy() & ~(np.isfinite(values) & (values >= 0))
            if missing.any():
                repairs.missing_dates[(tenant_id, metric)] = int(missing.sum())
            if invalid.any():
                repairs.invalid_values[(tenant_id, metric)] = int(invalid.sum())
            values = np.where(np.isfinite(values) & (values >= 0), values, np.nan)
            filled = np.isnan(values)
            parts.append(pd.DataFrame({"tenant_id": tenant_id, "metric": metric, "date_day": days,
                                       "value": fill_gaps(values), "filled": filled}))
    series = pd.concat(parts, ignore_index=True)
    total = (series.groupby(["metric", "date_day"], as_index=False)
             .agg(value=("value", "sum"), filled=("filled", "any")))
    total.insert(0, "tenant_id", TOTAL)
    return pd.concat([series, total], ignore_index=True), repairs


def fill_gaps(values: np.ndarray) -> np.ndarray:
    """Fill NaNs from the same weekday a week before (else after), else the series median.

    Weekly seasonality dominates daily business metrics, so the same weekday is the honest guess;
    a series with no valid value at all becomes zeros.
    """
    out = values.copy()
    for i in np.flatnonzero(np.isnan(out)):
        for j in (i - 7, i + 7, i - 14, i + 14):
            if 0 <= j < len(values) and not np.isnan(values[j]):
                out[i] = values[j]
                break
    if np.isnan(out).any():
        median = np.nanmedian(values) if np.isfinite(values).any() else 0.0
        out = np.where(np.isnan(out), median, out)
    return out
