"""The forecast of a group of series: a global LightGBM model (mlforecast) combined with statistical
models (statsforecast's AutoETS, AutoTheta and AutoARIMA), calendar events added as learned effects,
conformal intervals.

Any frequency: a group is declared with its pandas frequency, season length and horizon (`Setup`);
lags, rolling windows and date features follow from them (where the season is a day, the week is a
second season: hourly data also has the lag of a week, `Setup.week`). Series whose values cannot be
negative are modelled on log1p (multiplicative seasonality, no negative forecast); the others as they are.

Why a combination, and why chosen per group: on short business series and on the real series of
`make bench-ml`, neither the global booster nor one statistical model wins everywhere (AutoARIMA wins
the hourly demand and the page views, AutoTheta the dew points and the gasoline, AutoETS the monthly
deaths). So the statistical part is a mean of one or more of AutoETS, AutoTheta and AutoARIMA fitted
on the model scale, or AutoTheta fitted on the values themselves (the sample's order counts chose
it), and the booster takes a share of the forecast; part and share are chosen together on the
group's own earlier rolling-origin forecasts (`choose`). What the booster is fitted on (first or
seasonal differences, or the levels: `TRANSFORMS`) is chosen there too, first, on its own forecasts:
KPSS differencing alone made it worse than seasonal naive on series with level shifts or a strong
season (page views, dew points), and levels alone on trending ones.

Why events are an effect and not a tree feature: a Black Friday in the history would otherwise
reach every later Friday through the weekly lags and ETS's seasonal state. So each event day of
the history is replaced by what the same season position of the neighbouring weeks says
(`clean_events`) before any model sees it; what the event added (on the model's scale) is kept,
and its median per metric and event kind, over every series and past occurrence, is the event's
effect on the days ahead. An event kind never seen moves nothing.

Why the intervals are hand-computed: statsforecast's and mlforecast's conformal intervals are
per series and per model, from a handful of windows; the shipped forecast is a combination, and a
tenant's series has four or five past windows. Here the errors of the combination itself (on the
model scale, over the series' mean seasonal difference and over a power of the horizon) are
pooled over the group's series and horizons, and their empirical quantiles (split conformal) give
the 80 % and 95 % bands, each from its own quantiles: the 95 % band widens with the root of the horizon,
the 80 % band with its fourth root (`LEVEL_POWER`). Per horizon bucket instead, the 95 % bands of
`make bench-ml`'s real series covered 0.924 of outcomes (0.937 pooled).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from itertools import combinations

import lightgbm as lgb
import numpy as np
import pandas as pd
from mlforecast import MLForecast
from mlforecast.lag_transforms import RollingMean, SeasonalRollingMean
from mlforecast.target_transforms import AutoDifferences, AutoSeasonalDifferences, LocalStandardScaler
from statsforecast import StatsForecast
from statsforecast.models import AutoARIMA, AutoETS, AutoTheta

KEYS = ["unique_id", "ds"]
BOUNDS = {"lower_95": 0.025, "lower_80": 0.10, "upper_80": 0.90, "upper_95": 0.975}
LGBM = "lightgbm"
# What the booster is fitted on, each series scaled to mean 0 and variance 1 after: its first differences where a
# KPSS test finds a trend ("differences": trees cannot extrapolate a trend), its seasonal differences where a
# seasonality test finds a season ("seasonal_differences": last season's value and this season's change), or its
# levels. Chosen per family on the earlier origins (`choose`), like the statistical part.
TRANSFORMS = ("differences", "seasonal_differences", "levels")
DEFAULT_TRANSFORM = "differences"  # versions registered before the transform was chosen
# The statistical candidates, by the scale they are fitted on: the model scale ("log": log1p where values
# cannot be negative, the values otherwise) and the values themselves ("raw"). Only AutoTheta is also
# fitted on the values: the sample's commerce series chose it, and AutoETS and AutoARIMA on the values
# never won a family of `make bench-ml` that their model-scale fits did not (and AutoARIMA is slow).
CANDIDATES = {"log": ("AutoETS", "AutoTheta", "AutoARIMA"), "raw": ("AutoTheta",)}
# the statistical part of the forecast, by name ("log:AutoETS+AutoTheta"): the mean of some candidates of one
# scale; the names of versions registered before AutoARIMA was a candidate are read as these
LEGACY_PARTS = {"log": "log:AutoETS+AutoTheta", "raw": "raw:AutoETS+AutoTheta", "log-theta": "log:AutoTheta",
                "raw-theta": "raw:AutoTheta"}
DEFAULT_PART = "log:AutoETS+AutoTheta"  # with no past forecast to choose on
SHARES = (0.0, 0.2, 1 / 3, 0.5, 0.75, 1.0)  # the booster's candidate shares of the forecast
DEFAULT_SHARE = 1 / 3  # equal weights of the booster, AutoETS and AutoTheta
MIN_ERRORS = 10  # fewer past errors: the default part and share
# Fewer earlier origins than this: no choice, but every model on the model scale with equal weights (a choice
# among a hundred combinations on one origin's errors follows that origin's noise)
MIN_ORIGINS = 2
SCALED_QUANTILES = "scaled_quantiles"  # calibration: bound -> quantile of errors over the series' scale and h**power
HORIZON_POWER = "horizon_power"  # calibration: bound -> the power of the horizon its errors grow with
# How each band widens with the horizon: on the sample the body of the errors hardly grows with the horizon
# while their tails do (level shifts compound); with the root of h for both, the 80 % bands covered 0.84-0.86
# (too wide at long horizons, too narrow at short ones) while the 95 % bands were right (see ml/README.md).
LEVEL_POWER = {80: 0.25, 95: 0.5}
PER_ROOT_HORIZON = "per_root_horizon"  # the calibration of versions registered before: every bound over the root of h
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
        return sorted({1, 2, 3, self.season, 2 * self.season, self.week} - {0})

    @property
    def week(self) -> int:
        """The periods of a week where the season is a day (hourly: 168), else 0: data recorded within the day
        that people drive (demand, traffic, visits) has a weekly cycle besides the daily one, which the same
        hour one and two days before does not show. The booster then also sees the same hour a week before."""
        try:
            period = pd.Timedelta(pd.tseries.frequencies.to_offset(self.freq))
        except ValueError:  # months, quarters, weeks, business days: no fixed length
            return 0
        return 7 * self.season if self.season > 1 and period * self.season == pd.Timedelta(days=1) else 0

    @property
    def min_length(self) -> int:
        """The shortest history a model is fitted on: the longest lag and its rolling window."""
        return max(3 * self.season + 2, self.week + 2, 14)

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


def booster(setup: Setup, params: dict | None = None, transform: str = DEFAULT_TRANSFORM) -> MLForecast:
    """The unfitted global model: LightGBM on lags, rolling means and date features of the
    series as `transform` says (`TRANSFORMS`), scaled to mean 0 and variance 1 each (one model serves
    series of every size)."""
    s = setup.season
    lag_transforms = {1: [RollingMean(window_size=s)]}
    if s > 1:
        lag_transforms[s] = [SeasonalRollingMean(season_length=s, window_size=3)]
    differences = {"differences": [AutoDifferences(max_diffs=1)], "levels": [],
                   "seasonal_differences": [AutoSeasonalDifferences(season_length=s, max_diffs=1)] if s > 1 else []}
    return MLForecast(models={LGBM: lgb.LGBMRegressor(**{**LGBM_PARAMS, **(params or {})})}, freq=setup.freq,
                      lags=setup.lags, lag_transforms=lag_transforms, date_features=setup.date_features(),
                      target_transforms=[*differences[transform], LocalStandardScaler()])


def booster_column(transform: str) -> str:
    """The column of the booster's rolling-origin forecasts fitted on `transform`."""
    return LGBM if transform == DEFAULT_TRANSFORM else f"{LGBM}_{transform}"


