"""Rolling-origin backtests: the model and its baselines forecast from the same cutoffs.

Fold k trains on everything known at `end - 7k` days and forecasts forward from there; the
baselines see the same history. "forecast" is what ships (the booster combined with ETS, see
`ml.model`); "lightgbm" is the booster alone, kept to show what the combination adds. Scores
are kept per metric, for the all-tenants series and for the tenants' series, over the first
week ("horizon 7": days 1 to 7 ahead) and over all horizons.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml.baselines import Baselines
from ml.features import MAX_HORIZON
from ml.model import Forecaster, NotEnoughHistory
from ml.series import TOTAL

MODELS = ("forecast", "lightgbm", "seasonal_naive", "ets")
FOLD_STEP_DAYS = 7


@dataclass
class Backtest:
    predictions: pd.DataFrame  # one row per fold, series and horizon: actual and every model's forecast
    scores: pd.DataFrame  # one row per metric, level, window and model
    skipped_folds: list[str]

    @property
    def folds(self) -> int:
        return int(self.predictions["fold"].nunique()) if not self.predictions.empty else 0

    def score(self, metric: str, model: str, measure: str, level: str = "total", window: str = "h1-7") -> float:
        rows = self.scores[(self.scores["metric"] == metric) & (self.scores["model"] == model)
                           & (self.scores["level"] == level) & (self.scores["window"] == window)]
        return float(rows[measure].iloc[0]) if not rows.empty else float("nan")


def run(rows: pd.DataFrame, series: pd.DataFrame, folds: int = 4, baselines: Baselines | None = None) -> Backtest:
    """Backtest on `folds` rolling origins, a week apart, ending a week before the data does."""
    baselines = baselines or Baselines(series, MAX_HORIZON)
    end = series["date_day"].max()
    parts, skipped = [], []
    for k in range(folds, 0, -1):
        cutoff = end - pd.Timedelta(days=FOLD_STEP_DAYS * k)
        ahead = rows[(rows["origin"] == cutoff) & (rows["target_date"] <= end)]
        if ahead.empty:
            skipped.append(f"fold at {cutoff.date()}: no series has enough history before it")
            continue
        try:
            model = Forecaster().fit(rows[rows["target_date"] <= cutoff], baselines)
        except NotEnoughHistory as why:
            skipped.append(f"fold at {cutoff.date()}: {why}")
            continue
        ahead = baselines.attach(ahead)
        forecast = model.forecast(ahead, ahead["ets"].to_numpy())
        booster = model.predict(ahead)["prediction"].to_numpy()
        parts.append(forecast.assign(
            actual=ahead["target_value"].to_numpy(), fold=cutoff, lightgbm=booster,
            **{column: ahead[column].to_numpy() for column in ("seasonal_naive", "ets", "scale")}))
    predictions = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return Backtest(predictions, scores(predictions), skipped)


def measures(actual: np.ndarray, forecast: np.ndarray, scale: np.ndarray) -> dict[str, float]:
    """MAPE (days with a nonzero actual), sMAPE and MASE of one set of forecasts."""
    error = np.abs(actual - forecast)
    nonzero = actual != 0
    denominator = np.abs(actual) + np.abs(forecast)
    return {
        "mape": float(np.mean(error[nonzero] / np.abs(actual[nonzero]))) if nonzero.any() else float("nan"),
        "smape": float(np.mean(np.where(denominator > 0, 2 * error / np.where(denominator > 0, denominator, 1), 0))),
        "mase": float(np.nanmean(error / scale)) if np.isfinite(scale).any() else float("nan"),
    }


def scores(predictions: pd.DataFrame) -> pd.DataFrame:
    if predictions.empty:
        return pd.DataFrame(columns=["metric", "level", "window", "model", "mape", "smape", "mase",
                                     "coverage_80", "coverage_95", "points"])
    out = []
    levels = {"total": predictions["tenant_id"] == TOTAL, "tenant": predictions["tenant_id"] != TOTAL}
    windows = {"h1-7": predictions["horizon"] <= 7, "h1-28": predictions["horizon"] <= MAX_HORIZON}
    for metric, of_metric in predictions.groupby("metric"):
        for level, in_level in levels.items():
            for window, in_window in windows.items():
                rows = of_metric[in_level[of_metric.index] & in_window[of_metric.index]]
                if rows.empty:
                    continue
                actual, scale = rows["actual"].to_numpy(), rows["scale"].to_numpy()
                for model in MODELS:
                    forecast = rows["prediction" if model == "forecast" else model].to_numpy()
                    row = {"metric": metric, "level": level, "window": window, "model": model,
                           **measures(actual, forecast, scale), "points": len(rows)}
                    if model == "forecast":
                        row["coverage_80"] = float(np.mean((actual >= rows["lower_80"]) & (actual <= rows["upper_80"])))
                        row["coverage_95"] = float(np.mean((actual >= rows["lower_95"]) & (actual <= rows["upper_95"])))
                    out.append(row)
    return pd.DataFrame(out)
