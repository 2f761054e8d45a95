"""One global LightGBM model per metric family, with conformal prediction intervals.

The booster predicts the log change from the origin's level. Intervals come from the model's own
out-of-sample errors: before the final fit, the model is refitted at a few earlier cutoffs inside
the training window and forecasts forward from each, and the quantiles of those errors (divided
by each series' noise) give the 80 % and 95 % bands per metric and horizon bucket. Quantile
objectives on a few hundred days under-cover; measured errors do not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import pandas as pd

from ml.features import CATEGORICAL, FEATURES

PARAMS = {
    "objective": "l2", "learning_rate": 0.05, "num_leaves": 15, "min_data_in_leaf": 40,
    "feature_fraction": 0.9, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0,
    "verbose": -1, "seed": 7, "num_threads": 2, "deterministic": True,
}
ROUNDS = 250
CALIBRATION_CUTOFFS = (7, 14, 21, 28)  # days before the end of training where calibration forecasts start
QUANTILES = {"lower_95": 0.025, "lower_80": 0.10, "upper_80": 0.90, "upper_95": 0.975}
BUCKETS = ((1, 7), (8, 14), (15, 28))
MIN_ROWS = 50  # fewer training rows than this is no model


class NotEnoughHistory(ValueError):
    """Too few training rows for a model: the caller skips, with this message as the reason."""


def bucket_of(horizon: np.ndarray) -> np.ndarray:
    return np.select([horizon <= hi for _, hi in BUCKETS], [f"h{lo}-{hi}" for lo, hi in BUCKETS], "h15-28")


@dataclass
class Forecaster:
    params: dict = field(default_factory=lambda: dict(PARAMS))
    rounds: int = ROUNDS
    booster: lgb.Booster | None = None
    # (metric, bucket) -> {interval bound: normalized error quantile}
    calibration: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)

    def fit(self, rows: pd.DataFrame) -> Forecaster:
        """Fit on rows whose target is known; calibrate intervals on forward forecasts within them."""
        train = rows.dropna(subset=["target"])
        if len(train) < MIN_ROWS:
            raise NotEnoughHistory(f"{len(train)} training rows, fewer than the {MIN_ROWS} a model needs")
        errors = []
        end = train["target_date"].max()
        for days in CALIBRATION_CUTOFFS:
            cutoff = end - pd.Timedelta(days=days)
            inner = train[train["target_date"] <= cutoff]
            ahead = train[train["origin"] == cutoff]
            if len(inner) < MIN_ROWS or ahead.empty:
                continue
            booster = self._train(inner)
            errors.append(ahead.assign(error=(ahead["target"] - booster.predict(ahead[FEATURES])) / ahead["noise"]))
        self.booster = self._train(train)
        if not errors:  # too short to hold anything out: in-sample errors, widened
            errors.append(train.assign(error=1.5 * (train["target"] - self.booster.predict(train[FEATURES]))
                                       / train["noise"]))
        self._calibrate(pd.concat(errors, ignore_index=True))
        return self

    def _train(self, rows: pd.DataFrame) -> lgb.Booster:
        params = {**self.params, "min_data_in_leaf": max(5, min(self.params["min_data_in_leaf"], len(rows) // 20))}
        data = lgb.Dataset(rows[FEATURES], rows["target"], categorical_feature=CATEGORICAL, free_raw_data=True)
        return lgb.train(params, data, num_boost_round=self.rounds)

    def _calibrate(self, errors: pd.DataFrame) -> None:
        errors = errors.assign(bucket=bucket_of(errors["horizon"].to_numpy()))
        self.calibration = {}
        for metric, of_metric in errors.groupby("metric"):
            widest = None
            for lo, hi in BUCKETS:
                name = f"h{lo}-{hi}"
                values = of_metric.loc[of_metric["bucket"] == name, "error"].to_numpy()
                if len(values) >= 20:
                    widest = {bound: float(np.quantile(values, q)) for bound, q in QUANTILES.items()}
                if widest is None:  # the first buckets need errors; fall back to all of the metric's
                    widest = {b: float(np.quantile(of_metric["error"], q)) for b, q in QUANTILES.items()}
                self.calibration[(metric, name)] = widest

    def predict(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Point forecast and 80 %/95 % intervals in the metric's own units, for each row."""
        if self.booster is None:
            raise RuntimeError("the forecaster is not fitted")
        change = self.booster.predict(rows[FEATURES])
        base = rows["log_level"].to_numpy()
        out = rows[["tenant_id", "metric", "origin", "horizon", "target_date"]].copy()
        out["prediction"] = np.maximum(np.expm1(base + change), 0.0)
        buckets = bucket_of(rows["horizon"].to_numpy())
        noise = rows["noise"].to_numpy()
        for bound in QUANTILES:
            q = np.array([self.calibration.get((m, b), {}).get(bound, 0.0)
                          for m, b in zip(rows["metric"], buckets, strict=True)])
            out[bound] = np.maximum(np.expm1(base + change + q * noise), 0.0)
        return out

    def feature_importance(self) -> pd.Series:
        gains = self.booster.feature_importance(importance_type="gain")
        return pd.Series(gains, index=FEATURES).sort_values(ascending=False)