def approximate_arima(history: pd.DataFrame, setup: Setup) -> bool:
    """AutoARIMA approximates its search as R's auto.arima does by default: on long series or long seasons."""
    return bool(history.groupby("unique_id").size().max() > 150 or setup.season > 12)


def statistical_model(name: str, setup: Setup, history: pd.DataFrame):
    """One of statsforecast's AutoETS, AutoTheta, AutoARIMA for `setup`, unfitted."""
    if name == "AutoARIMA":
        return AutoARIMA(season_length=setup.season, approximation=approximate_arima(history, setup))
    return {"AutoETS": AutoETS, "AutoTheta": AutoTheta}[name](season_length=setup.season)


def statistical(setup: Setup, history: pd.DataFrame, names: tuple[str, ...]) -> StatsForecast:
    return StatsForecast(models=[statistical_model(n, setup, history) for n in names], freq=setup.freq, n_jobs=1)


def part_of(name: str) -> tuple[str, tuple[str, ...]]:
    """A statistical part's scale and models, from its name (or a legacy name)."""
    scale, models = LEGACY_PARTS.get(name, name).split(":")
    return scale, tuple(models.split("+"))


def column_of(scale: str, model: str) -> str:
    """The column of a statistical model's forecasts fitted on `scale`."""
    return model if scale == "log" else f"{model}_raw"


