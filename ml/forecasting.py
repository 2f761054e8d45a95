"""Forecasts and insights from the registered models, as the rows the warehouse keeps.

Forecasts come from each family's champion. A family without a champion (say, history too
short to backtest) forecasts with its newest version and says so in `model_version`, so that a
first run still shows something and nobody mistakes it for a vetted model.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from ml import backtest, features, insights
from ml.baselines import Baselines
from ml.model import Forecaster
from ml.series import FAMILIES, to_series
from ml.tracking import Store

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
    version = store.champion(family)
    champion = version is not None
    version = version or store.latest_version(family)
    if version is None:
        return None
    model = Forecaster.restore(*store.load(version))
    return Loaded(family, model, version.name, str(version.version), champion)


def forecast(loaded: Loaded, wide: pd.DataFrame, horizons: int = features.MAX_HORIZON) -> pd.DataFrame:
    """Forecasts of every series of the family from its last day, horizons 1..`horizons`."""
    metrics = FAMILIES[loaded.family]
    series, _ = to_series(wide, metrics)
    if series.empty:
        return pd.DataFrame(columns=FORECAST_COLUMNS)
    last = series["date_day"].max()
    rows, _ = features.build(series, metrics, horizons, last_origin=last)
    rows = rows[rows["origin"] == last]
    if rows.empty:
        return pd.DataFrame(columns=FORECAST_COLUMNS)
    out = _shipped(loaded.model, rows, series, horizons)
    out = out.rename(columns={"target_date": "forecast_date", "origin": "origin_date"})
    out["model_name"], out["model_version"] = loaded.name, loaded.label
    out["created_at"] = datetime.now(UTC).replace(tzinfo=None)
    out["forecast_date"], out["origin_date"] = out["forecast_date"].dt.date, out["origin_date"].dt.date
    return out[FORECAST_COLUMNS]


def recent_error(loaded: Loaded, wide: pd.DataFrame, days: int = 7) -> tuple[float, int]:
    """sMAPE of the model's forecasts of the last `days` days, made from the day before them."""
    metrics = FAMILIES[loaded.family]
    series, _ = to_series(wide, metrics)
    if series.empty:
        return float("nan"), 0
    origin = series["date_day"].max() - pd.Timedelta(days=days)
    rows, _ = features.build(series, metrics, days, last_origin=origin)
    rows = rows[(rows["origin"] == origin) & rows["target"].notna()]
    if rows.empty:
        return float("nan"), 0
    predicted = _shipped(loaded.model, rows, series, days)["prediction"].to_numpy()
    actual = rows["target_value"].to_numpy()
    return backtest.measures(actual, predicted, np.full(len(actual), np.nan))["smape"], len(rows)


def _shipped(model: Forecaster, rows: pd.DataFrame, series: pd.DataFrame, horizons: int) -> pd.DataFrame:
    """The forecast as it ships: with ETS fitted on `series` up to each origin where the model
    weighs it in."""
    ets = Baselines(series, horizons).attach(rows)["ets"] if model.needs_ets else np.full(len(rows), np.nan)
    return model.forecast(rows, np.asarray(ets, dtype=float))


def find_insights(models: dict[str, Loaded | None], wide: pd.DataFrame) -> pd.DataFrame:
    """Anomalies of every series (forecast residuals, or robust z where no model reaches),
    trends and change points, for every family."""
    found = []
    covered: set[tuple[str, str]] = set()
    for family, metrics in FAMILIES.items():
        series, _ = to_series(wide, metrics)
        if series.empty:
            continue
        rows, _ = features.build(series, metrics)
        if models.get(family) is not None and not rows.empty:
            found.append(insights.anomalies(models[family].model, rows))
            covered |= set(zip(rows["tenant_id"], rows["metric"], strict=True))
        short = series[[(t, m) not in covered for t, m in zip(series["tenant_id"], series["metric"], strict=True)]]
        found += [insights.fallback_anomalies(short), insights.trends(series), insights.change_points(series)]
    frames = [f for f in found if not f.empty]
    if not frames:
        return pd.DataFrame(columns=[*insights.COLUMNS, "created_at"])
    out = pd.concat(frames, ignore_index=True)
    out["date_day"] = pd.to_datetime(out["date_day"]).dt.date
    out["created_at"] = datetime.now(UTC).replace(tzinfo=None)
    order = {"high": 0, "medium": 1, "low": 2}
    return out.sort_values(["severity", "date_day"], key=lambda c: c.map(order) if c.name == "severity" else c,
                           ascending=[True, False]).reset_index(drop=True)
