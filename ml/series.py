"""Metric series read from the marts, checked against their declared frequency and made regular.

Each metric is declared once (`METRICS`): its family (one global model and one MLflow experiment
per family), frequency and season, how far ahead it is forecast, whether it may be negative and
whether it counts events (whose noise is at least Poisson). A series is one metric of one tenant,
or of all tenants together (`TOTAL`).

A series whose dates do not fit its declared frequency (weekly rows where days are declared,
timestamps inside a day) is refused with the tenant, metric and what its dates look like: filled
as daily, a weekly series would be six parts invention. Within the declared frequency, a missing
period is added and filled from the same season position, never shifted onto a neighbour; values
that cannot be true (NaN, and negatives where the metric allows none) are replaced the same way.
What was filled is counted, so a run can say how much of its input it had to repair.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ml import events

TOTAL = "all"  # the tenant id of the all-tenants series


@dataclass(frozen=True)
class MetricSpec:
    family: str
    freq: str = "D"  # pandas frequency of the series
    season: int = 7  # periods in a season
    horizon: int = 28  # periods forecast ahead
    nonneg: bool = True  # the metric cannot be negative
    counts: bool = False  # a count of events: its noise is at least Poisson


METRICS: dict[str, MetricSpec] = {
    "revenue": MetricSpec("commerce"),
    "orders": MetricSpec("commerce", counts=True),
    "active_users": MetricSpec("engagement"),
    "sessions": MetricSpec("engagement", counts=True),
    # errors come in bursts nobody can see a month ahead: two weeks is as far as they are forecast
    "errors": MetricSpec("engagement", horizon=14, counts=True),
}
FAMILIES: dict[str, tuple[str, ...]] = {}
for _name, _spec in METRICS.items():
    FAMILIES.setdefault(_spec.family, ())
    FAMILIES[_spec.family] += (_name,)


class SeriesFrequencyError(ValueError):
    """A series' dates do not fit the frequency its metric declares."""


def metrics_daily_sql(relation: str = "marts.metrics_daily", metrics: tuple[str, ...] = tuple(METRICS)) -> str:
    """The metrics of `metrics_daily` per tenant and day (the SQL is the same in every dialect)."""
    columns = ", ".join(f"cast({m} as double precision) as {m}" for m in metrics)
    return f"select date_day, tenant_id, {columns} from {relation} order by date_day, tenant_id"


def metrics_daily_frame(names: list[str], rows: list[tuple]) -> pd.DataFrame:
    """That query's result, wide (one column per metric)."""
    frame = pd.DataFrame(rows, columns=names)
    frame["date_day"] = pd.to_datetime(frame["date_day"])
    return frame


def read_metrics_daily(conn, metrics: tuple[str, ...] = tuple(METRICS),
                       relation: str = "marts.metrics_daily") -> pd.DataFrame:
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
        lines += [f"{t}/{m}: {n} NaN or impossible (negative) value(s) replaced"
                  for (t, m), n in sorted(self.invalid_values.items())]
        return lines


def check_frequency(dates: pd.Series, freq: str, what: str) -> None:
    """Refuse dates that do not sit on `freq`'s grid, or that skip most of it (another frequency)."""
    dates = pd.DatetimeIndex(pd.to_datetime(dates)).unique().sort_values()
    if len(dates) < 2:
        return
    offset = pd.tseries.frequencies.to_offset(freq)
    grid = pd.date_range(dates[0], dates[-1], freq=offset)
    off_grid = dates.difference(grid)
    seen = pd.infer_freq(dates) if len(dates) >= 3 else None
    if len(off_grid) or len(dates) < 0.5 * len(grid):
        looks = f"its dates look {seen!r}" if seen else f"e.g. {', '.join(str(d) for d in dates[:3])}"
        raise SeriesFrequencyError(
            f"{what}: declared frequency {freq!r}, but {len(off_grid) or len(grid) - len(dates)} of its dates "
            f"{'are off that grid' if len(off_grid) else 'are missing from it'} ({looks}); declare its "
            "frequency in ml/series.py METRICS or send it at the declared one")


def fill_gaps(values: np.ndarray, season: int) -> np.ndarray:
    """Fill NaNs from the same season position a season before (else after, else two seasons),
    else the series median; a series with no valid value at all becomes zeros."""
    out = values.copy()
    for i in np.flatnonzero(np.isnan(out)):
        for j in (i - season, i + season, i - 2 * season, i + 2 * season):
            if 0 <= j < len(values) and not np.isnan(values[j]):
                out[i] = values[j]
                break
    if np.isnan(out).any():
        median = np.nanmedian(values) if np.isfinite(values).any() else 0.0
        out = np.where(np.isnan(out), median, out)
    return out


def to_panel(wide: pd.DataFrame, family: str, calendar: pd.DataFrame | None = None,
             time_column: str = "date_day") -> tuple[pd.DataFrame, Repairs]:
    """The family's series, long (unique_id, ds, y, tenant_id, metric, nonneg, counts, event,
    event_name), each on its frequency's complete grid; the total summed from the repaired tenants."""
    metrics = FAMILIES[family]
    repairs = Repairs()
    columns = ["unique_id", "ds", "y", "tenant_id", "metric", "nonneg", "counts", "event", "event_name", "filled"]
    if wide.empty:
        return pd.DataFrame(columns=columns), repairs
    spec = METRICS[metrics[0]]
    parts = []
    for tenant_id, rows in wide.groupby("tenant_id", sort=True):
        check_frequency(rows[time_column], spec.freq, f"tenant {tenant_id} ({', '.join(metrics)})")
        rows = rows.drop_duplicates(time_column, keep="last").set_index(time_column)
        grid = pd.date_range(wide[time_column].min(), wide[time_column].max(), freq=spec.freq)
        rows = rows.reindex(grid)
        missing = rows["tenant_id"].isna().to_numpy()
        for metric in metrics:
            values = rows[metric].to_numpy(dtype=float, na_value=np.nan)
            valid = np.isfinite(values) & ((values >= 0) | (not METRICS[metric].nonneg))
            invalid = ~missing & ~valid
            if missing.any():
                repairs.missing_dates[(tenant_id, metric)] = int(missing.sum())
            if invalid.any():
                repairs.invalid_values[(tenant_id, metric)] = int(invalid.sum())
            values = np.where(valid, values, np.nan)
            parts.append(pd.DataFrame({"tenant_id": tenant_id, "metric": metric, "ds": grid,
                                       "y": fill_gaps(values, METRICS[metric].season), "filled": ~valid}))
    series = pd.concat(parts, ignore_index=True)
    total = series.groupby(["metric", "ds"], as_index=False).agg(y=("y", "sum"), filled=("filled", "any"))
    series = pd.concat([series, total.assign(tenant_id=TOTAL)], ignore_index=True)
    series["unique_id"] = series["tenant_id"] + "/" + series["metric"]
    series["nonneg"] = series["metric"].map(lambda m: METRICS[m].nonneg)
    series["counts"] = series["metric"].map(lambda m: METRICS[m].counts)
    series["event"], series["event_name"] = "", ""
    if calendar is not None and not calendar.empty:
        for tenant_id, index in series.groupby("tenant_id").groups.items():
            kinds, names = events.for_series(calendar, tenant_id, pd.DatetimeIndex(series.loc[index, "ds"]))
            series.loc[index, "event"], series.loc[index, "event_name"] = kinds, names
    return series[columns].sort_values(["unique_id", "ds"]).reset_index(drop=True), repairs
