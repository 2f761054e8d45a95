"""Drivers: which segments and which components explain an insight's change.

An anomaly's day is compared with what the detector expected of it. That expected value is spread
over the segments of each governed dimension (device, country, plan, event type, order status...:
whatever the semantic models let the metric be grouped by) in the proportions the segments had on
the same weekday of the four weeks before; each segment's change is then its actual value less its
part of the expected one, and the segments' changes add up to the whole change. A segment is a
driver when it stands out: it carries a large share of the change (`MIN_SHARE`), out of proportion
to its usual size (`MIN_EXCESS` above its usual share), and beyond its own day-to-day ups and downs
(`NOISE_Z` times its noise over the four weeks before). A change spread evenly over every segment
has no driver, and says so. A segment with nothing in the weeks before is "new" (its usual share
is zero: no division by it). Trends and lasting shifts compare the mean day of their recent period
with the period before, the same way.

Components are the metric's own factors: a ratio metric's numerator and denominator as the
semantic model defines it (acquisition cost = spend / new users), or the factors a metric declares
in `config.meta.components` (revenue = completed orders x average order value). Each factor's share
is its part of the change in logarithms (a product's logarithm is the sum of its factors').

Two dimensions at once: a change confined to one cell of two dimensions of the same semantic model
(mobile users in Germany) is split over the cells of the pair the same way, and the cell is named
instead of a single segment only when it explains the change far better than either of its two
dimensions alone (`confined`, whose docstring says by what margin and why) and carries at least
three quarters of what the best single dimension's segments carry (a cell holding 40 % of a rise
does not displace "device tablet" that carries all of it). Only pairs of one
semantic model (the user's device x the user's country, not the user's device x the order's status:
one join, no fan-out) and of dimensions that split the metric on their own are tried: a few more
queries per metric, each grouped by the two dimensions, none per anomaly.

Sentences name what a business reader knows: a country by its name (Germany, not DE), the
dimension beside its value ("device mobile in Germany"); the statistics are in the driver rows.

Every number comes through the semantic layer (MetricFlow on the governed definitions,
`semantic.metricflow_engine`): one query per metric (or set of components) and dimension (or pair),
for all tenants and days at once, so explaining one more anomaly of the same metric costs no query.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pycountry

from ml.detection import THRESHOLD
from ml.series import TOTAL

MIN_SHARE = 0.25  # of the whole change, for a segment to be named
MIN_EXCESS = 0.15  # its share of the change above its usual share of the metric
NOISE_Z = 3.0  # its change against its own day-to-day noise
WHOLE_Z = 4.5  # the whole change against the metric's noise, where the detector gave no verdict (a trend, a shift)
WEEKS = 4  # same weekdays the baseline reads
MOST = 3  # drivers named at most
OVERLAP = 1.02  # segments summing past this multiple of the whole overlap: not a split of it
# a cell of two dimensions is named instead of a single segment when, inside each of its two single
# segments, it carries this much of the segment's change, and this much more than its usual part
# (`confined`), and this much of what the best single dimension's segments carry of the whole
PAIR_OF_PARENT = 0.75
PAIR_MARGIN = 0.25
SEPARATOR = " × "  # between the two dimensions (and the two values) of a cell
DAY = "metric_time__day"
TENANT = "tenant"
# the governed metric each series of `marts.metrics_daily` (ml.series.METRICS) is
METRIC_OF_SERIES = {"revenue": "revenue", "orders": "orders", "active_users": "active_users",
                    "sessions": "sessions", "errors": "errors"}

DRIVER_COLUMNS = ["insight_key", "tenant_id", "metric", "date_day", "driver_kind", "dimension", "dimension_label",
                  "segment", "actual", "expected", "change", "share", "usual_share", "noise_ratio", "is_new", "rank",
                  "explanation"]


@dataclass(frozen=True)
class Dimension:
    name: str  # the group-by name (`user__device`; a pair's: `user__device × user__country`)
    label: str  # for people ("device"; a pair's: "device × country")
    pair: tuple[Dimension, ...] = ()  # a pair's two dimensions; empty for one

    @property
    def group_by(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.pair) if self.pair else (self.name,)

    @staticmethod
    def of(first: Dimension, second: Dimension) -> Dimension:
        return Dimension(first.name + SEPARATOR + second.name, first.label + SEPARATOR + second.label,
                         (first, second))


@dataclass(frozen=True)
class Change:
    """What an insight says moved: one metric of one tenant, over `days` against `baseline_days`;
    `expected` is the whole metric's expected mean day (the detector's forecast for an anomaly)."""

    key: str
    tenant_id: str
    metric: str  # the series' name (ml.series.METRICS)
    day: date
    actual: float
    expected: float
    days: tuple[date, ...]
    baseline_days: tuple[date, ...]
    score: float = np.nan  # the detector's, where it judged the day (an anomaly's): its bar is the one to clear


@dataclass
class Explained:
    drivers: pd.DataFrame  # DRIVER_COLUMNS
    sentence: str  # the segments and components, in words ("" when there is nothing to say)
    top: tuple[str, str] | None = None  # (dimension label, segment) of the first driver
    rows: list[dict] = field(default_factory=list)
    # the first driver's segment: ((dimension label, value), ...), one pair per dimension, and in words
    cell: tuple[tuple[str, str], ...] = ()
    place: str = ""


def change_of(insight: Mapping) -> Change | None:
    """The change an insight describes, with the days it compares; None for kinds without one."""
    kind, day = insight["insight_type"], pd.Timestamp(insight["date_day"]).date()
    key = insight_key(insight)
    if kind.startswith("anomaly"):
        days = (day,)
        baseline = tuple(day - timedelta(days=7 * k) for k in range(1, WEEKS + 1))
    elif kind.startswith("trend"):  # the last 28 days against the 28 before (ml.insights.trends)
        days = tuple(day - timedelta(days=k) for k in range(28))
        baseline = tuple(day - timedelta(days=28 + k) for k in range(28))
    elif kind == "change_point":  # two weeks from the shift against the two weeks before it
        days = tuple(day + timedelta(days=k) for k in range(14))
        baseline = tuple(day - timedelta(days=k) for k in range(1, 15))
    else:
        return None
    expected = insight["expected"] if kind != "change_point" else np.nan
    score = float(insight.get("score", np.nan)) if kind.startswith("anomaly") else np.nan
    return Change(key, insight["tenant_id"], insight["metric"], day, float(insight["value"]), float(expected),
                  days, baseline, score)


def insight_key(insight: Mapping) -> str:
    """The insight's identity (type, metric, tenant, day), as the alerts' outbox keys it."""
    return "|".join(str(pd.Timestamp(insight[p]).date()) if p == "date_day" else str(insight[p])
                    for p in ("insight_type", "metric", "tenant_id", "date_day"))


# -- the decomposition itself: pure, on values already read ----------------------------------------

def decompose(current: pd.Series, usual: pd.Series, noise: pd.Series, actual: float, expected: float
              ) -> pd.DataFrame:
    """Each segment's part of a change: `current` and `usual` are its mean day now and before,
    `noise` its day-to-day spread, `actual` and `expected` the whole metric's. The expected value is
    spread in the usual proportions; a segment with no usual volume is new (usual share 0)."""
    segments = current.index.union(usual.index)
    current = current.reindex(segments, fill_value=0.0).astype(float)
    usual = usual.reindex(segments, fill_value=0.0).astype(float).clip(lower=0.0)
    noise = noise.reindex(segments, fill_value=0.0).astype(float).fillna(0.0)
    total_usual = float(usual.sum())
    usual_share = usual / total_usual if total_usual > 0 else usual * 0.0
    if not np.isfinite(expected):
        expected = total_usual
    part = expected * usual_share
    change = current - part
    whole = actual - expected
    share = change / whole if whole != 0 else change * 0.0
    floor = np.sqrt(part.abs() + 1.0)  # a count's noise at least; tiny next to money
    # out of proportion: its change against the part of the whole change its usual share would carry
    noise_ratio = (change - usual_share * whole).abs() / np.maximum(noise, floor)
    return pd.DataFrame({"segment": segments.astype(str), "actual": current.to_numpy(), "expected": part.to_numpy(),
                         "change": change.to_numpy(), "share": share.to_numpy(),
                         "usual_share": usual_share.to_numpy(), "noise_ratio": noise_ratio.to_numpy(),
                         "noise": np.maximum(noise, floor).to_numpy(),
                         "is_new": (usual <= 0).to_numpy() & (current > 0).to_numpy()})


def standing_out(parts: pd.DataFrame) -> pd.DataFrame:
    """The segments that carry the change: a large share, out of proportion and beyond the noise."""
    keep = ((parts["share"] >= MIN_SHARE) & (parts["share"] - parts["usual_share"] >= MIN_EXCESS)
            & (parts["noise_ratio"] >= NOISE_Z))
    return parts[keep].sort_values("share", ascending=False).head(MOST)


def confined(cells: pd.DataFrame, named: pd.DataFrame) -> pd.DataFrame:
    """The named cells of a pair of dimensions (`named`, from `standing_out(cells)`; `cells` is the
    pair's whole decomposition, each segment "value × value") that explain the change far better than
    either dimension alone: inside each of its two single segments (mobile; Germany) the cell carries
    at least `PAIR_OF_PARENT` of that segment's change, at least `PAIR_MARGIN` more than its usual
    part of the segment, and that excess is beyond `NOISE_Z` times the cell's own noise.

    Why this margin: a cell inside a segment that stands out stands out too (mobile users in Germany
    when all of Germany dropped), so standing out is not enough. A change spread over Germany's
    devices leaves mobile about its usual part of Germany's change (about half: mobile is half of
    Germany's users), and "Germany" says all there is; the cell would only cut it further at random.
    The 25 points are `MIN_SHARE`'s quarter, the bar a segment clears against the whole change,
    applied one level down, against its own segment's change; the three quarters keep a cell from
    being named while a quarter or more of its segment's change lies elsewhere in the segment
    (mobile in Germany and in France both dropping is "mobile", not "mobile in Germany"). The noise
    bar is a single segment's: a small cell moves a lot by chance, and is judged by its own ups and
    downs. A change confined to mobile users in Germany clears the bar in both directions: inside
    Germany it carries nearly all the change against mobile's half, inside mobile nearly all of it
    against Germany's tenth. A segment new that day (no volume before) has no usual parts: the cell's
    part of it is taken as its other value's usual share of the whole, as if the two were independent
    (so errors new in Germany are "Germany", not "errors of type error in Germany")."""
    values = cells["segment"].str.split(SEPARATOR, regex=False)
    keep = []
    for cell in named.itertuples():
        ok = True
        pair = cell.segment.split(SEPARATOR)
        for position, value in enumerate(pair):
            segment = cells[values.str[position] == value]
            change, usual = float(segment["change"].sum()), float(segment["usual_share"].sum())
            if change == 0 or np.sign(change) != np.sign(cell.change):
                ok = False
                break
            # the cell's usual part of its segment; of a segment new that day, its other value's usual
            # share of the whole (a new country's errors are not "errors in Germany" by being new)
            other = float(cells.loc[values.str[1 - position] == pair[1 - position], "usual_share"].sum())
            part = cell.usual_share / usual if usual > 0 else other
            carried = cell.change / change
            beyond = abs(cell.change - part * change) / cell.noise if cell.noise > 0 else np.inf
            ok = carried >= PAIR_OF_PARENT and carried - part >= PAIR_MARGIN and beyond >= NOISE_Z
            if not ok:
                break
        keep.append(ok)
    return named[np.array(keep, dtype=bool)] if len(named) else named


def pair_wins(single: pd.DataFrame | None, cells: pd.DataFrame) -> bool:
    """Whether a pair's named cells (`confined` already) are named instead of the best single
    dimension's segments: they must carry at least `PAIR_OF_PARENT` of the change those carry."""
    return single is None or cells["share"].sum() >= PAIR_OF_PARENT * single["share"].sum()


def segment_values(daily: pd.DataFrame, change: Change) -> tuple[pd.Series, pd.Series, pd.Series]:
    """From one tenant's daily values per segment (columns day, segment, value): the mean day of the
    change's days and of its baseline days, and each segment's noise (robust spread of its days
    around their weekday's mean in the baseline's span), scaled to a mean over the change's days."""
    table = daily.pivot_table(index="day", columns="segment", values="value", aggfunc="sum")
    span = pd.date_range(min(change.baseline_days), max(change.days), freq="D").date
    table = table.reindex(span, fill_value=0.0).fillna(0.0)
    current = table.loc[list(change.days)].mean() if len(table.columns) else pd.Series(dtype=float)
    baseline = table.loc[[d for d in change.baseline_days if d in table.index]].mean()
    history = table.loc[[d for d in span if min(change.baseline_days) <= d < min(change.days)]]
    if len(history) >= 7:
        weekday = pd.Series([d.weekday() for d in history.index], index=history.index)
        rest = history - history.groupby(weekday).transform("mean")
        # less its linear trend too: a growing segment's growth is not noise
        x = np.arange(len(rest), dtype=float)
        rest = rest - np.outer(x - x.mean(), (rest.to_numpy() * (x - x.mean())[:, None]).sum(axis=0)
                               / ((x - x.mean()) ** 2).sum())
        # root mean square, not a robust spread: a sparse segment (money on the few days with an
        # order) has a median deviation of zero, and its noise is the days that are not zero
        noise = np.sqrt((rest ** 2).mean()) / np.sqrt(len(change.days))
    else:
        noise = baseline * 0.0
    return current, baseline, noise


def beyond_noise(daily: pd.DataFrame, change: Change) -> bool:
    """Whether the whole change is beyond the metric's own day-to-day noise (`WHOLE_Z`), measured as a
    segment's is: drivers explain a change that is there, never the ups and downs. A day the detector
    judged (its `score`) is held to the detector's verdict instead."""
    current, usual, noise = segment_values(daily, change)
    if usual.empty or current.empty:
        return True
    expected = change.expected if np.isfinite(change.expected) else float(usual.iloc[0])
    # at least a count's noise (Poisson): three errors where 0.3 are usual is not beyond it
    scale = max(float(noise.iloc[0]) if len(noise) else 0.0, np.sqrt(abs(expected) + 1.0) / np.sqrt(len(change.days)))
    return abs(float(current.iloc[0]) - expected) >= WHOLE_Z * scale


def component_shares(values: pd.DataFrame, change: Change, factors: list[tuple[str, int]]) -> pd.DataFrame:
    """Each factor's share of the change in logarithms: `values` has day and one column per factor;
    `factors` pairs each with its power (1 multiplies, -1 divides)."""
    table = values.set_index("day").reindex(sorted(set(change.days) | set(change.baseline_days))).fillna(0.0)
    rows = []
    for name, power in factors:
        now = float(table.loc[list(change.days), name].mean())
        before = float(table.loc[list(change.baseline_days), name].mean())
        epsilon = 0.01 * max(abs(before), abs(now), 1e-9)
        rows.append({"segment": name, "actual": now, "expected": before,
                     "log_change": power * np.log((now + epsilon) / (before + epsilon)), "is_new": before <= 0 < now})
    frame = pd.DataFrame(rows)
    whole = frame["log_change"].sum()
    frame["share"] = frame["log_change"] / whole if abs(whole) > 1e-12 else 0.0
    return frame


# -- words -------------------------------------------------------------------------------------

def _amount(x: float, fmt: str | None) -> str:
    if fmt == "currency":
        return f"${x:,.0f}" if abs(x) >= 100 else f"${x:,.2f}"
    if fmt == "percent":
        return f"{x:.1%}"
    if abs(x) >= 100 or float(x).is_integer():
        return f"{x:,.0f}"
    return f"{x:,.1f}" if abs(x) >= 1 else f"{x:.2f}"


def _share(share: float, word: str) -> str:
    """82 % of the drop; past the whole of it (other segments moved the other way), says so."""
    return f"{share:.0%} of the {word}" if share <= 1.0 else f"more than the whole {word} ({share:.0%})"


def value_name(label: str, value: str) -> str:
    """A dimension's value as a reader knows it: a country by its name (DE is Germany)."""
    if label.split()[-1] == "country" and len(value) == 2:
        found = pycountry.countries.get(alpha_2=value.upper())
        if found is not None:
            return getattr(found, "common_name", None) or found.name
    return value


def place(dimension: Dimension | str, segment: str) -> str:
    """A segment in words: "device mobile", "country Germany"; a cell of two dimensions "device
    mobile in Germany" (a country last, as a place), else "plan pro and channel search"."""
    if isinstance(dimension, str):
        dimension = Dimension(dimension, dimension)
    dimensions = dimension.pair or (dimension,)
    values = segment.split(SEPARATOR) if dimension.pair else [segment]
    said = [(d.label, value_name(d.label, v)) for d, v in zip(dimensions, values, strict=True)]
    countries = [v for label, v in said if label.split()[-1] == "country"]
    others = [f"{label} {v}" for label, v in said if label.split()[-1] != "country"]
    if dimension.pair and countries and others:
        return " and ".join(others) + " in " + " and ".join(countries)
    return " and ".join(f"{label} {v}" for label, v in said)


def segment_sentence(label: str, fmt: str | None, whole: float, dimension: Dimension | str, parts: pd.DataFrame,
                     per_day: bool) -> str:
    word = "rise" if whole > 0 else "drop"
    said = []
    for part in parts.itertuples():
        where = place(dimension, part.segment)
        suffix = " a day" if per_day else ""
        if part.is_new:
            said.append(f"{_share(part.share, word)} is {where}, which is new: none in the weeks before, "
                        f"{_amount(part.actual, fmt)}{suffix} now")
        else:
            verb = "rose" if part.actual > part.expected else "fell"
            said.append(f"{_share(part.share, word)} is {where}, where {label.lower()} {verb} from "
                        f"{_amount(part.expected, fmt)} to {_amount(part.actual, fmt)}{suffix}")
    return "; ".join(said) + "." if said else ""


def component_sentence(labels: Mapping[str, tuple[str, str | None]], parts: pd.DataFrame) -> str:
    """The factor that moved most, and how the others moved beside it."""
    if parts.empty or (parts["share"] == 0).all():
        return ""
    ranked = parts.sort_values("share", ascending=False)
    said = []
    for i, part in enumerate(ranked.itertuples()):
        name, fmt = labels.get(part.segment, (part.segment, None))
        if part.is_new:
            said.append(f"{name} is new ({_amount(part.actual, fmt)})")
            continue
        ratio = part.actual / part.expected if part.expected else np.inf
        if abs(ratio - 1) < 0.05:
            said.append(f"{name} held at about {_amount(part.actual, fmt)}")
        else:
            verb = "rose" if ratio > 1 else "fell"
            said.append(f"{name} {verb} from {_amount(part.expected, fmt)} to {_amount(part.actual, fmt)}"
                        + (f" ({part.share:.0%} of the change)" if i == 0 and 0 < part.share <= 1 else ""))
    return "Behind it: " + ", while ".join(said[:2]) + "." if said else ""


# -- reading the governed metrics ------------------------------------------------------------------

class GovernedMetrics:
    """Daily values of governed metrics per tenant, optionally per segment of one dimension, read
    through MetricFlow and kept for the run (`engine`: `semantic.metricflow_engine.engine_on`)."""

    def __init__(self, engine, start: date | None = None, end: date | None = None):
        from metricflow.engine.metricflow_engine import MetricFlowQueryRequest

        self._request = MetricFlowQueryRequest.create
        self.engine, self.start, self.end = engine, start, end
        self._metrics = {m.name: m for m in engine.list_metrics()}
        self._frames: dict[tuple, pd.DataFrame] = {}
        self.queries = 0

    def known(self, metric: str) -> bool:
        return metric in self._metrics

    def label(self, metric: str) -> str:
        found = self._metrics.get(metric)
        return (getattr(found, "label", None) or metric.replace("_", " ").capitalize()) if found else metric

    def fmt(self, metric: str) -> str | None:
        found = self._metrics.get(metric)
        meta = (found.config.meta if found and found.config else None) or {}
        return meta.get("format")

    def dimensions(self, metric: str) -> list[Dimension]:
        """The metric's categorical dimensions one join away, the tenant's own attributes aside (one
        value per tenant: nothing to split a tenant's change over)."""
        out = []
        for dim in self.engine.simple_dimensions_for_metrics([metric]):
            if str(dim.type).split(".")[-1].lower() != "categorical" or len(dim.entity_links) != 1:
                continue
            entity = dim.entity_links[0].element_name
            if entity == TENANT:
                continue
            label = dim.label or (dim.name if dim.name == "event_type" else dim.name.removeprefix("event_"))
            out.append(Dimension(f"{entity}__{dim.name}", label.replace("_", " ")))
        return sorted(set(out), key=lambda d: d.name)

    def factors(self, metric: str) -> list[tuple[str, int]]:
        """The metric's components: a ratio's numerator and denominator, or `config.meta.components`."""
        found = self._metrics.get(metric)
        if found is None:
            return []
        meta = (found.config.meta if found.config else None) or {}
        if meta.get("components"):
            return [(name, 1) for name in meta["components"]]
        params = found.type_params
        if str(found.type).split(".")[-1].lower() == "ratio" and params.numerator and params.denominator:
            return [(params.numerator.name, 1), (params.denominator.name, -1)]
        return []

    def daily(self, metrics: tuple[str, ...], dimension: str | tuple[str, ...] | None = None) -> pd.DataFrame:
        """Columns day, tenant, [segment], one per metric; every tenant and day of the window. Grouped
        by two dimensions (a tuple), a segment is their values joined by `SEPARATOR`."""
        dimensions = (dimension,) if isinstance(dimension, str) else tuple(dimension or ())
        key = (metrics, dimensions)
        if key not in self._frames:
            group_by = [DAY, TENANT, *dimensions]
            request = self._request(
                metric_names=list(metrics), group_by_names=group_by,
                time_constraint_start=datetime.combine(self.start, datetime.min.time()) if self.start else None,
                time_constraint_end=datetime.combine(self.end, datetime.max.time()) if self.end else None)
            table = self.engine.query(request).result_df
            self.queries += 1
            frame = pd.DataFrame(list(table.rows), columns=list(table.column_names))
            frame = frame.rename(columns={DAY: "day", TENANT: "tenant"})
            frame["day"] = pd.to_datetime(frame["day"]).dt.date
            for metric in metrics:
                frame[metric] = pd.to_numeric(frame[metric], errors="coerce").astype(float).fillna(0.0)
            if dimensions:
                values = [frame.pop(d).astype(object) for d in dimensions]
                values = [v.where(v.notna(), "(none)").astype(str) for v in values]
                frame["segment"] = values[0].str.cat(values[1:], sep=SEPARATOR) if len(values) > 1 else values[0]
            self._frames[key] = frame
        return self._frames[key]


def splitting(source: GovernedMetrics, metric: str, change: Change) -> list[Dimension]:
    """The metric's dimensions whose segments split it: on the change's days their values add up to
    the whole (a user with events of several types counts in each type: event type does not split
    active users)."""
    days = set(change.days) | set(change.baseline_days)
    whole = source.daily((metric,))
    whole = whole[(whole["tenant"] == change.tenant_id) & whole["day"].isin(days)][metric].sum()
    kept = []
    for dimension in source.dimensions(metric):
        daily = source.daily((metric,), dimension.name)
        summed = daily[(daily["tenant"] == change.tenant_id) & daily["day"].isin(days)][metric].sum()
        if summed <= OVERLAP * whole + 1e-9:
            kept.append(dimension)
    return kept


def pairs(dimensions: list[Dimension]) -> list[Dimension]:
    """The pairs of dimensions of one semantic model (the same entity: `user__device` and
    `user__country`), each once."""
    return [Dimension.of(a, b) for i, a in enumerate(dimensions) for b in dimensions[i + 1:]
            if a.name.split("__")[0] == b.name.split("__")[0]]


def varied(source: GovernedMetrics, metric: str, change: Change, dimensions: list[Dimension]) -> list[Dimension]:
    """The dimensions with more than one segment on the change's days for its tenant: a dimension of
    one value (errors are all of event type "error") adds nothing to a pair but a query."""
    days = set(change.days) | set(change.baseline_days)
    kept = []
    for dimension in dimensions:
        daily = source.daily((metric,), dimension.name)
        mine = daily[(daily["tenant"] == change.tenant_id) & daily["day"].isin(days) & (daily[metric] != 0)]
        if mine["segment"].nunique() > 1:
            kept.append(dimension)
    return kept


def _standing_out(change: Change, source: GovernedMetrics, metric: str, dimension: Dimension):
    """The segments of one dimension (or cells of a pair) that stand out, their score (how far they
    stand out: their shares above their usual shares) and the signed whole change; None if none."""
    daily = source.daily((metric,), dimension.group_by)
    mine = daily[daily["tenant"] == change.tenant_id].rename(columns={metric: "value"})
    current, usual, noise = segment_values(mine, change)
    if current.empty and usual.empty:
        return None
    anomaly = np.isfinite(change.expected)
    expected = change.expected if anomaly else float(usual.sum())
    parts = decompose(current, usual, noise, change.actual if anomaly else float(current.sum()), expected)
    named = standing_out(parts)
    if dimension.pair:
        named = confined(parts, named)
    if named.empty:
        return None
    signed = change.actual - change.expected if anomaly else float(current.sum() - expected)
    return float((named["share"] - named["usual_share"]).sum()), named, signed


def _strongest(change: Change, source: GovernedMetrics, metric: str, dimensions: list[Dimension]):
    """(score, dimension, named segments, signed whole change) of the dimension whose segments stand
    out most, or None."""
    found = [(result[0], dimension, result[1], result[2]) for dimension in dimensions
             if (result := _standing_out(change, source, metric, dimension)) is not None]
    return max(found, key=lambda one: one[0], default=None)


def explain(change: Change, source: GovernedMetrics) -> Explained:
    """The drivers of one change, and the sentence that names them."""
    metric = METRIC_OF_SERIES.get(change.metric, change.metric)
    label, fmt = source.label(metric), source.fmt(metric)
    if change.tenant_id == TOTAL or not source.known(metric):
        return Explained(pd.DataFrame(columns=DRIVER_COLUMNS), "")
    per_day = len(change.days) > 1
    whole = change.actual - (change.expected if np.isfinite(change.expected) else 0.0)
    rows: list[dict] = []
    whole_days = source.daily((metric,))
    whole_days = whole_days[whole_days["tenant"] == change.tenant_id]
    judged = np.isfinite(change.score)
    whole_series = whole_days.assign(segment="all").rename(columns={metric: "value"})
    if (judged and abs(change.score) < THRESHOLD) or (not judged and not beyond_noise(whole_series, change)):
        return Explained(pd.DataFrame(columns=DRIVER_COLUMNS),
                         f"The change is within the usual ups and downs of {label.lower()}: nothing stands out "
                         "to break down.")
    dimensions = splitting(source, metric, change)
    # the single dimension that explains most, and the pair; the pair's cells are far narrower than
    # their segments (`confined`), and win if they carry about as much of the change (`PAIR_OF_PARENT`)
    single, pair = (_strongest(change, source, metric, dimensions),
                    _strongest(change, source, metric, pairs(varied(source, metric, change, dimensions))))
    best = pair if pair is not None and pair_wins(single[2] if single else None, pair[2]) else single
    if best is not None:
        _, dimension, named, signed = best
        for rank, part in enumerate(named.itertuples(), start=1):
            rows.append({**_row(change, "segment", dimension.name, dimension.label, part, rank),
                         "explanation": segment_sentence(label, fmt, signed, dimension,
                                                         named.iloc[[rank - 1]], per_day)})
        sentence = segment_sentence(label, fmt, signed, dimension, named, per_day)
    elif not dimensions:
        sentence = f"{label} has no governed dimension to break the change down by."
    else:
        names = sorted({d.label for d in dimensions})
        listed = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]
        sentence = (f"The {'rise' if whole > 0 else 'drop'} is spread across segments alike: no {listed} "
                    "stands out.")
    factors = source.factors(metric)
    if factors:
        values = source.daily(tuple(name for name, _ in factors))
        mine = values[values["tenant"] == change.tenant_id]
        parts = component_shares(mine, change, factors)
        for rank, part in enumerate(parts.sort_values("share", ascending=False).itertuples(), start=1):
            rows.append(_row(change, "component", part.segment, source.label(part.segment), part, rank))
        words = component_sentence({n: (source.label(n), source.fmt(n)) for n, _ in factors}, parts)
        sentence = f"{sentence} {words}".strip()
    drivers = pd.DataFrame(rows, columns=DRIVER_COLUMNS)
    if best is None:
        return Explained(drivers, sentence, None, rows)
    dimension, segment = best[1], str(best[2]["segment"].iloc[0])
    labels = [d.label for d in dimension.pair or (dimension,)]
    cell = tuple(zip(labels, segment.split(SEPARATOR) if dimension.pair else [segment], strict=True))
    return Explained(drivers, sentence, (dimension.label, segment), rows, cell, place(dimension, segment))


