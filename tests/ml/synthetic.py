"""Daily metrics shaped like `marts.metrics_daily`, with known anomalies and events, for the ML tests.

The sample generator's tiny size has five weeks, too short to backtest; these frames have the
history a model needs and a ground truth that the tests control. They go through the same code
as the marts do (`to_panel`), and a warehouse built from them is a real DuckDB file.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

WEEKLY = np.array([1.0, 1.05, 1.05, 1.0, 0.95, 0.75, 0.7])


def metrics_daily(days: int = 112, tenants: int = 3, seed: int = 3, end: str = "2026-10-31",
                  anomalies: tuple[tuple[str, int, str, float], ...] = (), periodic: bool = False,
                  events: dict[str, float] | None = None) -> pd.DataFrame:
    """Wide daily metrics per tenant. `anomalies`: (tenant, day index, metric, factor); `events`:
    ISO day -> factor applied to every tenant's orders, revenue and sessions that day.

    `periodic` gives noise-free series that repeat every week exactly: seasonal naive is then
    perfect and no model can beat it.
    """
    rng = np.random.default_rng(seed)
    dates = pd.date_range(end=end, periods=days, freq="D")
    weekly = WEEKLY[dates.day_of_week]
    uplift = np.ones(days)
    for day, factor in (events or {}).items():
        uplift[dates == pd.Timestamp(day)] = factor
    frames = []
    for t in range(tenants):
        scale = 1.0 + 0.5 * t
        growth = 1.0 if periodic else np.linspace(1.0, 1.6, days)
        base = {"active_users": 400, "sessions": 650, "orders": 60, "errors": 25}
        values = {}
        for metric, level in base.items():
            mean = level * scale * weekly * growth * (uplift if metric in ("orders", "sessions") else 1.0)
            values[metric] = mean.round() if periodic else rng.poisson(mean).astype(float)
        values["revenue"] = values["orders"] * (50.0 if periodic else rng.gamma(40, 50 / 40, days))
        frame = pd.DataFrame({"date_day": dates, "tenant_id": f"t{t + 1:03d}", **values})
        for tenant, day, metric, factor in anomalies:
            if tenant == f"t{t + 1:03d}":
                frame.loc[day, metric] = round(frame.loc[day, metric] * factor)
                if metric == "orders":
                    frame.loc[day, "revenue"] = frame.loc[day, "revenue"] * factor
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def calendar(days: dict[str, str], kind: str = "promotion", tenant_id: str = "") -> pd.DataFrame:
    """An events calendar (as the seed has it) of `days`: ISO day -> event name."""
    return pd.DataFrame({"event_date": list(days), "event_id": [n.lower().replace(" ", "_") for n in days.values()],
                         "event_name": list(days.values()), "event_kind": kind, "tenant_id": tenant_id})
