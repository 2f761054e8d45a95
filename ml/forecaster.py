"""The forecast of a group of series: a global LightGBM model (mlforecast) combined with AutoETS and
AutoTheta (statsforecast), calendar events added as learned effects, conformal intervals.

Any frequency: a group is declared with its pandas frequency, season length and horizon (`Setup`);
lags, rolling windows and date features follow from them. Series whose values cannot be negative
are modelled on log1p (multiplicative seasonality, no negative forecast); the others as they are.
AutoETS and AutoTheta are fitted both on that scale and on the values themselves: on the real
series of the benchmark the log scale won (page views, drug sales), on the sample's counts the
values did, so the group's earlier origins choose.

Why a combination: on short business series and on the real series of `make bench-ml`, neither the
global booster nor the local statistical models wins everywhere, and their errors differ; the
mean of the two kinds beats the best of them on most series (measured in the benchmark). The
booster's share is chosen per horizon bucket on the group's own earlier rolling-origin forecasts.

Why events are an effect and not a tree feature: a Black Friday in the history would otherwise
reach every later Friday through the weekly lags and ETS's seasonal state. So each event day of
the history is replaced by what the same season position of the neighbouring weeks says
(`clean_events`) before any model sees it; what the event added (on the model's scale) is kept,
and its median per metric and event kind, over every series and past occurrence, is the event's
effect on the days ahead. An event kind never seen moves nothing.

Why the intervals are hand-computed: statsforecast's and mlforecast's conformal intervals are
per series and per model, from a handful of windows; the shipped forecast is a combination, and a
tenant's series has four or five past windows. Here the errors of the combination itself (on the
model scale, over the series' mean seasonal difference and over the root of the horizon) are
pooled over the group's series and horizons, and their empirical quantiles (split conformal) give
the 80 % and 95 % bands, widening with the root of the horizon. Per horizon bucket instead, the
95 % bands of `make bench-ml`'s real series covered 0.924 of outcomes (0.937 pooled).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import pandas as pd
from mlforecast import MLForecast
from mlforecast.lag_transforms import RollingMean, SeasonalRollingMean
from mlforecast.target_transforms import AutoDifferences, LocalStandardScaler
from statsforecast import StatsForecast
from statsforecast.models import AutoETS, AutoTheta

KEYS = ["unique_id", "ds"]
BOUNDS = {"lower_95": 0.025, "lower_80": 0.10, "upper_80": 0.90, "upper_95": 0.975}
LGBM = "lightgbm"
STATS = ("AutoETS", "AutoTheta")  # fitted on the model scale (log1p where values cannot be negative)
RAW_STATS = ("AutoETS_raw", "AutoTheta_raw")  # fitted on the values themselves, brought to the model scale
# the statistical part of the forecast, by name: AutoETS and AutoTheta's mean or AutoTheta alone
# (ETS drags the mean down on the sample's short series), fitted on the model scale or the values
STAT_PARTS = {"log": STATS, "raw": RAW_STATS, "log-theta": ("AutoTheta",), "raw-theta": ("AutoTheta_raw",)}
SHARES = (0.0, 0.2, 1 / 3, 0.5, 0.75, 1.0)  # the booster's candidate shares of the forecast
DEFAULT_SHARE = 1 / 3  # equal weights of the booster, AutoETS and AutoTheta
MIN_ERRORS = 20  # fewer past errors in a bucket: its share is the one chosen on all of them
PER_ROOT_HORIZON = "per_root_horizon"  # the calibration's key: quantiles of scaled errors over the root of h
# One thread: the data are small (thousands of rows), and with OpenMP's default on a machine whose
# cores are busy the threads spin against each other (a 100-tree fit took 1.1 s instead of 0.06 s).
LGBM_PARAMS = {"n_estimators": 200, "learning_rate": 0.05, "num_leaves": 15, "min_child_samples": 10,
               "subsample": 0.8, "subsample_freq": 1, "colsample_bytree": 0.9, "reg_lambda": 1.0,
               "verbosity": -1, "random_state": 7, "n_jobs": 1, "deterministic": True, "force_row_wise": True}

# Date features by the frequency's base unit: the calendar position a season does not already give.
DATE_FEATURES = {"h": ["hour", "dayofweek"], "min": ["hour", "dayofweek"], "D": ["dayofweek"], "B": ["dayofweek"],
                 "W": ["month"], "M": ["month"], "MS": ["month"], "ME": ["month"], "Q": ["quarter"],
                 "QS": ["quarter"], "QE": ["quarter"]}


class NotEnoughHistory(ValueError):
    """Too little history for a model: the caller skips, with this message as the reason."""


@dataclass(frozen=True)
class Setup:
    """How a group of series is forecast: frequency (pandas alias), season length, horizon."""

    freq: str = "D"
    season: int = 7
    horizon: int = 28

    @property
    def lags(self) -> list[int]:
        return sorted({1, 2, 3, self.season, 2 * self.season} - {0})

    @property
    def min_length(self) -> int:
        """The shortest history a model is fitted on: the longest lag and its rolling window."""
        return max(3 * self.season + 2, 14)

    def buckets(self) -> list[tuple[int, int]]:
        """Horizon buckets for weights and intervals: the first quarter, the second, the rest."""
        q = max(1, self.horizon // 4)
        edges = sorted({q, min(2 * q, self.horizon), self.horizon})
        return [(lo + 1, hi) for lo, hi in zip([0, *edges[:-1]], edges, strict=True)]

    def bucket_of(self, horizon: np.ndarray) -> np.ndarray:
        names = [f"h{lo}-{hi}" for lo, hi in self.buckets()]
        return np.select([horizon <= hi for _, hi in self.buckets()], names, names[-1])

    def date_features(self) -> list[str]:
        base = pd.tseries.frequencies.to_offset(self.freq).rule_code.split("-")[0]
        return DATE_FEATURES.get(base, [])


def to_model_scale(y: np.ndarray, nonneg: np.ndarray) -> np.ndarray:
    return np.where(nonneg, np.log1p(np.maximum(y, 0.0)), y)


def from_model_scale(z: np.ndarray, nonneg: np.ndarray) -> np.ndarray:
    return np.where(nonneg, np.maximum(np.expm1(np.minimum(z, 700.0)), 0.0), z)


def clean_events(z: np.ndarray, is_event: np.ndarray, season: int) -> np.ndarray:
    """`z` with each event day replaced by the median of the same season position in the two
    seasons before and after it that are not events (the series' median if none is)."""
    out = z.copy()
    if not is_event.any():
        return out
    for i in np.flatnonzero(is_event):
        near = [j for k in (1, 2) for j in (i - k * season, i + k * season)
                if 0 <= j < len(z) and not is_event[j]]
        out[i] = np.median(z[near]) if near else np.median(z[~is_event]) if (~is_event).any() else z[i]
    return out


def scale_of(z: np.ndarray, season: int) -> float:
    """Mean absolute seasonal difference (MASE's denominator), lag-1 where the history is short."""
    lag = season if len(z) > season + 1 else 1
    diffs = np.abs(np.diff(z[np.isfinite(z)], n=1)) if lag == 1 else np.abs(z[lag:] - z[:-lag])
    diffs = diffs[np.isfinite(diffs)]
    value = float(np.mean(diffs)) if len(diffs) else 0.0
    return value if value > 1e-9 else max(1e-3, 0.01 * float(np.nanmean(np.abs(z))) if len(z) else 1e-3)


def booster(setup: Setup, params: dict | None = None) -> MLForecast:
    """The unfitted global model: LightGBM on lags, rolling means and date features of the
    series differenced where a KPSS test finds a trend (trees cannot extrapolate one) and scaled
    to mean 0 and variance 1 each (one model serves series of every size)."""
    s = setup.season
    lag_transforms = {1: [RollingMean(window_size=s)]}
    if s > 1:
        lag_transforms[s] = [SeasonalRollingMean(season_length=s, window_size=3)]
    return MLForecast(models={LGBM: lgb.LGBMRegressor(**{**LGBM_PARAMS, **(params or {})})}, freq=setup.freq,
                      lags=setup.lags, lag_transforms=lag_transforms, date_features=setup.date_features(),
                      target_transforms=[AutoDifferences(max_diffs=1), LocalStandardScaler()])


def statistical(setup: Setup) -> StatsForecast:
    return StatsForecast(models=[AutoETS(season_length=setup.season), AutoTheta(season_length=setup.season)],
                         freq=setup.freq, n_jobs=1)


def combine(lgbm: np.ndarray, stats: np.ndarray, share: np.ndarray) -> np.ndarray:
    """The booster's `share` of the forecast, the statistical mean the rest; either alone where
    the other has no value."""
    combined = share * lgbm + (1 - share) * stats
    return np.where(np.isfinite(lgbm), np.where(np.isfinite(stats), combined, lgbm), stats)


@dataclass
class Prepared:
    """A group's series on the model scale, with event days cleaned and their effects kept."""

    frame: pd.DataFrame  # unique_id, ds, y, metric, nonneg, event, z, z_clean, raw_clean, effect
    season: int

    def history(self, column: str = "z_clean", until: pd.Timestamp | None = None) -> pd.DataFrame:
        rows = self.frame if until is None else self.frame[self.frame["ds"] <= until]
        return rows[["unique_id", "ds", column]].rename(columns={column: "y"})


def prepare(panel: pd.DataFrame, setup: Setup) -> Prepared:
    """`panel` (unique_id, ds, y, metric, nonneg, event) ready for the models."""
    parts = []
    for _, rows in panel.sort_values(KEYS).groupby("unique_id", sort=False):
        z = to_model_scale(rows["y"].to_numpy(float), rows["nonneg"].to_numpy(bool))
        is_event = rows["event"].to_numpy(object) != ""
        clean = clean_events(z, is_event, setup.season)
        raw_clean = clean_events(rows["y"].to_numpy(float), is_event, setup.season)
        parts.append(rows.assign(z=z, z_clean=clean, raw_clean=raw_clean, effect=np.where(is_event, z - clean, np.nan)))
    return Prepared(pd.concat(parts, ignore_index=True), setup.season)


def event_effects(prepared: Prepared, until: pd.Timestamp | None = None) -> dict[tuple[str, str], float]:
    """Median effect (model scale) per metric and event kind over the past event days."""
    rows = prepared.frame if until is None else prepared.frame[prepared.frame["ds"] <= until]
    rows = rows[rows["event"] != ""]
    return {(m, k): float(v) for (m, k), v in rows.groupby(["metric", "event"])["effect"].median().items()}


def add_effects(frame: pd.DataFrame, effects: dict[tuple[str, str], float]) -> np.ndarray:
    """The effect (model scale) each row's event adds: frame has metric and event."""
    return np.array([effects.get((m, e), 0.0) if e else 0.0
                     for m, e in zip(frame["metric"], frame["event"], strict=True)])


@dataclass
class Forecaster:
    """What a fitted group forecast keeps: the booster, its shares, the calibration and the effects."""

    setup: Setup
    model: MLForecast | None = None
    shares: dict[str, float] = field(default_factory=dict)  # bucket -> booster's share
    calibration: dict[str, dict[str, float]] = field(default_factory=dict)  # PER_ROOT_HORIZON -> bound -> quantile
    effects: dict[tuple[str, str], float] = field(default_factory=dict)
    stat_scale: str = "log"  # the statistical part the forecast reads: a key of STAT_PARTS

    def fit(self, prepared: Prepared, past: pd.DataFrame | None = None) -> Forecaster:
        """Fit the booster on every series long enough; shares and calibration from `past`
        (rolling-origin forecasts with known outcomes, see `rolling_origins`)."""
        history = prepared.history()
        long_enough = history.groupby("unique_id")["y"].transform("size") >= self.setup.min_length
        if not long_enough.any():
            raise NotEnoughHistory(f"no series has the {self.setup.min_length} points a model needs")
        self.model = booster(self.setup).fit(history[long_enough], static_features=[])
        self.effects = event_effects(prepared)
        if past is not None and not past.empty:
            self.shares, self.calibration, self.stat_scale = choose(past, self.setup)
        return self

    def document(self) -> dict:
        """What a registered version keeps beside the booster (`restore` reads it back)."""
        return {"setup": {"freq": self.setup.freq, "season": self.setup.season, "horizon": self.setup.horizon},
                "shares": self.shares, "calibration": self.calibration, "stat_scale": self.stat_scale,
                "effects": [{"metric": m, "event_kind": k, "effect": v} for (m, k), v in sorted(self.effects.items())]}

    @classmethod
    def restore(cls, model: MLForecast | None, document: dict) -> Forecaster:
        return cls(Setup(**document["setup"]), model, document.get("shares", {}), document.get("calibration", {}),
                   {(e["metric"], e["event_kind"]): e["effect"] for e in document.get("effects", [])},
                   document.get("stat_scale", "log"))

    def feature_importance(self) -> pd.Series:
        booster_ = self.model.models_[LGBM]
        return pd.Series(booster_.booster_.feature_importance(importance_type="gain"),
                         index=booster_.booster_.feature_name()).sort_values(ascending=False)

    def predict(self, prepared: Prepared, future: pd.DataFrame) -> pd.DataFrame:
        """Forecasts of `future` rows (unique_id, ds, metric, nonneg, event; horizons 1..H from each
        series' last day) with their parts and 80 %/95 % intervals, in the series' own units."""
        h = self.setup.horizon
        stats = fit_statistical(prepared, self.setup, h)
        lgbm = self.model.predict(h, new_df=prepared.history()) if self.model is not None else None
        out = future.merge(stats, on=KEYS, how="left")
        out = out.merge(lgbm, on=KEYS, how="left") if lgbm is not None else out.assign(**{LGBM: np.nan})
        for column, scale in scales_until(prepared, None).items():
            out[column] = out["unique_id"].map(scale)
        return self.finish(out)

    def finish(self, out: pd.DataFrame) -> pd.DataFrame:
        """Combine the parts of rows with a `horizon` and their series' `scale` (model scale) and
        `scale_raw`, add event effects (the rows' `effect` where given, else the fitted ones), intervals."""
        share = np.array([self.shares.get(b, DEFAULT_SHARE) for b in self.setup.bucket_of(out["horizon"].to_numpy())])
        effect = out["effect"].to_numpy(float) if "effect" in out else add_effects(out, self.effects)
        prediction = predicted(out, self.stat_scale, share, effect)
        nonneg = out["nonneg"].to_numpy(bool)
        out = out.assign(prediction=prediction)
        root = np.sqrt(out["horizon"].to_numpy(float))
        calibration = self.calibration.get(PER_ROOT_HORIZON, {})
        for bound, q in BOUNDS.items():
            error = calibration.get(bound, _normal(q)) * root
            if self.stat_scale.startswith("raw"):  # the errors were measured on the values
                bound_value = prediction + error * out["scale_raw"].to_numpy(float)
                out[bound] = np.where(nonneg, np.maximum(bound_value, 0.0), bound_value)
            else:
                center = to_model_scale(prediction, nonneg)
                out[bound] = from_model_scale(center + error * out["scale"].to_numpy(float), nonneg)
        return out


def predicted(rows: pd.DataFrame, stat_scale: str, share: np.ndarray, effect: np.ndarray) -> np.ndarray:
    """The forecast in the series' units: on the model scale (log1p where values cannot be negative),
    the booster and the log fits combined; on the values, the booster brought back to them and the
    value fits combined. Event effects (model scale) are added to either."""
    nonneg = rows["nonneg"].to_numpy(bool)
    lgbm = rows[LGBM].to_numpy(float)
    stats = rows[list(STAT_PARTS[stat_scale])].mean(axis=1, skipna=True).to_numpy()
    if stat_scale.startswith("raw"):
        center = to_model_scale(combine(from_model_scale(lgbm, nonneg), stats, share), nonneg)
    else:
        center = combine(lgbm, stats, share)
    return from_model_scale(center + effect, nonneg)


def _normal(q: float) -> float:
    """A fallback quantile of scaled errors (no past forecast to calibrate on): wide, not narrow."""
    from statistics import NormalDist

    return 1.5 * NormalDist().inv_cdf(q)


def _both_scales(prepared: Prepared, run) -> pd.DataFrame:
    """`run(history)` of the statistical models on the model scale and on the values themselves
    (`RAW_STATS`, in the series' units), side by side."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        log = run(prepared.history())
        raw = run(prepared.history("raw_clean")).rename(columns=dict(zip(STATS, RAW_STATS, strict=True)))
    keys = [c for c in log.columns if c not in (*STATS, "y")]
    return log.drop(columns="y", errors="ignore").merge(raw[[*keys, *RAW_STATS]], on=keys, how="outer")


def fit_statistical(prepared: Prepared, setup: Setup, h: int) -> pd.DataFrame:
    """AutoETS and AutoTheta forecasts of every series, h steps from its last day, fitted on both scales."""
    return _both_scales(prepared, lambda history: statistical(setup).forecast(df=history, h=h))


def rolling_origins(prepared: Prepared, setup: Setup, windows: int, step: int) -> pd.DataFrame:
    """Forecasts from `windows` origins `step` apart, the last `horizon` before the end: the
    booster refitted at each origin, AutoETS and AutoTheta, on the event-cleaned history; every
    row with its horizon, the effect of its event as known at the origin, and the actual value."""
    history = prepared.history()
    stats = _both_scales(prepared, lambda frame: statistical(setup).cross_validation(
        df=frame, h=setup.horizon, n_windows=windows, step_size=step))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lgbm = booster(setup).cross_validation(df=history, n_windows=windows, h=setup.horizon, step_size=step,
                                               static_features=[])
    out = stats.merge(lgbm.drop(columns="y"), on=[*KEYS, "cutoff"], how="outer")
    out = out.merge(prepared.frame[[*KEYS, "y", "z", "metric", "nonneg", "event"]], on=KEYS, how="left")
    out["horizon"] = _steps(out["cutoff"], out["ds"], setup.freq)
    out = out.sort_values(["cutoff", *KEYS]).reset_index(drop=True)  # each cutoff's rows together, in order
    effects = {cutoff: event_effects(prepared, until=cutoff) for cutoff in out["cutoff"].unique()}
    out["effect"] = np.concatenate([add_effects(rows, effects[c]) for c, rows in out.groupby("cutoff", sort=False)])
    for column in ("scale", "scale_raw"):
        out[column] = np.concatenate([rows["unique_id"].map(scales_until(prepared, c)[column]).to_numpy()
                                      for c, rows in out.groupby("cutoff", sort=False)])
    return out


def scales_until(prepared: Prepared, cutoff) -> dict[str, pd.Series]:
    """Each series' scale (`scale_of`) on the model scale (`scale`) and on its values (`scale_raw`),
    from its history up to `cutoff` (None: all of it)."""
    rows = prepared.frame if cutoff is None else prepared.frame[prepared.frame["ds"] <= cutoff]
    return {name: rows.groupby("unique_id")[column].apply(lambda v: scale_of(v.to_numpy(), prepared.season))
            for name, column in (("scale", "z_clean"), ("scale_raw", "raw_clean"))}


def _steps(cutoff: pd.Series, ds: pd.Series, freq: str) -> np.ndarray:
    """How many periods of `freq` lie between each cutoff and its target."""
    offset = pd.tseries.frequencies.to_offset(freq)
    periods = {c: pd.date_range(c, periods=400, freq=offset) for c in cutoff.unique()}
    return np.array([int(periods[c].searchsorted(d)) for c, d in zip(cutoff, ds, strict=True)])


def choose(past: pd.DataFrame, setup: Setup) -> tuple[dict[str, float], dict[str, dict[str, float]], str]:
    """From forecasts with known outcomes: which fit of the statistical models to combine with the
    booster (on the model scale or on the values: whichever erred less, in the series' units, on
    these series), the booster's share per bucket (least mean scaled absolute error among
    `SHARES`), and the split-conformal quantiles of the resulting forecast's errors (over the
    series' scale and the root of the horizon, pooled over every horizon, on the scale it combines)."""
    past = past[np.isfinite(past["z"])]
    bucket = setup.bucket_of(past["horizon"].to_numpy())
    actual, effect = past["y"].to_numpy(float), past["effect"].to_numpy(float)
    names = [f"h{lo}-{hi}" for lo, hi in setup.buckets()]

    def error(kind: str, here: np.ndarray, share: float) -> float:
        rows = past[here]
        forecast = predicted(rows, kind, np.full(len(rows), share), effect[here])
        return float(np.nanmean(np.abs(actual[here] - forecast) / rows["scale_raw"].to_numpy()))

    def best(kind: str, here: np.ndarray) -> float:
        return SHARES[int(np.nanargmin([error(kind, here, s) for s in SHARES]))]

    everything = np.ones(len(past), bool)
    enough = len(past) >= MIN_ERRORS // 2
    kinds = [k for k, columns in STAT_PARTS.items() if set(columns) <= set(past.columns)]
    stat_scale = min(kinds, key=lambda k: error(k, everything, best(k, everything))) if enough else "log"
    overall = best(stat_scale, everything) if enough else DEFAULT_SHARE
    shares = {}
    for name in names:  # a bucket with too few errors takes the share chosen on all of them
        here = bucket == name
        shares[name] = best(stat_scale, here) if here.sum() >= MIN_ERRORS else overall
    share = np.array([shares.get(b, DEFAULT_SHARE) for b in bucket])
    forecast = predicted(past, stat_scale, share, effect)
    nonneg = past["nonneg"].to_numpy(bool)
    if stat_scale.startswith("raw"):
        errors = (actual - forecast) / past["scale_raw"].to_numpy()
    else:
        errors = (to_model_scale(actual, nonneg) - to_model_scale(forecast, nonneg)) / past["scale"].to_numpy()
    # errors grow with the horizon: divided by its root, every horizon's errors calibrate together
    scaled = errors / np.sqrt(past["horizon"].to_numpy())
    scaled = scaled[np.isfinite(scaled)]
    calibration = {}
    if len(scaled):
        calibration[PER_ROOT_HORIZON] = {bound: conformal_quantile(scaled, q) for bound, q in BOUNDS.items()}
    return shares, calibration, stat_scale


def conformal_quantile(errors: np.ndarray, q: float) -> float:
    """The split-conformal quantile: the ceil((n + 1) q)-th smallest error (the largest when n is small)."""
    n = len(errors)
    rank = np.ceil((n + 1) * q) if q > 0.5 else np.floor((n + 1) * q)
    return float(np.sort(errors)[int(np.clip(rank, 1, n)) - 1])
