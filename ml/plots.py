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
    """All-tenants series per metric: actuals, and each fold's forecast with its 95 % interval."""
    totals = predictions[predictions["tenant_id"] == TOTAL]
    metrics = sorted(totals["metric"].unique())
    figure, axes = plt.subplots(len(metrics), 1, figsize=(9, 3 * max(1, len(metrics))), squeeze=False)
    for axis, metric in zip(axes[:, 0], metrics, strict=True):
        rows = totals[totals["metric"] == metric]
        actual = rows.groupby("target_date")["actual"].first()
        axis.plot(actual.index, actual.to_numpy(), color="black", label="actual")
        for fold, fold_rows in rows.groupby("fold"):
            fold_rows = fold_rows.sort_values("target_date")
            axis.plot(fold_rows["target_date"], fold_rows["prediction"], label=f"from {pd.Timestamp(fold).date()}")
            axis.fill_between(fold_rows["target_date"], fold_rows["lower_95"], fold_rows["upper_95"], alpha=0.15)
        axis.set_title(f"{metric} (all tenants)")
    axes[0, 0].legend(fontsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def close(figure) -> None:
    plt.close(figure)
