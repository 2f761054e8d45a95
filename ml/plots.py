"""The PNG artifacts of a training run: feature importance and backtest forecasts."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display: training runs in workers and CI
import matplotlib.pyplot as plt
import pandas as pd

from ml.series import TOTAL


def feature_importance(importance: pd.Series, title: str):
    top = importance.head(20)[::-1]
    figure, axis = plt.subplots(figsize=(7, 6))
    axis.barh(top.index, top.to_numpy())
    axis.set_xlabel("gain")
    axis.set_title(title)
    figure.tight_layout()
    return figure


def backtest(predictions: pd.DataFrame, title: str):
    """The all-tenants series (or the first few): actuals, and each origin's forecast with its 95 % interval."""
    ids = sorted(predictions["unique_id"].unique())
    shown = [u for u in ids if u.startswith(f"{TOTAL}/")] or ids[:4]
    figure, axes = plt.subplots(len(shown), 1, figsize=(9, 3 * max(1, len(shown))), squeeze=False)
    for axis, uid in zip(axes[:, 0], shown, strict=True):
        rows = predictions[predictions["unique_id"] == uid]
        actual = rows.groupby("ds")["y"].first()
        axis.plot(actual.index, actual.to_numpy(), color="black", label="actual")
        for cutoff, of_origin in rows.groupby("cutoff"):
            of_origin = of_origin.sort_values("ds")
            axis.plot(of_origin["ds"], of_origin["forecast"], label=f"from {pd.Timestamp(cutoff).date()}")
            axis.fill_between(of_origin["ds"], of_origin["forecast-lower_95"], of_origin["forecast-upper_95"],
                              alpha=0.15)
        axis.set_title(uid)
    axes[0, 0].legend(fontsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def close(figure) -> None:
    plt.close(figure)
