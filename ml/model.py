"""One global LightGBM model per metric family, combined with ETS, with conformal intervals.

The booster predicts the log change from the origin's level. Intervals come from the model's own
out-of-sample errors: before the final fit, the model is refitted at a few earlier cutoffs inside
the training window and forecasts forward from each, and the quantiles of those errors (divided
by each series' noise) give the 80 % and 95 % bands per metric and horizon bucket. Quantile
objectives on a few hundred days under-cover; measured errors do not.

The shipped forecast is a weighted mean of the booster and ETS. On a few months of history the
booster tends to win on the tenants' series and ETS on the smoother all-tenants totals, so the
booster's share is chosen per metric, level (total or tenant) and horizon bucket on the same
inner forecasts, and the forecast's intervals are calibrated on the combination's errors.

Anomaly detection reads neither: it compares each day already seen with the explainer, a
booster fitted in-sample with every holiday coded (`fit_explainer`), within the booster's own
intervals. It looks at every day of every series, where fitting ETS at each origin would cost
minutes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import pandas as pd

from ml.baselines import Baselines
from ml.features import CATEGORICAL, EVERY_HOLIDAY, FEATURES
from ml.series import TOTAL

# num_threads 0 is OpenMP's default (OMP_NUM_THREADS, else every core): more threads than free
# cores make LightGBM's threads spin against each other, so a process sharing the machine sets it.
# `deterministic` keeps the results the same whatever the number of threads.
PARAMS = {
    "objective": "l2", "learning_rate": 0.05, "num_leaves": 15, "min_data_in_leaf": 40,
    "feature_fraction": 0.9, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0,
    "verbose": -1, "seed": 7, "num_threads": 0, "deterministic": True,
}
ROUNDS = 250
CALIBRATION_CUTOFFS = (7, 14, 21, 28)  # days before the end of training where calibration forecasts start
QUANTILES = {"lower_95": 0.025, "lower_80": 0.10, "upper_80": 0.90, "upper_95": 0.975}
BUCKETS = ((1, 7), (8, 14), (15, 28))
MIN_ROWS = 50  # fewer training rows than this is no model
WEIGHTS = (1.0, 0.75, 0.5, 0.25, 0.0)  # the booster's candidate shares of the forecast; a tie keeps the booster
MIN_WEIGHING_ROWS = 20  # fewer inner forecasts for a metric, level and bucket: the nearer bucket's share


class NotEnoughHistory(ValueError):
    """Too few training rows for a model: the caller skips, with this message as the reason."""


def bucket_of(horizon: np.ndarray) -> np.ndarray:
    return np.select([horizon <= hi for _, hi in BUCKETS], [f"h{lo}-{hi}" for lo, hi in BUCKETS], "h15-28")


def level_of(tenant_id: pd.Series) -> np.ndarray:
    return np.where(tenant_id == TOTAL, "total", "tenant")


Calibration = dict[tuple[str, str], dict[str, float]]  # (metric, bucket) -> {interval bound: error quantile}


@dataclass
class Forecaster:
    params: dict = field(default_factory=lambda: dict(PARAMS))
    rounds: int = ROUNDS
    booster: lgb.Booster | None = None
    calibration: Calibration = field(default_factory=dict)  # the booster's own intervals
    weights: dict[tuple[str, str, str], float] = field(default_factory=dict)  # (metric, level, bucket) -> share
    forecast_calibration: Calibration = field(default_factory=dict)  # the combined forecast's intervals
    explainer: lgb.Booster | None = None  # in-sample fit with every holiday coded, for anomaly detection

    def fit(self, rows: pd.DataFrame, baselines: Baselines | None = None) -> Forecaster:
        """Fit on rows whose target is known; calibrate intervals on forward forecasts within them.

        With `baselines`, also weigh the booster against ETS on those forward forecasts; without,
        the forecast is the booster's alone.
        """
        train = rows.dropna(subset=["target"])
        if len(train) < MIN_ROWS:
            raise NotEnoughHistory(f"{len(train)} training rows, fewer than the {MIN_ROWS} a model needs")
        held = []
        end = train["target_date"].max()
        for days in CALIBRATION_CUTOFFS:
            cutoff = end - pd.Timedelta(days=days)
            inner = train[train["target_date"] <= cutoff]
            ahead = train[train["origin"] == cutoff]
            if len(inner) < MIN_ROWS or ahead.empty:
                continue
            held.append(ahead.assign(change=self._train(inner[FEATURES], inner["target"]).predict(ahead[FEATURES])))
        self.booster, self.weights = self._train(train[FEATURES], train["target"]), {}
        if not held:  # too short to hold anything out: in-sample errors, widened
            errors = 1.5 * (train["target"] - self.booster.predict(train[FEATURES])) / train["noise"]
            self.calibration = self.forecast_calibration = calibrate(train.assign(error=errors))
            return self
        held = pd.concat(held, ignore_index=True)
        errors = (held["target"] - held["change"]) / held["noise"]
        self.calibration = self.forecast_calibration = calibrate(held.assign(error=errors))
        if baselines is not None:
            held = baselines.attach(held)
            self.weights = choose_weights(held, _booster_value(held, held["change"].to_numpy()))
            combined = np.log1p(self._combine(held, held["change"].to_numpy(), held["ets"].to_numpy()))
            actual = held["target"] + held["log_level"]
            self.forecast_calibration = calibrate(held.assign(error=(actual - combined) / held["noise"]))
        return self

    @property
    def needs_ets(self) -> bool:
        return any(w < 1 for w in self.weights.values())

    def fit_explainer(self, rows: pd.DataFrame) -> Forecaster:
        """Also fit the explainer: a booster on all of `rows` with every holiday coded.

        Anomaly detection asks how unusual a day already seen was, not what comes next. There a
        holiday the history holds once may explain the movement it brought, though a forecast must
        not learn from it (see `features.holiday_codes`). Reading the forecast's booster instead,
        detection on a second sample (ending 2026-11-22) fell from precision 0.80 and recall 0.67
        to 0.50 and 0.50.
        """
        train = rows.dropna(subset=["target"])
        self.explainer = self._train(_every_holiday(train), train["target"])
        return self

    def _train(self, matrix: pd.DataFrame, target: pd.Series) -> lgb.Booster:
        params = {**self.params, "min_data_in_leaf": max(5, min(self.params["min_data_in_leaf"], len(matrix) // 20))}
        data = lgb.Dataset(matrix, target, categorical_feature=CATEGORICAL, free_raw_data=True)
        return lgb.train(params, data, num_boost_round=self.rounds)

    def predict(self, rows: pd.DataFrame) -> pd.DataFrame:
        """The booster's forecast and 80 %/95 % intervals in the metric's own units, for each row."""
        change = self._change(rows)
        return _output(rows, rows["log_level"].to_numpy() + change, self.calibration)

    def explain(self, rows: pd.DataFrame) -> pd.DataFrame:
        """What anomaly detection compares each day with: the explainer's fit (the booster's for a
        version without one), with the booster's intervals."""
        if self.explainer is None:
            return self.predict(rows)
        return _output(rows, rows["log_level"].to_numpy() + self.explainer.predict(_every_holiday(rows)),
                       self.calibration)

    def forecast(self, rows: pd.DataFrame, ets: np.ndarray) -> pd.DataFrame:
        """The shipped forecast: the booster and ETS (`ets`, one value per row) by the weights
        chosen in `fit`, with intervals from the combination's own errors."""
        combined = self._combine(rows, self._change(rows), np.asarray(ets, dtype=float))
        return _output(rows, np.log1p(combined), self.forecast_calibration)

    def _change(self, rows: pd.DataFrame) -> np.ndarray:
        if self.booster is None:
            raise RuntimeError("the forecaster is not fitted")
        return self.booster.predict(rows[FEATURES])

    def _combine(self, rows: pd.DataFrame, change: np.ndarray, ets: np.ndarray) -> np.ndarray:
        """Weighted mean of the booster and ETS in the metric's units; the booster alone where
        there is no weight or no ETS forecast."""
        keys = zip(rows["metric"], level_of(rows["tenant_id"]), bucket_of(rows["horizon"].to_numpy()), strict=True)
        share = np.array([self.weights.get(key, 1.0) for key in keys])
        booster = _booster_value(rows, change)
        return np.where(np.isfinite(ets), share * booster + (1 - share) * np.nan_to_num(ets), booster)

    def artifacts(self) -> dict[str, dict | str]:
        """What besides the booster a registered version needs, by file name: JSON documents, and
        the explainer as LightGBM's text model."""
        out: dict[str, dict | str] = {
            "calibration.json": _flat(self.calibration),
            "forecast.json": {"weights": _flat(self.weights), "calibration": _flat(self.forecast_calibration)},
        }
        if self.explainer is not None:
            out["explainer.txt"] = self.explainer.model_to_string()
        return out

    @classmethod
    def restore(cls, booster: lgb.Booster, artifacts: dict[str, dict | str]) -> Forecaster:
        """A registered version back from its booster and `artifacts()`. Versions registered before
        the combination with ETS have no forecast.json (their forecast is the booster's), and those
        before the explainer no explainer.txt (anomaly detection reads the booster)."""
        calibration = _nested(artifacts["calibration.json"])
        combination = artifacts.get("forecast.json") or {}
        explainer = lgb.Booster(model_str=artifacts["explainer.txt"]) if "explainer.txt" in artifacts else None
        return cls(booster=booster, calibration=calibration, weights=_nested(combination.get("weights", {})),
                   forecast_calibration=_nested(combination["calibration"]) if combination else calibration,
                   explainer=explainer)

    def feature_importance(self) -> pd.Series:
        gains = self.booster.feature_importance(importance_type="gain")
        return pd.Series(gains, index=FEATURES).sort_values(ascending=False)