def part_columns(name: str) -> list[str]:
    scale, models = part_of(name)
    return [column_of(scale, m) for m in models]


def candidate_parts() -> list[str]:
    """Every mean of one or more candidates of one scale, by name."""
    return [f"{scale}:{'+'.join(subset)}" for scale, models in CANDIDATES.items()
            for size in range(1, len(models) + 1) for subset in combinations(models, size)]


def candidate_columns() -> list[str]:
    return [column_of(scale, m) for scale, models in CANDIDATES.items() for m in models]


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
    calibration: dict[str, dict[str, float]] = field(default_factory=dict)  # SCALED_QUANTILES, HORIZON_POWER
    effects: dict[tuple[str, str], float] = field(default_factory=dict)
    stat_part: str = DEFAULT_PART  # the statistical part the forecast reads (`part_of`)
    transform: str = DEFAULT_TRANSFORM  # what the booster is fitted on (`TRANSFORMS`)

    def fit(self, prepared: Prepared, past: pd.DataFrame | None = None) -> Forecaster:
        """Fit the booster on every series long enough; shares and calibration from `past`
        (rolling-origin forecasts with known outcomes, see `rolling_origins`)."""
        history = prepared.history()
        long_enough = history.groupby("unique_id")["y"].transform("size") >= self.setup.min_length
        if not long_enough.any():
            raise NotEnoughHistory(f"no series has the {self.setup.min_length} points a model needs")
        if past is not None and not past.empty:
            self.choose(past)
        self.model = booster(self.setup, transform=self.transform).fit(history[long_enough], static_features=[])
        self.effects = event_effects(prepared)
        return self

    def choose(self, past: pd.DataFrame) -> Forecaster:
        """The booster's transform, the statistical part, the booster's share and the calibration, from
        `past` (see `choose`)."""
        self.transform, self.shares, self.calibration, self.stat_part = choose(past, self.setup)
        return self

    def document(self) -> dict:
        """What a registered version keeps beside the booster (`restore` reads it back)."""
        return {"setup": {"freq": self.setup.freq, "season": self.setup.season, "horizon": self.setup.horizon},
                "shares": self.shares, "calibration": self.calibration, "stat_part": self.stat_part,
                "booster_transform": self.transform,
                "effects": [{"metric": m, "event_kind": k, "effect": v} for (m, k), v in sorted(self.effects.items())]}

    @classmethod
    def restore(cls, model: MLForecast | None, document: dict) -> Forecaster:
        return cls(Setup(**document["setup"]), model, document.get("shares", {}), document.get("calibration", {}),
                   {(e["metric"], e["event_kind"]): e["effect"] for e in document.get("effects", [])},
                   document.get("stat_part", document.get("stat_scale", DEFAULT_PART)),
                   document.get("booster_transform", DEFAULT_TRANSFORM))

    def feature_importance(self) -> pd.Series:
        booster_ = self.model.models_[LGBM]
        return pd.Series(booster_.booster_.feature_importance(importance_type="gain"),
                         index=booster_.booster_.feature_name()).sort_values(ascending=False)

    def predict(self, prepared: Prepared, future: pd.DataFrame) -> pd.DataFrame:
        """Forecasts of `future` rows (unique_id, ds, metric, nonneg, event; horizons 1..H from each
        series' last day) with their parts and 80 %/95 % intervals, in the series' own units."""
        h = self.setup.horizon
        scale, models = part_of(self.stat_part)
        stats = fit_statistical(prepared, self.setup, h, {scale: models})
        lgbm = self.model.predict(h, new_df=prepared.history()) if self.model is not None else None
        out = future.merge(stats, on=KEYS, how="left")
        out = out.merge(lgbm, on=KEYS, how="left") if lgbm is not None else out.assign(**{LGBM: np.nan})
        for column, scale in scales_until(prepared, None).items():
            out[column] = out["unique_id"].map(scale)
        return self.finish(out)

    def finish(self, out: pd.DataFrame) -> pd.DataFrame:
        """Combine the parts of rows with a `horizon` and their series' `scale` (model scale) and
        `scale_raw`, add event effects (the rows' `effect` where given, else the fitted ones), intervals."""
        if booster_column(self.transform) in out:  # rolling-origin rows carry every transform's forecasts
            out = out.assign(**{LGBM: out[booster_column(self.transform)]})
        share = np.array([self.shares.get(b, DEFAULT_SHARE) for b in self.setup.bucket_of(out["horizon"].to_numpy())])
        effect = out["effect"].to_numpy(float) if "effect" in out else add_effects(out, self.effects)
        prediction = predicted(out, self.stat_part, share, effect)
        nonneg = out["nonneg"].to_numpy(bool)
        out = out.assign(prediction=prediction)
        horizon = out["horizon"].to_numpy(float)
        quantiles = self.calibration.get(SCALED_QUANTILES, self.calibration.get(PER_ROOT_HORIZON, {}))
        powers = self.calibration.get(HORIZON_POWER, {})
        for bound, q in BOUNDS.items():
            error = quantiles.get(bound, _normal(q)) * horizon ** powers.get(bound, 0.5)
            if part_of(self.stat_part)[0] == "raw":  # the errors were measured on the values
                bound_value = prediction + error * out["scale_raw"].to_numpy(float)
                out[bound] = np.where(nonneg, np.maximum(bound_value, 0.0), bound_value)
            else:
                center = to_model_scale(prediction, nonneg)
                out[bound] = from_model_scale(center + error * out["scale"].to_numpy(float), nonneg)
        # each band has its own quantiles and horizon power: at short horizons the 80 % band could reach past
        # the 95 % one, which is kept at least as wide
        out["lower_95"] = np.minimum(out["lower_95"], out["lower_80"])
        out["upper_95"] = np.maximum(out["upper_95"], out["upper_80"])
        return out


