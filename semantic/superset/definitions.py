"""What Superset is given, derived from the one definition of each metric (the member catalog, through the
SQL endpoint's tables): a dataset per served view, with its measures as Superset metrics and its
dimensions as columns; and the starter dashboard, mirroring the Executive KPIs page of the reports.

Pure data: `provision.py` sends it to Superset's REST API. A metric's Superset expression is
`MEASURE(<column>)`, which the SQL endpoint evaluates with the metric's own aggregation at the grain
of the query (as Cube's SQL API does), so Superset never re-aggregates a ratio or a balance.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from semantic.members import Catalog
from semantic.sql_tables import Column, Table, tables

CERTIFIED_BY = "dbt semantic layer"
# The day column every view has (`metric_time`): Superset's time column; its grains are Superset's
TIME_COLUMN = "metric_time"
FORMATS = {"currency": ",.2f", "percent": ".2%"}
COUNT_FORMAT = ",d"
NUMBER_FORMAT = "SMART_NUMBER"  # Superset's: 18, 1.2k, 0.35


@dataclass(frozen=True)
class Metric:
    name: str  # the SQL endpoint's column, the dbt metric's name
    label: str
    description: str
    d3format: str
    currency: str | None  # ISO 4217 code for money

    def payload(self, certification: str) -> dict:
        return {"metric_name": self.name, "verbose_name": self.label, "expression": f"MEASURE({self.name})",
                "description": self.description, "d3format": self.d3format, "metric_type": "measure",
                "currency": {"symbol": self.currency, "symbolPosition": "prefix"} if self.currency else None,
                "extra": json.dumps({"certification": {"certified_by": CERTIFIED_BY, "details": certification}})}


@dataclass(frozen=True)
class Dataset:
    name: str  # the table in schema `public` of the SQL endpoint
    description: str
    metrics: tuple[Metric, ...]
    columns: tuple[Column, ...]  # the table's dimensions, its day (`metric_time`) and its measures

    @property
    def certification(self) -> str:
        return f"Governed metrics of the {self.name} view: defined once in the dbt semantic models"

    def column_payload(self, column: Column, existing: dict | None) -> dict:
        """A column as Superset's dataset API takes it; the measures' raw columns are neither grouped nor
        filtered by (their metric is the way to use them)."""
        payload = {"column_name": column.name, "verbose_name": _title(column.name), "description": column.description,
                   "is_dttm": column.kind == "time", "groupby": column.kind != "measure",
                   "filterable": column.kind != "measure", "type": column.pg_type.sql_name.upper()}
        if existing is not None:
            payload["id"] = existing["id"]
        return payload


def _title(name: str) -> str:
    return name.replace("__", " ").replace("_", " ").capitalize()


def _metric(column: Column, catalog: Catalog) -> Metric:
    measure = catalog.measure(column.member, "dataset")
    kind = measure.format or measure.meta.get("format")
    counted = column.aggregation in ("count", "countDistinct")
    d3format = FORMATS.get(kind, COUNT_FORMAT if counted else NUMBER_FORMAT)
    currency = measure.meta.get("currency") or ("USD" if kind == "currency" else None)
    return Metric(column.name, measure.title, measure.description, d3format, currency if kind == "currency" else None)


def datasets(catalog: Catalog) -> list[Dataset]:
    """One dataset per view the SQL endpoint serves as a table (the legacy `metrics` table, in which not
    every pair of members works, is left out: a governed dataset is one where every chart works). Of the
    time columns only the day is kept: Superset's time grain truncates it (`DATE_TRUNC`, which the
    endpoint evaluates), so `metric_time__month` and the like would only be a second way to do it."""
    served: dict[str, Table] = tables(catalog)
    return [Dataset(name, table.description, tuple(_metric(c, catalog) for c in table.measures),
                    tuple(c for c in table.columns if c.kind != "time" or c.name == TIME_COLUMN))
            for name, table in sorted(served.items()) if table.combinable]


# -- the starter dashboard -------------------------------------------------------------------------------

DASHBOARD_SLUG = "executive-kpis"
DASHBOARD_TITLE = "Executive KPIs"
# The Executive KPIs page (reports/pages/index.md): each KPI's latest week against the week before, then trends
KPIS = ("revenue", "orders", "average_order_value", "active_users", "mrr", "churn_rate")
TRENDS = (("Revenue per day", ("revenue",)), ("Orders and active users per day", ("orders", "active_users")),
          ("MRR over time", ("mrr",)))


@dataclass(frozen=True)
class Chart:
    name: str
    dataset: str
    viz_type: str
    params: dict = field(default_factory=dict)


def _home(metric: str, found: list[Dataset]) -> Dataset | None:
    """The dataset a metric is charted from: the view of its own family (the narrowest), if any serves it."""
    homes = [d for d in found if any(m.name == metric for m in d.metrics)]
    return min(homes, key=lambda d: len(d.metrics)) if homes else None


def _label(metric: str, found: list[Dataset]) -> str:
    return next(m.label for m in _home(metric, found).metrics if m.name == metric)


def dashboard_charts(found: list[Dataset]) -> list[Chart]:
    """The page's charts: a big number with its weekly trend per KPI, and the daily trend lines. A trend
    of two metrics needs them in one view; else each gets its own chart. A KPI no view serves any more
    (renamed or removed in dbt) has no chart: the rest of the dashboard still works."""
    charts = []
    for metric in [m for m in KPIS if _home(m, found)]:
        charts.append(Chart(_label(metric, found), _home(metric, found).name, "big_number", {
            "metric": metric, "x_axis": TIME_COLUMN, "granularity_sqla": TIME_COLUMN, "time_grain_sqla": "P1W",
            "time_range": "No filter", "compare_lag": 1, "compare_suffix": "vs previous week",
            "show_trend_line": True, "start_y_axis_at_zero": False, "header_font_size": 0.4,
            "subheader_font_size": 0.15, "adhoc_filters": []}))
    for title, wanted in TRENDS:
        metrics = [m for m in wanted if _home(m, found)]
        homes = {_home(m, found).name for m in metrics}
        groups = [(title, metrics)] if len(homes) == 1 else [(f"{_label(m, found)} per day", [m]) for m in metrics]
        for name, chosen in groups:
            charts.append(Chart(name, _home(chosen[0], found).name, "echarts_timeseries_line", {
                "metrics": chosen, "x_axis": TIME_COLUMN, "time_grain_sqla": "P1D", "groupby": [],
                "time_range": "No filter", "row_limit": 10000, "adhoc_filters": [], "show_legend": True,
                "rich_tooltip": True}))
    return charts


def position(chart_ids: list[tuple[int, str]], per_row: int = 3) -> dict:
    """The dashboard's layout (Superset's position_json v2): the KPIs three to a row, then the trends."""
    layout: dict = {"DASHBOARD_VERSION_KEY": "v2",
                    "ROOT_ID": {"type": "ROOT", "id": "ROOT_ID", "children": ["GRID_ID"]},
                    "GRID_ID": {"type": "GRID", "id": "GRID_ID", "children": [], "parents": ["ROOT_ID"]},
                    "HEADER_ID": {"id": "HEADER_ID", "type": "HEADER", "meta": {"text": DASHBOARD_TITLE}}}
    for start in range(0, len(chart_ids), per_row):
        row = f"ROW-{start // per_row}"
        layout["GRID_ID"]["children"].append(row)
        layout[row] = {"type": "ROW", "id": row, "children": [], "parents": ["ROOT_ID", "GRID_ID"],
                       "meta": {"background": "BACKGROUND_TRANSPARENT"}}
        for chart_id, name in chart_ids[start:start + per_row]:
            key = f"CHART-{chart_id}"
            layout[row]["children"].append(key)
            layout[key] = {"type": "CHART", "id": key, "children": [], "parents": ["ROOT_ID", "GRID_ID", row],
                           "meta": {"width": 12 // per_row, "height": 50, "chartId": chart_id, "sliceName": name}}
    return layout
