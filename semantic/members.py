"""The stable mapping between Cube members and MetricFlow metrics and dimensions.

Every governed metric and dimension is exposed in one Cube view, `metrics`:

- `metrics.<metric>` (measure): the metric of that name, e.g. `metrics.revenue`.
- `metrics.<entity>` (dimension): the entity as a group-by (its key), e.g. `metrics.tenant`, `metrics.channel`.
- `metrics.<entity>__<dimension>` (dimension): the dimension reached through that entity, e.g.
  `metrics.user__country`, `metrics.user__device`, `metrics.user__plan`, `metrics.event__event_type`.
- `metrics.metric_time` (time dimension): MetricFlow's `metric_time` at the query's granularity
  (day, week, month, quarter, year); replies carry it as `metrics.metric_time.<granularity>`.

Names are derived from the dbt semantic models, so a metric added there appears here without
code; renaming one in dbt renames its member. The catalog is what `/v1/meta` lists.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from metricflow.engine.metricflow_engine import MetricFlowEngine
from metricflow_semantics.model.semantic_manifest_lookup import SemanticManifestLookup

VIEW = "metrics"
TIME_DIMENSION = "metric_time"
GRANULARITIES = ("day", "week", "month", "quarter", "year")
# The entity whose key decides which rows a tenant's token may see.
TENANT_ENTITY = "tenant"


@dataclass(frozen=True)
class Measure:
    member: str
    metric: str
    title: str
    description: str
    metric_type: str


@dataclass(frozen=True)
class Dimension:
    member: str
    group_by: str  # the MetricFlow group-by name (a dunder name, or an entity name)
    title: str
    description: str
    type: str  # Cube's: string, number, boolean or time


class UnknownMember(ValueError):
    """A member the catalog does not have; the message suggests the closest names."""


@dataclass(frozen=True)
class Catalog:
    measures: dict[str, Measure]
    dimensions: dict[str, Dimension]

    def measure(self, member: str, where: str) -> Measure:
        if member in self.measures:
            return self.measures[member]
        raise UnknownMember(self._unknown(member, where, "measure", self.measures))

    def dimension(self, member: str, where: str) -> Dimension:
        if member in self.dimensions:
            return self.dimensions[member]
        raise UnknownMember(self._unknown(member, where, "dimension", self.dimensions))

    def member(self, member: str, where: str) -> Measure | Dimension:
        """A measure or a dimension (filters and order may name either)."""
        if member in self.measures:
            return self.measures[member]
        if member in self.dimensions:
            return self.dimensions[member]
        raise UnknownMember(self._unknown(member, where, "member", {**self.measures, **self.dimensions}))

    @staticmethod
    def _unknown(member: str, where: str, kind: str, known: dict) -> str:
        close = difflib.get_close_matches(member, list(known), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return f"{where}: unknown {kind} {member!r}{hint}"

    def meta(self) -> dict:
        """The catalog in the shape of Cube's /v1/meta reply."""
        return {"cubes": [{
            "name": VIEW,
            "title": "Governed metrics",
            "type": "view",
            "public": True,
            "description": "Every metric defined in the dbt semantic models, with the dimensions they can be cut by.",
            "measures": [{
                "name": m.member, "title": m.title, "shortTitle": m.title, "type": "number",
                "aggType": m.metric_type, "description": m.description, "isVisible": True, "public": True,
            } for m in self.measures.values()],
            "dimensions": [{
                "name": d.member, "title": d.title, "shortTitle": d.title, "type": d.type,
                "description": d.description, "isVisible": True, "public": True,
                **({"granularities": [{"name": g, "title": g.title(), "interval": f"1 {g}"} for g in GRANULARITIES]}
                   if d.type == "time" else {}),
            } for d in self.dimensions.values()],
            "segments": [],
        }]}


def _title(name: str) -> str:
    return name.replace("__", " ").replace("_", " ").strip().capitalize()


def build_catalog(engine: MetricFlowEngine, lookup: SemanticManifestLookup) -> Catalog:
    measures = {}
    for metric in sorted(engine.list_metrics(), key=lambda m: m.name):
        member = f"{VIEW}.{metric.name}"
        measures[member] = Measure(member, metric.name, metric.label or _title(metric.name),
                                   metric.description or "", metric.type.value.lower())
    dimensions = {f"{VIEW}.{TIME_DIMENSION}": Dimension(
        f"{VIEW}.{TIME_DIMENSION}", TIME_DIMENSION, "Metric time",
        "The time each metric is measured at; pick a granularity.", "time")}
    for model in lookup.semantic_manifest.semantic_models:
        for entity in model.entities:
            member = f"{VIEW}.{entity.name}"
            dimensions.setdefault(member, Dimension(member, entity.name, _title(entity.name),
                                                    entity.description or f"The {entity.name} key.", "string"))
    for dim in sorted(engine.list_dimensions(), key=lambda d: d.dunder_name):
        if dim.type.value.lower() == "time":
            continue  # metric_time covers time; other time dimensions are not offered as members
        member = f"{VIEW}.{dim.granularity_free_dunder_name}"
        dimensions.setdefault(member, Dimension(member, dim.granularity_free_dunder_name,
                                                dim.label or _title(dim.granularity_free_dunder_name),
                                                dim.description or "", "string"))
    return Catalog(measures, dict(sorted(dimensions.items())))