def predicted(rows: pd.DataFrame, stat_part: str, share: np.ndarray, effect: np.ndarray) -> np.ndarray:
    """The forecast in the series' units: on the model scale (log1p where values cannot be negative),
    the booster and the log fits combined; on the values, the booster brought back to them and the
    value fits combined. Event effects (model scale) are added to either."""
    nonneg = rows["nonneg"].to_numpy(bool)
    lgbm = rows[LGBM].to_numpy(float)
    stats = rows[part_columns(stat_part)].mean(axis=1, skipna=True).to_numpy()
    if part_of(stat_part)[0] == "raw":
        center = to_model_scale(combine(from_model_scale(lgbm, nonneg), stats, share), nonneg)
    else:
        center = combine(lgbm, stats, share)
    return from_model_scale(center + effect, nonneg)


def _normal(q: float) -> float:
    """A fallback quantile of scaled errors (no past forecast to calibrate on): wide, not narrow."""
    from statistics import NormalDist

    return 1.5 * NormalDist().inv_cdf(q)


def _by_scale(prepared: Prepared, run, models: dict[str, tuple[str, ...]]) -> pd.DataFrame:
    """`run(history, names)` of the statistical models named per scale, on the model scale ("log") and on
    the values themselves ("raw", in the series' units, columns `column_of`), side by side."""
    histories = {"log": "z_clean", "raw": "raw_clean"}
    out = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for scale, names in models.items():
            fitted = run(prepared.history(histories[scale]), names).drop(columns="y", errors="ignore")
            fitted = fitted.rename(columns={n: column_of(scale, n) for n in names})
            keys = [c for c in fitted.columns if c not in {column_of(scale, n) for n in names}]
            out = fitted if out is None else out.merge(fitted, on=keys, how="outer")
    return out


