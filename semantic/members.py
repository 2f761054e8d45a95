"""The members BI tools and apps see: Cube-style views over the governed metrics.

Every metric and dimension comes from the dbt semantic models (a metric added there appears
here without code; renaming one renames its member). They are grouped into views, one per
family of facts, as Cube's users build views: within a view every measure × dimension pair
works, so a client that only reads `/v1/meta` (or the SQL endpoint's catalog) never builds a
query that fails.

- A metric belongs to the view of the semantic model its measures come from (`orders`: revenue,
  orders, average order value), or to the views its `meta.views` names in its yml; a metric that
  reads several semantic models (customer acquisition cost) must name its views.
- A view's dimensions are those MetricFlow can group all of its metrics by, its entities' keys
  among them; its time grains are those of `metric_time` every metric of it supports. Both are
  checked when the catalog is built by compiling one query per view and having the warehouse
  plan it (`Probe`); a member that fails is left out of the view, and the log says why.
- Members are `<view>.<metric>`, `<view>.<entity>` (its key), `<view>.<entity>__<dimension>`,
  and `<view>.metric_time` with a granularity; replies carry `<view>.metric_time.<granularity>`.
- `metrics`, the one view of earlier releases, still answers: every metric with every dimension,
  each query checked pair by pair against what its metrics can be grouped by. `/meta` does not
  list it.
"""

from __future__ import annotations

import difflib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from metricflow.engine.metricflow_engine import MetricFlowEngine
from metricflow_semantics.model.semantic_manifest_lookup import SemanticManifestLookup

log = logging.getLogger(__name__)

LEGACY_VIEW = "metrics"
VIEW = LEGACY_VIEW  # the view of earlier releases, kept for the clients written against it
TIME_DIMENSION = "metric_time"
GRANULARITIES = ("minute", "hour", "day", "week", "month", "quarter", "year")
# The entity whose key decides which rows a tenant's token may see.
TENANT_ENTITY = "tenant"
VIEWS_META = "views"
# Cube's aggType for MetricFlow's measure aggregations (a ratio or a derived metric is a "number").
AGG_TYPES = {"sum": "sum", "sum_boolean": "sum", "count": "count", "count_distinct": "countDistinct",
             "average": "avg", "min": "min", "max": "max"}

# (metrics, group-by names) -> None if MetricFlow compiles it and the warehouse plans it, else why not
Probe = Callable[[list[str], list[str]], str | None]
# (semantic model, column or expression) -> Cube's type of that dimension ("string" unless known)
ColumnType = Callable[[str, str], str]


@dataclass(frozen=True)
class Measure:
    member: str
    metric: str
    title: str
    description: str
    metric_type: str  # MetricFlow's: simple, ratio, cumulative, derived, conversion
    agg_type: str = "number"  # Cube's
    cumulative: bool = False
    format: str | None = None  # Cube's: currency or percent
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Dimension:
    member: str
    group_by: str  # the MetricFlow group-by name (a dunder name, or an entity name)
    title: str
    description: str
    type: str  # Cube's: string, number, boolean or time


@dataclass(frozen=True)
class View:
    name: str
    title: str
    description: str
    measures: dict[str, Measure]
    dimensions: dict[str, Dimension]
    granularities: tuple[str, ...] = ("day", "week", "month", "quarter", "year")
    primary_entity: str | None = None  # the key of one fact, where the view is one semantic model's


class UnknownMember(ValueError):
    """A member the catalog does not have, or one a query cannot use; the message says which and why."""


