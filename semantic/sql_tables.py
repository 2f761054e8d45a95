"""The tables the SQL endpoint serves, derived from the member catalog: their names, and their
columns with PostgreSQL types.

Everything table-shaped the endpoint does (the system catalog it describes, `SELECT *`, the types
of results, which columns are measures) reads `tables(catalog)`, so that the shape of the served
tables is decided here only.

A table is one view of the catalog. Its columns are the view's dimensions (text, numeric or
boolean, as their Cube type says), its time dimension at each granularity (`metric_time` is the
day; `metric_time__month` the month, as a date; finer grains as timestamps), and its measures
(numeric). A measure is evaluated by MetricFlow at the grain of the query's dimensions, with its own
aggregation.
"""

from __future__ import annotations

from dataclasses import dataclass

from semantic import pg_types
from semantic.members import GRANULARITIES, VIEW, Catalog, Dimension, Measure
from semantic.pg_types import PgType

SUB_DAY = ("hour", "minute", "second")


@dataclass(frozen=True)
class Column:
    name: str  # the SQL column name
    member: str  # the catalog member its values are
    kind: str  # dimension, time or measure
    pg_type: PgType
    description: str
    granularity: str | None = None  # time columns: the grain their values are at
    aggregation: str | None = None  # measures: Cube's aggregation type, where the catalog says it


@dataclass(frozen=True)
class Table:
    name: str
    description: str
    columns: tuple[Column, ...]
    # the measure `COUNT(*)` stands for (Cube's count measure), if the table has one
    count_measure: str | None = None
    # whether every measure can be grouped by every dimension (views are built so)
    combinable: bool = True

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    @property
    def measures(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.kind == "measure")


def _dimension_type(dimension: Dimension) -> PgType:
    return {"number": pg_types.NUMERIC, "boolean": pg_types.BOOL}.get(dimension.type, pg_types.TEXT)


def _aggregation(measure: Measure) -> str | None:
    """Cube's aggregation type of a measure: metrics other than simple ones are calculations
    (`number`); a simple metric's own aggregation is not in the catalog (None: any wrapper)."""
    return None if measure.metric_type == "simple" else "number"


def _columns(prefix: str, measures: list[Measure], dimensions: list[Dimension]) -> tuple[Column, ...]:
    columns = []
    for dim in dimensions:
        name = dim.member.removeprefix(prefix)
        if dim.type != "time":
            columns.append(Column(name, dim.member, "dimension", _dimension_type(dim), dim.description))
            continue
        for grain in GRANULARITIES:
            pg_type = pg_types.TIMESTAMP if grain in SUB_DAY else pg_types.DATE
            columns.append(Column(name if grain == "day" else f"{name}__{grain}", dim.member, "time", pg_type,
                                  f"{dim.description} ({grain})", granularity=grain))
    for measure in measures:
        columns.append(Column(measure.member.removeprefix(prefix), measure.member, "measure", pg_types.NUMERIC,
                              measure.description, aggregation=_aggregation(measure)))
    return tuple(columns)


def tables(catalog: Catalog) -> dict[str, Table]:
    """Every table the endpoint serves, by name, in the order the catalog lists them."""
    prefix = f"{VIEW}."
    dimensions = sorted(catalog.dimensions.values(), key=lambda d: (d.type == "time", d.member))
    return {VIEW: Table(VIEW, "Every governed metric, with the dimensions it can be cut by. Not every metric can "
                              "be cut by every dimension.",
                        _columns(prefix, list(catalog.measures.values()), dimensions), combinable=False)}