def fit_statistical(prepared: Prepared, setup: Setup, h: int, models: dict[str, tuple[str, ...]]) -> pd.DataFrame:
    """Forecasts of every series, h steps from its last day, by the statistical models named per scale."""
    return _by_scale(prepared, lambda history, names: statistical(setup, history, names).forecast(df=history, h=h),
                     models)


def rolling_origins(prepared: Prepared, setup: Setup, windows: int, step: int,
                    models: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Forecasts from `windows` origins `step` apart, the last `horizon` before the end: the booster
    refitted at each origin on each of its transforms (columns `booster_column`), and every statistical
    candidate (`CANDIDATES`), on the event-cleaned history (only those named in `models`, where given: a
    cheaper run); every row with its horizon, the effect of its event as known at the origin, and the
    actual value."""
    history = prepared.history()
    candidates = {scale: tuple(m for m in names if models is None or m in models)
                  for scale, names in CANDIDATES.items()}
    candidates = {scale: names for scale, names in candidates.items() if names}
    stats = _by_scale(prepared, lambda frame, names: statistical(setup, frame, names).cross_validation(
        df=frame, h=setup.horizon, n_windows=windows, step_size=step), candidates)
    out = stats
    for transform in TRANSFORMS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                lgbm = booster(setup, transform=transform).cross_validation(
                    df=history, n_windows=windows, h=setup.horizon, step_size=step, static_features=[])
            except ValueError:  # no training row left at the first origin (seasonal differences use up a season)
                if transform == DEFAULT_TRANSFORM:
                    raise
                continue  # not a candidate for this group
        lgbm = lgbm.drop(columns="y").rename(columns={LGBM: booster_column(transform)})
        out = out.merge(lgbm, on=[*KEYS, "cutoff"], how="outer")
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


def choose(past: pd.DataFrame, setup: Setup) -> tuple[str, dict[str, float], dict[str, dict[str, float]], str]:
    """From forecasts with known outcomes: what the booster is fitted on (`TRANSFORMS`), which statistical
    part to combine with it (a mean of candidates of one scale, `candidate_parts`) and its share of the
    forecast (`SHARES`), and the split-conformal quantiles of the resulting forecast's errors (`calibrate`).

    Every choice minimizes what the benchmark scores: the geometric mean over the series of their mean
    absolute error (seasonal naive's, its denominator, is the same for every choice). Every horizon
    weighs the same: the outcomes known at an origin are mostly short horizons of the origins just
    before it, where the booster's lags shine, and they would otherwise choose for the whole horizon.
    The transform is chosen first, on the booster's own forecasts; then the part and the share together.
    From fewer than `MIN_ORIGINS` earlier origins nothing is chosen: the booster on its default transform and
    every model-scale candidate, with equal weights.
    Chosen per family, not per series: per series (on its own four to ten origins) it chose worse on
    `make bench-ml` (ahead on 4 datasets instead of 5, overall 0.743 instead of 0.727)."""
    past = past[np.isfinite(past["z"])]
    actual, effect = past["y"].to_numpy(float), past["effect"].to_numpy(float)
    horizon = past["horizon"].to_numpy()
    weight = 1.0 / pd.Series(horizon).map(pd.Series(horizon).value_counts()).to_numpy(float)
    series = past["unique_id"].to_numpy()

    def error(rows: pd.DataFrame, part: str, share: float) -> float:
        miss = np.abs(actual - predicted(rows, part, np.full(len(rows), share), effect))
        known = np.isfinite(miss)
        total = pd.Series(np.where(known, weight * miss, 0.0)).groupby(series).sum()
        weights = pd.Series(np.where(known, weight, 0.0)).groupby(series).sum()
        mae = (total / weights)[weights > 0]
        return float(np.mean(np.log(np.maximum(mae.to_numpy(), 1e-12)))) if len(mae) else np.inf

    parts = [p for p in candidate_parts() if set(part_columns(p)) <= set(past.columns)]
    if len(past) < MIN_ERRORS or not parts:
        return DEFAULT_TRANSFORM, {}, {}, DEFAULT_PART
    if past.groupby("unique_id")["cutoff"].nunique().max() < MIN_ORIGINS:
        models = [m for m in CANDIDATES["log"] if column_of("log", m) in past]
        stat_part = f"log:{'+'.join(models)}" if models else parts[0]
        share = 1 / (len(part_columns(stat_part)) + 1)
        shares = {f"h{lo}-{hi}": share for lo, hi in setup.buckets()}
        return DEFAULT_TRANSFORM, shares, calibrate(past, stat_part, share), stat_part
    transforms = [t for t in TRANSFORMS if booster_column(t) in past]
    if transforms:
        def booster_alone(transform: str) -> float:
            return error(past.assign(**{LGBM: past[booster_column(transform)]}), parts[0], 1.0)

        transform = min(transforms, key=booster_alone)  # the first, "differences", on a tie
        past = past.assign(**{LGBM: past[booster_column(transform)]})
    else:  # forecasts of the booster on one transform only (its column is LGBM)
        transform = DEFAULT_TRANSFORM
    _, stat_part, share = min((error(past, p, s), p, s) for p in parts for s in SHARES)
    shares = {f"h{lo}-{hi}": share for lo, hi in setup.buckets()}
    return transform, shares, calibrate(past, stat_part, share), stat_part


def calibrate(past: pd.DataFrame, stat_part: str, share: float) -> dict[str, dict[str, float]]:
    """The split-conformal quantiles of the errors, on `past`, of the forecast `stat_part` with the booster's
    `share`: over the series' scale and each band's power of the horizon (`LEVEL_POWER`), pooled over the
    family's series, origins and horizons."""
    actual = past["y"].to_numpy(float)
    horizon = past["horizon"].to_numpy()
    forecast = predicted(past, stat_part, np.full(len(past), share), past["effect"].to_numpy(float))
    nonneg = past["nonneg"].to_numpy(bool)
    if part_of(stat_part)[0] == "raw":
        errors = (actual - forecast) / past["scale_raw"].to_numpy()
    else:
        errors = (to_model_scale(actual, nonneg) - to_model_scale(forecast, nonneg)) / past["scale"].to_numpy()
    calibration = {SCALED_QUANTILES: {}, HORIZON_POWER: {}}
    for bound, q in BOUNDS.items():  # each band on its own quantile, over its own power of the horizon
        power = LEVEL_POWER[80 if bound.endswith("80") else 95]
        scaled = errors / horizon ** power
        scaled = scaled[np.isfinite(scaled)]
        if len(scaled):
            calibration[SCALED_QUANTILES][bound] = conformal_quantile(scaled, q)
            calibration[HORIZON_POWER][bound] = power
    return calibration


def conformal_quantile(errors: np.ndarray, q: float) -> float:
    """The split-conformal quantile: the ceil((n + 1) q)-th smallest error (the largest when n is small)."""
    n = len(errors)
    rank = np.ceil((n + 1) * q) if q > 0.5 else np.floor((n + 1) * q)
    return float(np.sort(errors)[int(np.clip(rank, 1, n)) - 1])