@dataclass(frozen=True)
class Catalog:
    views: dict[str, View]  # what /meta lists
    legacy: View  # `metrics`: everything, checked pair by pair
    measures: dict[str, Measure] = field(default_factory=dict)
    dimensions: dict[str, Dimension] = field(default_factory=dict)
    # per metric, what it can be grouped by and at which grains: what the views it is in offer
    group_bys: dict[str, frozenset[str]] = field(default_factory=dict)
    granularities: dict[str, frozenset[str]] = field(default_factory=dict)

    def __post_init__(self):
        for view in (*self.views.values(), self.legacy):
            self.measures.update(view.measures)
            self.dimensions.update(view.dimensions)
        for view in self.views.values():
            for measure in view.measures.values():
                self.group_bys[measure.metric] = self.group_bys.get(measure.metric, frozenset()) | {
                    d.group_by for d in view.dimensions.values() if d.type != "time"}
                self.granularities[measure.metric] = self.granularities.get(measure.metric, frozenset()) | set(
                    view.granularities)

    def view(self, member: str) -> View:
        name = member.split(".", 1)[0]
        return self.legacy if name == LEGACY_VIEW else self.views[name]

    def measure(self, member: str, where: str) -> Measure:
        if isinstance(member, str) and member in self.measures:
            return self.measures[member]
        raise UnknownMember(self._unknown(member, where, "measure", self.measures))

    def dimension(self, member: str, where: str) -> Dimension:
        if isinstance(member, str) and member in self.dimensions:
            return self.dimensions[member]
        raise UnknownMember(self._unknown(member, where, "dimension", self.dimensions))

    def member(self, member: str, where: str) -> Measure | Dimension:
        """A measure or a dimension (filters and order may name either)."""
        if isinstance(member, str) and member in self.measures:
            return self.measures[member]
        if isinstance(member, str) and member in self.dimensions:
            return self.dimensions[member]
        raise UnknownMember(self._unknown(member, where, "member", {**self.measures, **self.dimensions}))

    def check(self, members: Iterable[tuple[str, str]]) -> View:
        """The one view a query's members ((member, where it was named)) come from; an error names
        the member from another view, or (in `metrics`) the metric a dimension does not apply to."""
        members = list(members)
        if not members:
            raise UnknownMember("query: no members")
        first_member, first_where = members[0]
        view = self.view(first_member)
        for member, where in members[1:]:
            if self.view(member) is not view:
                raise UnknownMember(f"{where}: {member!r} is in view {self.view(member).name!r}, not "
                                    f"{view.name!r} like {first_member!r} ({first_where}): a query reads one view")
        if view is self.legacy:
            metrics = [(self.measures[m].metric, w) for m, w in members if m in self.measures]
            for member, where in members:
                dimension = self.dimensions.get(member)
                if dimension is None or dimension.type == "time":
                    continue
                for metric, metric_where in metrics:
                    if dimension.group_by not in self.group_bys.get(metric, frozenset()):
                        raise UnknownMember(f"{where}: {member!r} does not apply to {metric!r} ({metric_where}); "
                                            f"its dimensions are in the views {self._views_of(metric)}")
        return view

    def _views_of(self, metric: str) -> str:
        names = [v.name for v in self.views.values() if any(m.metric == metric for m in v.measures.values())]
        return ", ".join(repr(n) for n in names) or "(none)"

    @staticmethod
    def _unknown(member, where: str, kind: str, known: dict) -> str:
        if not isinstance(member, str):
            return f"{where}: expected a member name (a string), got {type(member).__name__} {member!r}"
        close = difflib.get_close_matches(member, list(known), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return f"{where}: unknown {kind} {member!r}{hint}"

    def meta(self) -> dict:
        """The views in the shape of Cube's /v1/meta reply."""
        return {"cubes": [_view_meta(view) for view in self.views.values()]}


def _view_meta(view: View) -> dict:
    return {
        "name": view.name, "title": view.title, "type": "view", "public": True, "isVisible": True,
        "description": view.description, "connectedComponent": 1, "segments": [], "folders": [],
        "measures": [{
            "name": m.member, "title": m.title, "shortTitle": m.title, "type": "number", "aggType": m.agg_type,
            "cumulative": m.cumulative, "cumulativeTotal": False, "description": m.description,
            "drillMembers": [], "drillMembersGrouped": {"measures": [], "dimensions": []},
            "isVisible": True, "public": True, **({"format": m.format} if m.format else {}),
            **({"meta": m.meta} if m.meta else {}),
        } for m in view.measures.values()],
        "dimensions": [{
            "name": d.member, "title": d.title, "shortTitle": d.title, "type": d.type, "description": d.description,
            "isVisible": True, "public": True, "suggestFilterValues": d.type == "string",
            **({"granularities": [{"name": g, "title": g.title(), "interval": f"1 {g}"} for g in view.granularities]}
               if d.type == "time" else {}),
        } for d in view.dimensions.values()],
    }


def _title(name: str) -> str:
    return name.replace("__", " ").replace("_", " ").strip().capitalize()


def declared_aggregations(semantic_manifest: Path) -> dict[str, str]:
    """Each measure's aggregation as the YAML declares it. MetricFlow rewrites `count` into a sum of
    ones when it loads the manifest, so its lookup would report every count as a sum."""
    manifest = json.loads(semantic_manifest.read_text())
    return {m["name"]: m["agg"] for model in manifest["semantic_models"] for m in model["measures"]}


def _agg_type(metric, measures: dict, declared: Mapping[str, str]) -> tuple[str, bool]:
    """Cube's aggType of a metric, and whether it is cumulative (a rolling window)."""
    kind = metric.type.value.lower()
    if kind not in ("simple", "cumulative"):
        return "number", False
    params = metric.type_params
    name = params.measure.name if params.measure is not None else None
    measure = measures.get(name)
    if measure is None or measure.non_additive_dimension is not None:
        return "number", kind == "cumulative"
    agg = declared.get(name, measure.agg.value).lower()
    return AGG_TYPES.get(agg, "number"), kind == "cumulative"


def _views_of(metric, lookup: SemanticManifestLookup) -> list[str]:
    declared = (metric.config.meta or {}).get(VIEWS_META) if metric.config is not None else None
    if declared:
        return [declared] if isinstance(declared, str) else list(declared)
    models = sorted({ref.semantic_model_name for ref in metric.semantic_models})
    if len(models) != 1:
        raise ValueError(f"metric {metric.name!r} reads the semantic models {', '.join(models)}: name the views it "
                         f"belongs to with `config: {{meta: {{{VIEWS_META}: [...]}}}}` in its yml")
    return models


def _dimensions(engine: MetricFlowEngine, metrics: list[str], view: str,
                column_type: ColumnType) -> dict[str, Dimension]:
    """Every non-time dimension and entity key MetricFlow can group all `metrics` by, as members."""
    found: dict[str, Dimension] = {}
    for entity in engine.entities_for_metrics(metrics):
        if entity.name in found:
            continue
        model = entity.semantic_model_reference.semantic_model_name
        found[entity.name] = Dimension(f"{view}.{entity.name}", entity.name, _title(entity.name),
                                       entity.description or f"The {entity.name} key.",
                                       column_type(model, entity.expr or entity.name))
    dims = [d for d in engine.list_dimensions(metric_names=metrics) if d.type.value.lower() != "time"]
    direct = {d.granularity_free_dunder_name for d in dims}
    for dim in dims:  # metric_time covers time; other time dimensions are not offered as members
        name = dim.granularity_free_dunder_name
        if any(name.endswith(f"__{shorter}") for shorter in direct if shorter != name and "__" in shorter):
            continue  # user__tenant__industry when tenant__industry is there: the same, the long way
        model = dim.semantic_model_reference.semantic_model_name
        found.setdefault(name, Dimension(f"{view}.{name}", name, dim.label or _title(name),
                                         (dim.description or "").strip(), column_type(model, dim.expr or dim.name)))
    return found


def _working(candidates: list[str], works: Callable[[list[str]], str | None], what: str) -> list[str]:
    """The candidates that work: all of them at once if they do, else found by halving."""
    if not candidates:
        return []
    why = works(candidates)
    if why is None:
        return candidates
    if len(candidates) == 1:
        log.warning("%s: %s left out: %s", what, candidates[0], why)
        return []
    half = len(candidates) // 2
    return _working(candidates[:half], works, what) + _working(candidates[half:], works, what)


def build_catalog(engine: MetricFlowEngine, lookup: SemanticManifestLookup, probe: Probe | None = None,
                  column_type: ColumnType | None = None, declared: Mapping[str, str] | None = None) -> Catalog:
    """The views of the governed metrics; with `probe`, only members that compile and plan.
    `declared`: the measures' aggregations as written (`declared_aggregations`)."""
    declared = declared or {}
    column_type = column_type or (lambda model, column: "string")
    manifest = lookup.semantic_manifest
    measures = {m.name: m for model in manifest.semantic_models for m in model.measures}
    defined = {m.name: m for m in manifest.metrics}
    models = {m.name: m for m in manifest.semantic_models}
    members: dict[str, list] = {}
    for metric in sorted(engine.list_metrics(), key=lambda m: m.name):
        for view in _views_of(metric, lookup):
            members.setdefault(view, []).append(metric)
    views = {}
    for name, metrics in sorted(members.items()):
        names = [m.name for m in metrics]
        model = models.get(name)
        dimensions = _dimensions(engine, names, name, column_type)
        if probe is not None:
            # rolling windows are always computed by day (without a grain: read on the last day)
            by_day = [f"{TIME_DIMENSION}__day"] if any(m.type.value.lower() == "cumulative" for m in metrics) else []

            def works(group_by: list[str], metrics=names, by_day=by_day) -> str | None:
                return probe(metrics, list(dict.fromkeys([*group_by, *by_day])))

            kept = _working(sorted(dimensions), works, f"view {name}")
            dimensions = {d: dimensions[d] for d in kept}
            grains = tuple(_working([f"{TIME_DIMENSION}__{g}" for g in GRANULARITIES], works, f"view {name}"))
            granularities = tuple(g.removeprefix(f"{TIME_DIMENSION}__") for g in grains)
        else:
            granularities = View.granularities
        view_members = {f"{name}.{m.name}": _measure(f"{name}.{m.name}", m, defined, measures, declared)
                        for m in metrics}
        dims = {f"{name}.{TIME_DIMENSION}": Dimension(f"{name}.{TIME_DIMENSION}", TIME_DIMENSION, "Metric time",
                                                      "The time each metric is measured at; pick a granularity.",
                                                      "time")}
        dims.update({d.member: d for d in sorted(dimensions.values(), key=lambda d: d.member)})
        title = _title(name)
        # stripped: a folded YAML description (`description: >`) ends with a newline, which a table's
        # comment (pg_description, JDBC's REMARKS, Superset's dataset description) should not carry
        description = (model.description.strip() if model is not None and model.description and
                       model.description.strip() else
                       "Metrics: " + ", ".join(m.label or _title(m.name) for m in metrics) + ".")
        primary = next((e.name for e in model.entities if e.type.value.lower() == "primary"), None) if model else None
        views[name] = View(name, title, description, view_members, dims, granularities, primary)
    return Catalog(views, _legacy(engine, views, defined, measures, declared))


def _measure(member: str, metric, defined: dict, measures: dict, declared: Mapping[str, str]) -> Measure:
    agg_type, cumulative = _agg_type(defined[metric.name], measures, declared)
    meta = dict(defined[metric.name].config.meta or {}) if defined[metric.name].config is not None else {}
    meta.pop(VIEWS_META, None)
    return Measure(member, metric.name, metric.label or _title(metric.name), (metric.description or "").strip(),
                   metric.type.value.lower(), agg_type, cumulative, meta.get("format"), meta)


def _legacy(engine: MetricFlowEngine, views: dict[str, View], defined: dict, measures: dict,
            declared: Mapping[str, str]) -> View:
    """`metrics`: every metric and every dimension of any view."""
    metrics = {f"{LEGACY_VIEW}.{m.name}": _measure(f"{LEGACY_VIEW}.{m.name}", m, defined, measures, declared)
               for m in sorted(engine.list_metrics(), key=lambda m: m.name)}
    dimensions: dict[str, Dimension] = {}
    for view in views.values():
        for d in view.dimensions.values():
            member = f"{LEGACY_VIEW}.{d.group_by}"
            dimensions.setdefault(member, Dimension(member, d.group_by, d.title, d.description, d.type))
    grains = sorted({g for v in views.values() for g in v.granularities}, key=GRANULARITIES.index)
    return View(LEGACY_VIEW, "Governed metrics", "Every metric with every dimension (the view of earlier releases): "
                "a dimension applies only to the metrics that can be cut by it.",
                metrics, dict(sorted(dimensions.items())), tuple(grains))
