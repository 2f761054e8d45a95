"""Training one metric family: backtest, fit, log to MLflow, register, and maybe promote.

The new version becomes the champion only if its backtest beats the best statistical baseline
(AutoETS, AutoTheta, AutoARIMA, as a user would run them, from the same origins): the geometric
mean over the family's series of its MAE relative to seasonal naive must be lower than every
baseline's. Otherwise the current champion stays and the run's `promotion` tag says why.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import lightgbm
import mlflow
import mlforecast
import mlforecast.flavor
import numpy as np
import pandas as pd
import statsforecast
from mlflow.exceptions import MlflowException
from sqlalchemy.exc import SQLAlchemyError

from ml import backtest, plots
from ml.forecaster import LGBM_PARAMS, Forecaster, NotEnoughHistory, Setup, prepare
from ml.series import FAMILIES, METRICS, to_panel
from ml.tracking import Store, TrackingStoreError, using

# The serving requirements, stated: otherwise MLflow exports the whole project's lock on every run.
REQUIREMENTS = [f"mlforecast=={mlforecast.__version__}", f"statsforecast=={statsforecast.__version__}",
                f"lightgbm=={lightgbm.__version__}", f"pandas=={pd.__version__}", f"numpy=={np.__version__}"]
WINDOWS = 8  # rolling origins at most, a season apart: the last OUTER are scored, all calibrate
OUTER = 4


@dataclass
class TrainingReport:
    family: str
    promoted: bool = False
    reason: str = ""
    run_id: str | None = None
    version: str | None = None
    folds: int = 0
    model_mase: float = float("nan")  # geometric mean of MAE relative to seasonal naive
    baseline_mase: dict[str, float] = field(default_factory=dict)
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)  # per model: relative MASE, coverage, interval score
    skipped: list[str] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)
    shares: dict[str, float] = field(default_factory=dict)  # the booster's share per horizon bucket
    stat_part: str = ""  # the statistical part combined with the booster (`ml.forecaster.part_of`)
    booster_transform: str = ""  # what the booster is fitted on (`ml.forecaster.TRANSFORMS`)
    filled_values: int = 0
    seconds: float = 0.0

    @property
    def best_baseline(self) -> tuple[str, float]:
        if not self.baseline_mase:
            return "none", float("nan")
        return min(self.baseline_mase.items(), key=lambda item: item[1])


def setup_of(family: str) -> Setup:
    specs = [METRICS[m] for m in FAMILIES[family]]
    return Setup(specs[0].freq, specs[0].season, max(s.horizon for s in specs))


def windows_for(length: int, setup: Setup, step: int, most: int = WINDOWS) -> int:
    """How many rolling origins (at most `most`) a history of `length` periods allows."""
    return int(max(0, min(most, (length - setup.horizon - setup.min_length) // step + 1)))


def decide(summary: pd.DataFrame, folds: int) -> tuple[bool, str]:
    """Promote only a forecast that beats the best statistical baseline in its own backtest."""
    if folds == 0 or summary.empty:
        return False, ("not promoted: no backtest fold had enough history to compare with the statistical "
                       "baselines")
    ours = summary.loc[backtest.FORECAST, "relative_mase"]
    baselines = summary.loc[[m for m in summary.index if m in backtest.BASELINES], "relative_mase"]
    best, value = baselines.idxmin(), baselines.min()
    if ours < value:
        return True, (f"promoted: backtest MASE relative to seasonal naive {ours:.3f} beats the best statistical "
                      f"baseline, {best} {value:.3f} ({folds} origins)")
    return False, (f"not promoted: backtest MASE {ours:.3f} does not beat the best statistical baseline, "
                   f"{best} {value:.3f}")


def train_family(family: str, wide: pd.DataFrame, store: Store, calendar: pd.DataFrame | None = None,
                 baselines: tuple[str, ...] = backtest.BASELINES, windows: int = WINDOWS) -> TrainingReport:
    started = time.perf_counter()
    report = TrainingReport(family)
    experiment_id = store.experiment(family)  # fails first, before any work, if the store is unusable
    setup = setup_of(family)
    panel, repairs = to_panel(wide, family, calendar)
    report.repairs, report.filled_values = repairs.describe(), repairs.total
    lengths = panel.groupby("unique_id").size()
    short = lengths[lengths < setup.min_length]
    report.skipped = [f"{uid}: history of {n} day(s) is shorter than the {setup.min_length} a model needs"
                      for uid, n in short.items()]
    panel = panel[~panel["unique_id"].isin(short.index)]
    if panel.empty:
        report.reason = "not trained: " + ("; ".join(report.skipped[:3]) or "no series")
        report.seconds = time.perf_counter() - started
        return report
    prepared = prepare(panel, setup)
    windows = windows_for(int(lengths.max()), setup, setup.season, windows)
    bt, past = None, None
    if windows >= 2:
        bt = backtest.run(prepared, setup, windows, min(OUTER, windows - 1), setup.season, baselines)
        past = bt.past
        scores = backtest.series_scores(bt.predictions, panel, setup.season, horizons=_horizons(panel))
        report.summary = backtest.summary(scores)
        report.folds = bt.folds
    report.promoted, report.reason = decide(report.summary, report.folds)
    if not report.summary.empty:
        report.model_mase = float(report.summary.loc[backtest.FORECAST, "relative_mase"])
        report.baseline_mase = {m: float(report.summary.loc[m, "relative_mase"]) for m in baselines
                                if m in report.summary.index}
    try:
        model = Forecaster(setup).fit(prepared, past)
    except NotEnoughHistory as why:
        report.reason = f"not trained: {why}"
        report.seconds = time.perf_counter() - started
        return report
    report.shares, report.stat_part, report.booster_transform = model.shares, model.stat_part, model.transform
    report.run_id, model_uri = _log_run(experiment_id, family, store, panel, bt, model, report)
    version = store.register(family, model_uri, report.run_id, promote=report.promoted)
    report.version = str(version.version)
    report.seconds = time.perf_counter() - started
    return report


def _horizons(panel: pd.DataFrame) -> pd.Series:
    """Each series' horizon: its metric's."""
    return panel.drop_duplicates("unique_id").set_index("unique_id")["metric"].map(lambda m: METRICS[m].horizon)


def _log_run(experiment_id: str, family: str, store: Store, panel: pd.DataFrame, bt, model: Forecaster,
             report: TrainingReport) -> tuple[str, str]:
    try:
        last_day = panel["ds"].max()
        run_name = f"{family}-{last_day.date()}"
        with using(store.uri), mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
            mlflow.log_params({
                **{f"lgb.{k}": v for k, v in LGBM_PARAMS.items()}, "freq": model.setup.freq,
                "season": model.setup.season, "horizon": model.setup.horizon,
                "lags": ",".join(map(str, model.setup.lags)),
                "metrics": ",".join(FAMILIES[family]), "series": panel["unique_id"].nunique(),
                "history_days": panel["ds"].nunique(), "last_day": str(last_day.date()), "folds": report.folds,
                "filled_values": report.filled_values, "skipped_series": len(report.skipped),
                "stat_part": model.stat_part, "booster_transform": model.transform,
                **{f"share.{bucket}": share for bucket, share in sorted(model.shares.items())},
            })
            if bt is not None and not bt.predictions.empty:
                for index, (_, fold) in enumerate(bt.predictions.groupby("window")):
                    scores = backtest.summary(backtest.series_scores(fold, panel, model.setup.season,
                                                                     horizons=_horizons(panel)))
                    mlflow.log_metrics(_metric_dict(scores, "fold."), step=index + 1)
                mlflow.log_metrics(_metric_dict(report.summary, "backtest."))
                figure = plots.backtest(bt.predictions, f"{family}: rolling-origin backtest")
                mlflow.log_figure(figure, "plots/backtest.png")
                plots.close(figure)
                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / "backtest_predictions.parquet"
                    bt.predictions.to_parquet(path, index=False)
                    mlflow.log_artifact(str(path))
            importance = plots.feature_importance(model.feature_importance(), f"{family}: feature importance")
            mlflow.log_figure(importance, "plots/feature_importance.png")
            plots.close(importance)
            mlflow.set_tags({"promotion": report.reason, "skipped_series": "; ".join(report.skipped) or "none"})
            mlflow.log_dict(model.document(), "forecaster.json")
            info = mlforecast.flavor.log_model(model.model, artifact_path="model", pip_requirements=REQUIREMENTS)
            return run.info.run_id, info.model_uri
    except (MlflowException, OSError, SQLAlchemyError) as err:
        raise TrackingStoreError(f"logging the {family} run to {store.uri} failed, nothing registered: "
                                 f"{str(err).splitlines()[0][:300]}") from err


def _metric_dict(summary: pd.DataFrame, prefix: str) -> dict[str, float]:
    out = {}
    for model, row in summary.iterrows():
        for measure in ("relative_mase", "smape", "coverage_80", "coverage_95", "interval_score"):
            value = row.get(measure, np.nan)
            if value is not None and np.isfinite(value):
                out[f"{prefix}{model}.{measure}"] = float(value)
    return out
