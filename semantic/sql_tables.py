"""The tables the SQL endpoint serves, derived from the member catalog: their names, and their
columns with PostgreSQL types.

Everything table-shaped the endpoint does (the system catalog it describes, `SELECT *`, the types
of results, which columns are measures) reads `tables(catalog)`, so that the shape of the served
tables is decided here only.

A table is one view of the catalog (`members.py`: one per family of facts, in which every measure
can be grouped by every dimension), plus `metrics`, the single table of earlier releases. Its
columns are the view's dimensions (text, numeric or boolean, as their Cube type says), its time
dimension at each of the view's granularities (`metric_time` is the day; `metric_time__month` the
month, as a date; hours and minutes as timestamps), and its measures (bigint for counts, numeric
otherwise). A measure is evaluated by MetricFlow at the grain of the query's dimensions, with its
own aggregation.
"""

from __future__ import annotations

from dataclasses import dataclass

from semantic import pg_types
from semantic.members import Catalog, Dimension, Measure, View
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


def _measure_type(measure: Measure) -> PgType:
    """Counts are integers (bigint, as PostgreSQL types count()); every other measure is numeric."""
    return pg_types.INT8 if measure.agg_type in ("count", "countDistinct", "countDistinctApprox") else pg_types.NUMERIC


def _columns(view: View) -> tuple[Column, ...]:
    prefix = f"{view.name}."
    columns = []
    for dim in sorted(view.dimensions.values(), key=lambda d: (d.type == "time", d.member)):
        name = dim.member.removeprefix(prefix)
        if dim.type != "time":
            columns.append(Column(name, dim.member, "dimension", _dimension_type(dim), dim.description))
            continue
        for grain in sorted(view.granularities, key=lambda g: g != "day"):  # the day (metric_time) first
            pg_type = pg_types.TIMESTAMP if grain in SUB_DAY else pg_types.DATE
            columns.append(Column(name if grain == "day" else f"{name}__{grain}", dim.member, "time", pg_type,
                                  f"{dim.description} ({grain})", granularity=grain))
    for measure in view.measures.values():
        columns.append(Column(measure.member.removeprefix(prefix), measure.member, "measure", _measure_type(measure),
                              measure.description, aggregation=measure.agg_type))
    return tuple(columns)


def _count_measure(view: View) -> str | None:
    """The measure `COUNT(*)` means: the view's count measure (Cube's convention), else its measure of
    the view's own name (`orders.orders`, the count of its facts)."""
    counts = [m for m in view.measures.values() if m.agg_type == "count"]
    own = [m for m in view.measures.values() if m.metric == view.name]
    chosen = (counts or own or [None])[0]
    return chosen.member.removeprefix(f"{view.name}.") if chosen else None


def tables(catalog: Catalog) -> dict[str, Table]:
    """Every table the endpoint serves, by name: one per view of the catalog, and `metrics`, the view
    of earlier releases (every metric and dimension; not every pair works there)."""
    served = {name: Table(name, view.description, _columns(view), _count_measure(view))
              for name, view in catalog.views.items()}
    legacy = catalog.legacy
    served[legacy.name] = Table(legacy.name, legacy.description, _columns(legacy), None, combinable=False)
    return served
