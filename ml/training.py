"""Training one metric family: backtest, fit, log to MLflow, register, and maybe promote.

The new version becomes the champion only if its backtest MASE (days 1 to 7 ahead, every
series of the family) beats seasonal naive on the same folds; otherwise the current champion
stays and the run's `promotion` tag says why.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import lightgbm
import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from sqlalchemy.exc import SQLAlchemyError

from ml import backtest, features, plots
from ml.baselines import Baselines
from ml.features import FEATURES
from ml.model import MIN_ROWS, PARAMS, ROUNDS, Forecaster
from ml.series import FAMILIES, to_series
from ml.tracking import Store, TrackingStoreError, using

# The serving requirements, stated: otherwise MLflow exports the whole project's lock on every run.
REQUIREMENTS = [f"lightgbm=={lightgbm.__version__}", f"pandas=={pd.__version__}", f"numpy=={np.__version__}"]


@dataclass
class TrainingReport:
    family: str
    promoted: bool = False
    reason: str = ""
    run_id: str | None = None
    version: str | None = None
    folds: int = 0
    model_mase: float = float("nan")
    naive_mase: float = float("nan")
    scores: pd.DataFrame = field(default_factory=pd.DataFrame)
    skipped: list[str] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)
    weights: dict[tuple[str, str, str], float] = field(default_factory=dict)  # booster's share: metric, level, bucket
    filled_values: int = 0
    seconds: float = 0.0


def pooled(predictions: pd.DataFrame, column: str) -> dict[str, float]:
    """MAPE, sMAPE and MASE of one model over every series of the backtest, days 1 to 7 ahead."""
    if predictions.empty:
        return {"mape": np.nan, "smape": np.nan, "mase": np.nan}
    week = predictions[predictions["horizon"] <= 7]
    return backtest.measures(week["actual"].to_numpy(), week[column].to_numpy(), week["scale"].to_numpy())


def decide(bt: backtest.Backtest) -> tuple[bool, str, float, float]:
    """Promote only a model that beats seasonal naive on MASE in the backtest."""
    if bt.folds == 0:
        return False, "not promoted: no backtest fold had enough history to compare with seasonal naive", np.nan, np.nan
    model, naive = pooled(bt.predictions, "prediction")["mase"], pooled(bt.predictions, "seasonal_naive")["mase"]
    if model < naive:
        return True, f"promoted: backtest MASE {model:.3f} beats seasonal naive {naive:.3f} ({bt.folds} folds)", \
            model, naive
    return False, f"not promoted: backtest MASE {model:.3f} does not beat seasonal naive {naive:.3f}", model, naive


def train_family(family: str, wide: pd.DataFrame, store: Store, folds: int = 4) -> TrainingReport:
    started = time.perf_counter()
    report = TrainingReport(family)
    metrics = FAMILIES[family]
    experiment_id = store.experiment(family)  # fails first, before any work, if the store is unusable
    series, repairs = to_series(wide, metrics)
    rows, skipped = features.build(series, metrics)
    report.repairs, report.filled_values = repairs.describe(), repairs.total
    report.skipped = [f"{s.tenant_id}/{s.metric}: {s.reason}" for s in skipped]
    if rows["target"].notna().sum() < MIN_ROWS:
        report.reason = (f"not trained: {int(rows['target'].notna().sum())} training rows, fewer than {MIN_ROWS}; "
                         + ("; ".join(report.skipped[:3]) or "no series"))
        report.seconds = time.perf_counter() - started
        return report
    shared = Baselines(series, features.MAX_HORIZON)
    bt = backtest.run(rows, series, folds, shared)
    model = Forecaster().fit(rows, shared).fit_explainer(rows)  # enough rows: checked above
    report.promoted, report.reason, report.model_mase, report.naive_mase = decide(bt)
    report.folds, report.scores, report.weights = bt.folds, bt.scores, model.weights
    report.run_id, model_uri = _log_run(experiment_id, family, store, rows, series, bt, model, report)
    version = store.register(family, model_uri, report.run_id, promote=report.promoted)
    report.version = str(version.version)
    report.seconds = time.perf_counter() - started
    return report


def _log_run(experiment_id: str, family: str, store: Store, rows: pd.DataFrame, series: pd.DataFrame,
             bt: backtest.Backtest, model: Forecaster, report: TrainingReport) -> tuple[str, str]:
    try:
        run_name = f"{family}-{series['date_day'].max().date()}"
        with using(store.uri), mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
            mlflow.log_params({
                **{f"lgb.{k}": v for k, v in PARAMS.items()}, "rounds": ROUNDS, "features": ",".join(FEATURES),
                "metrics": ",".join(FAMILIES[family]), "series": rows.groupby(["tenant_id", "metric"]).ngroups,
                "history_days": series["date_day"].nunique(), "last_day": str(series["date_day"].max().date()),
                "folds": bt.folds, "horizons": features.MAX_HORIZON, "training_rows": int(rows["target"].notna().sum()),
                "filled_values": report.filled_values,
                "skipped_series": len(report.skipped),
                **{f"weight.{'.'.join(key)}": w for key, w in sorted(model.weights.items())},
            })
            folds = bt.predictions.groupby("fold") if not bt.predictions.empty else []
            for index, (_, fold_rows) in enumerate(folds):
                mlflow.log_metrics(_metric_dict(backtest.scores(fold_rows), "fold."), step=index + 1)
            headline = {f"backtest.{measure}.{model}": value
                        for model, column in (("forecast", "prediction"), ("lightgbm", "lightgbm"),
                                              ("seasonal_naive", "seasonal_naive"))
                        for measure, value in pooled(bt.predictions, column).items() if np.isfinite(value)}
            mlflow.log_metrics({**_metric_dict(bt.scores, "backtest."), **headline})
            mlflow.set_tags({"promotion": report.reason, "skipped_folds": "; ".join(bt.skipped_folds) or "none",
                             "skipped_series": "; ".join(report.skipped) or "none"})
            importance = plots.feature_importance(model.feature_importance(), f"{family}: feature importance")
            mlflow.log_figure(importance, "plots/feature_importance.png")
            plots.close(importance)
            if not bt.predictions.empty:
                figure = plots.backtest(bt.predictions, f"{family}: rolling-origin backtest")
                mlflow.log_figure(figure, "plots/backtest.png")
                plots.close(figure)
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "backtest_predictions.parquet"
                bt.predictions.to_parquet(path, index=False)
                mlflow.log_artifact(str(path))
            for name, document in model.artifacts().items():
                if isinstance(document, str):
                    mlflow.log_text(document, name)
                else:
                    mlflow.log_dict(document, name)
            example = rows.dropna(subset=["target"])[FEATURES].head(5)
            info = mlflow.lightgbm.log_model(
                model.booster, name="model", input_example=example, pip_requirements=REQUIREMENTS,
                signature=infer_signature(example, model.booster.predict(example)))
            return run.info.run_id, info.model_uri
    except (MlflowException, OSError, SQLAlchemyError) as err:
        raise TrackingStoreError(f"logging the {family} run to {store.uri} failed, nothing registered: "
                                 f"{str(err).splitlines()[0][:300]}") from err


def _metric_dict(scores: pd.DataFrame, prefix: str) -> dict[str, float]:
    out = {}
    for row in scores.itertuples():
        for measure in ("mape", "smape", "mase", "coverage_80", "coverage_95"):
            value = getattr(row, measure, np.nan)
            if value is not None and np.isfinite(value):
                out[f"{prefix}{row.metric}.{row.level}.{row.window}.{row.model}.{measure}"] = float(value)
    return out