def calibrate(errors: pd.DataFrame) -> Calibration:
    """Quantiles of the normalized `error` per metric and horizon bucket. A bucket with too few
    errors borrows the widest earlier one (or the metric's overall ones)."""
    errors = errors.assign(bucket=bucket_of(errors["horizon"].to_numpy()))
    out: Calibration = {}
    for metric, of_metric in errors.groupby("metric"):
        widest = None
        for lo, hi in BUCKETS:
            name = f"h{lo}-{hi}"
            values = of_metric.loc[of_metric["bucket"] == name, "error"].to_numpy()
            if len(values) >= 20:
                widest = {bound: float(np.quantile(values, q)) for bound, q in QUANTILES.items()}
            if widest is None:
                widest = {b: float(np.quantile(of_metric["error"], q)) for b, q in QUANTILES.items()}
            out[(metric, name)] = widest
    return out


def choose_weights(held: pd.DataFrame, booster: np.ndarray) -> dict[tuple[str, str, str], float]:
    """The booster's share of the forecast per metric, level and horizon bucket: the candidate
    with the lowest mean scaled error (MASE's) on the inner forecasts `held`, whose booster
    values are `booster`. A bucket with too few forecasts keeps the nearer bucket's share."""
    usable = np.isfinite(held["ets"].to_numpy()) & np.isfinite(held["scale"].to_numpy())
    frame = held.assign(booster=booster, level=level_of(held["tenant_id"]),
                        bucket=bucket_of(held["horizon"].to_numpy()))[usable]
    weights = {}
    for (metric, level), of_series in frame.groupby(["metric", "level"]):
        share = None
        for lo, hi in BUCKETS:
            bucket = f"h{lo}-{hi}"
            rows = of_series[of_series["bucket"] == bucket]
            if len(rows) >= MIN_WEIGHING_ROWS:
                actual, scale = rows["target_value"].to_numpy(), rows["scale"].to_numpy()
                b, e = rows["booster"].to_numpy(), rows["ets"].to_numpy()
                errors = [np.mean(np.abs(actual - (w * b + (1 - w) * e)) / scale) for w in WEIGHTS]
                share = WEIGHTS[int(np.argmin(errors))]
            if share is not None:
                weights[(metric, level, bucket)] = share
    return weights