def _row(change: Change, kind: str, dimension: str, label: str, part, rank: int) -> dict:
    return {"insight_key": change.key, "tenant_id": change.tenant_id, "metric": change.metric,
            "date_day": change.day, "driver_kind": kind, "dimension": dimension, "dimension_label": label,
            "segment": str(part.segment), "actual": float(part.actual), "expected": float(part.expected),
            "change": float(part.actual - part.expected), "share": float(part.share),
            "usual_share": float(getattr(part, "usual_share", np.nan)),
            "noise_ratio": float(getattr(part, "noise_ratio", np.nan)), "is_new": bool(part.is_new), "rank": rank,
            "explanation": ""}


def explain_all(insights: pd.DataFrame, source_for: Callable[[], GovernedMetrics],
                kinds: Iterable[str] = ("anomaly_spike", "anomaly_drop", "trend_up", "trend_down", "change_point")
                ) -> tuple[pd.DataFrame, dict[str, Explained]]:
    """Drivers of every insight of `kinds` (per tenant; the all-tenants series have none): the
    driver rows and, per insight key, what was found. The source is opened only if one needs it."""
    wanted = insights[insights["insight_type"].isin(list(kinds)) & (insights["tenant_id"] != TOTAL)]
    found: dict[str, Explained] = {}
    if wanted.empty:
        return pd.DataFrame(columns=DRIVER_COLUMNS), found
    source = source_for()
    for insight in wanted.to_dict("records"):
        change = change_of(insight)
        if change is not None:
            found[change.key] = explain(change, source)
    frames = [e.drivers for e in found.values() if not e.drivers.empty]
    drivers = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=DRIVER_COLUMNS)
    return drivers, found
