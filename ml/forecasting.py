"""Forecasts and insights from the registered models, as the rows the warehouse keeps.

Forecasts come from each family's champion. A family without a champion (say, history too
short to backtest) forecasts with its newest version and says so in `model_version`, so that a
first run still shows something and nobody mistakes it for a vetted model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from ml import detection, events, insights
from ml.forecaster import Forecaster, Setup, prepare
from ml.series import FAMILIES, METRICS, to_panel
from ml.tracking import OutdatedVersion, Store

FORECAST_COLUMNS = ["forecast_date", "tenant_id", "metric", "prediction", "lower_80", "upper_80", "lower_95",
                    "upper_95", "horizon", "origin_date", "model_name", "model_version", "created_at"]


@dataclass
class Loaded:
    family: str
    model: Forecaster
    name: str
    version: str
    champion: bool

    @property
    def label(self) -> str:
        return self.version if self.champion else f"{self.version} (not champion)"


def load(store: Store, family: str) -> Loaded | None:
    """The family's champion (else its newest version); None when there is none this code can read."""
    version = store.champion(family)
    champion = version is not None
    version = version or store.latest_version(family)
    if version is None:
        return None
    try:
        model = Forecaster.restore(*store.load(version))
    except OutdatedVersion:
        return None
    return Loaded(family, model, version.name, str(version.version), champion)


def future_rows(panel: pd.DataFrame, setup: Setup, calendar: pd.DataFrame | None) -> pd.DataFrame:
    """The periods 1..horizon after each series' last one, with their calendar events."""
    last = panel.groupby("unique_id").tail(1)
    offset = pd.tseries.frequencies.to_offset(setup.freq)
    steps = np.arange(1, setup.horizon + 1)
    rows = last.loc[last.index.repeat(len(steps)), ["unique_id", "ds", "tenant_id", "metric", "nonneg"]]
    rows = rows.rename(columns={"ds": "origin"}).reset_index(drop=True)
    rows["horizon"] = np.tile(steps, len(last))
    rows["ds"] = [origin + k * offset for origin, k in zip(rows["origin"], rows["horizon"], strict=True)]
    rows["event"] = ""
    if calendar is not None and not calendar.empty:
        for tenant_id, index in rows.groupby("tenant_id").groups.items():
            days = pd.DatetimeIndex(rows.loc[index, "ds"])
            rows.loc[index, "event"] = events.for_series(calendar, tenant_id, days)[0]
    return rows


def _panel(family: str, wide: pd.DataFrame, calendar, setup: Setup) -> pd.DataFrame:
    panel, _ = to_panel(wide, family, calendar)
    if panel.empty:
        return panel
    return panel[panel.groupby("unique_id")["y"].transform("size") >= setup.min_length]


def forecast(loaded: Loaded, wide: pd.DataFrame, calendar: pd.DataFrame | None = None) -> pd.DataFrame:
    """Forecasts of every series of the family from its last day, each metric to its horizon."""
    setup = loaded.model.setup
    panel = _panel(loaded.family, wide, calendar, setup)
    if panel.empty:
        return pd.DataFrame(columns=FORECAST_COLUMNS)
    future = future_rows(panel, setup, calendar)
    out = loaded.model.predict(prepare(panel, setup), future)
    out = out[out["horizon"] <= out["metric"].map(lambda m: METRICS[m].horizon)]
    out = out.rename(columns={"ds": "forecast_date", "origin": "origin_date"})
    out["model_name"], out["model_version"] = loaded.name, loaded.label
    out["created_at"] = datetime.now(UTC).replace(tzinfo=None)
    out["forecast_date"], out["origin_date"] = out["forecast_date"].dt.date, out["origin_date"].dt.date
    return out[FORECAST_COLUMNS].reset_index(drop=True)


def recent_error(loaded: Loaded, wide: pd.DataFrame, calendar: pd.DataFrame | None = None,
                 days: int = 7) -> tuple[float, int]:
    """sMAPE of the model's forecasts of the last `days` days, made from the day before them."""
    last = wide["date_day"].max() if not wide.empty else None
    if last is None:
        return float("nan"), 0
    origin = last - pd.Timedelta(days=days)
    known = forecast(loaded, wide[wide["date_day"] <= origin], calendar)
    if known.empty:
        return float("nan"), 0
    panel, _ = to_panel(wide, loaded.family, calendar)
    actual = panel.assign(forecast_date=panel["ds"].dt.date)[["tenant_id", "metric", "forecast_date", "y"]]
    both = known.merge(actual, on=["tenant_id", "metric", "forecast_date"], how="inner")
    if both.empty:
        return float("nan"), 0
    a, f = both["y"].to_numpy(float), both["prediction"].to_numpy(float)
    denominator = np.abs(a) + np.abs(f)
    smape = np.mean(np.where(denominator > 0, 2 * np.abs(a - f) / np.where(denominator > 0, denominator, 1), 0))
    return float(smape), len(both)


def find_insights(wide: pd.DataFrame, calendar: pd.DataFrame | None = None,
                  families: tuple[str, ...] = tuple(FAMILIES),
                  tenant_names: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Anomalies (out of sample; robust z where a series is too short), expected events, trends and
    change points, for every family; the explanations name tenants by `tenant_names` (id -> name)."""
    names = tenant_names or {}
    found = []
    for family in families:
        panel, _ = to_panel(wide, family, calendar)
        if panel.empty:
            continue
        spec = METRICS[FAMILIES[family][0]]
        setup = Setup(spec.freq, spec.season, spec.season)
        lengths = panel.groupby("unique_id")["y"].transform("size")
        judged = detection.judge(panel[lengths > setup.min_length], setup)
        found.append(insights.anomalies(judged, names))
        found.append(insights.fallback_anomalies(panel[lengths <= setup.min_length], names))
        found.append(insights.on_event_days(pd.concat([insights.trends(panel, names),
                                                       insights.change_points(panel, names)]), panel))
    frames = [f for f in found if not f.empty]
    if not frames:
        return pd.DataFrame(columns=[*insights.COLUMNS, "created_at"])
    out = pd.concat(frames, ignore_index=True)
    out["date_day"] = pd.to_datetime(out["date_day"]).dt.date
    out["created_at"] = datetime.now(UTC).replace(tzinfo=None)
    order = {"high": 0, "medium": 1, "low": 2}
    return out.sort_values(["severity", "date_day"], key=lambda c: c.map(order) if c.name == "severity" else c,
                           ascending=[True, False]).reset_index(drop=True)