def _every_holiday(rows: pd.DataFrame) -> pd.DataFrame:
    """The booster's features with every holiday coded, under the booster's feature names."""
    return rows[[EVERY_HOLIDAY.get(name, name) for name in FEATURES]].set_axis(FEATURES, axis=1)


def _booster_value(rows: pd.DataFrame, change: np.ndarray) -> np.ndarray:
    return np.maximum(np.expm1(rows["log_level"].to_numpy() + change), 0.0)


def _output(rows: pd.DataFrame, center: np.ndarray, calibration: Calibration) -> pd.DataFrame:
    """Point forecast `center` (log1p scale) and its intervals, in the metric's own units."""
    out = rows[["tenant_id", "metric", "origin", "horizon", "target_date"]].copy()
    out["prediction"] = np.maximum(np.expm1(center), 0.0)
    buckets = bucket_of(rows["horizon"].to_numpy())
    noise = rows["noise"].to_numpy()
    for bound in QUANTILES:
        q = np.array([calibration.get((m, b), {}).get(bound, 0.0)
                      for m, b in zip(rows["metric"], buckets, strict=True)])
        out[bound] = np.maximum(np.expm1(center + q * noise), 0.0)
    return out


def _flat(by_key: dict[tuple[str, ...], object]) -> dict[str, object]:
    return {"|".join(key): value for key, value in by_key.items()}


def _nested(flat: dict[str, object]) -> dict[tuple[str, ...], object]:
    return {tuple(key.split("|")): value for key, value in flat.items()}
