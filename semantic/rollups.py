"""Rollups (Cube's pre-aggregations): standard dashboard queries answered from small tables.

Compiling a query with MetricFlow costs tens of milliseconds of CPU under the GIL, and running it
scans the facts; a dashboard asks the same few shapes again and again (metrics by day, by tenant,
over a date range). `rollups.yml` declares tables of metrics by day and dimensions. They are
built into each published snapshot by MetricFlow itself, before the snapshot becomes current,
so a rollup always holds the same numbers as the data it is served with.

`match` decides whether a plan can be answered from one, and writes the SQL that re-aggregates
it: sums and counts add up, ratios of them divide re-added numerators and denominators, and any
other metric is only read at the rollup's own grain, where each output row is one stored row.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import sqlglot
import yaml
from metricflow_semantics.model.semantic_manifest_lookup import SemanticManifestLookup

from semantic.cube_query import Plan, sql_string
from semantic.members import TENANT_ENTITY, TIME_DIMENSION
from semantic.metricflow_engine import (
    MetricFlowEngine,
    MetricFlowQueryRequest,
    ReaderSqlClient,
    load_semantic_manifest,
)
from semantic.publication import Build, Publication, Reader
from semantic.snapshots import Merged
from semantic.warehouse import Warehouse

DEFINITIONS = Path(__file__).with_name("rollups.yml")
SCHEMA = "rollups"
CATALOG = "_catalog"
DAY = f"{TIME_DIMENSION}__day"
ADDITIVE_AGGREGATIONS = {"sum", "count", "sum_boolean"}
# Where a temporary view lives, per engine: (database, schema) of the relation MetricFlow is given
# for it. On another engine a refresh reads the changed tables whole.
TEMPORARY = {"duckdb": ("temp", "main"), "postgres": (None, "pg_temp")}


@dataclass(frozen=True)
class Shape:
    """How a metric re-aggregates: `additive` (sum its column), `ratio` (sum numerator and
    denominator, then divide) or `exact` (only where one stored row makes one output row)."""

    kind: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Rollup:
    name: str
    dimensions: tuple[str, ...]
    shapes: dict[str, Shape]  # every metric it can answer
    # qualified in full, as the publication names it: queries run on cursors, which do not
    # inherit a connection's `use`
    table: str = ""

    @property
    def stored(self) -> list[str]:
        """The metric columns of the table: the metrics, and the parts of the ratios among them."""
        return sorted({column for shape in self.shapes.values() for column in shape.columns})


@dataclass(frozen=True)
class Match:
    rollup: str
    sql: str


def table_name(rollup: str) -> str:
    """How replies name a rollup (Cube's `usedPreAggregations` and `preAggregations`)."""
    return f"{SCHEMA}.{rollup}"


def shapes(lookup: SemanticManifestLookup, metrics: list[str]) -> dict[str, Shape]:
    """The shape of each metric, from its definition in the semantic manifest."""
    manifest = lookup.semantic_manifest
    measures = {m.name: m for model in manifest.semantic_models for m in model.measures}
    defined = {m.name: m for m in manifest.metrics}

    def additive(name: str) -> bool:
        metric = defined[name]
        if metric.type.value.lower() != "simple" or metric.filter is not None:
            return False
        measure_input = metric.type_params.measure
        measure = measures[measure_input.name]
        return (measure_input.filter is None and measure.non_additive_dimension is None
                and measure.agg.value.lower() in ADDITIVE_AGGREGATIONS)

    found = {}
    for name in metrics:
        if name not in defined:
            raise ValueError(f"{DEFINITIONS.name}: unknown metric {name!r}")
        metric = defined[name]
        if additive(name):
            found[name] = Shape("additive", (name,))
        elif (metric.type.value.lower() == "ratio" and metric.filter is None
              and metric.type_params.numerator.filter is None and metric.type_params.denominator.filter is None
              and additive(metric.type_params.numerator.name) and additive(metric.type_params.denominator.name)):
            found[name] = Shape("ratio", (metric.type_params.numerator.name, metric.type_params.denominator.name))
        else:
            found[name] = Shape("exact", (name,))
    return found


def declared(lookup: SemanticManifestLookup, path: Path = DEFINITIONS) -> list[Rollup]:
    """The rollups `rollups.yml` declares, checked against the governed definitions."""
    entries = yaml.safe_load(path.read_text()).get("rollups") or []
    rollups = []
    for i, entry in enumerate(entries):
        for key in ("name", "metrics", "dimensions"):
            if key not in entry:
                raise ValueError(f"{path.name}: rollups[{i}] has no {key!r}")
        if TENANT_ENTITY not in entry["dimensions"]:
            raise ValueError(f"{path.name}: rollups[{i}] ({entry['name']}) must keep {TENANT_ENTITY!r}: "
                             "a tenant's token reads only its rows")
        rollups.append(Rollup(entry["name"], tuple(entry["dimensions"]), shapes(lookup, entry["metrics"])))
    return rollups


def build(warehouse: Warehouse, reader: Reader, publication: Publication, semantic_manifest: Path,
          path: Path = DEFINITIONS, changed: frozenset[str] | None = None,
          merged: Mapping[str, Merged] | None = None) -> int:
    """Create every declared rollup in the version being published (`warehouse` is its connection,
    `reader` reads it, and `lookup` names its tables).

    With `changed` (the tables a version took from the warehouse; None for all), a rollup the
    version already holds is kept when MetricFlow's SQL for it is the same and reads none of
    them: a micro-batch rebuilds only the rollups over the tables it changed. Where every changed
    table it reads had only rows merged past its cursor (`merged`), only the days from the
    earliest of those rows on are recomputed (`_refresh`), so a micro-batch's cost follows the days
    it touched, not the warehouse's history.
    Days are UTC days, whatever the machine's zone: queries in other zones are not served from here.
    """
    lookup = load_semantic_manifest(semantic_manifest, publication.relation)
    engine = MetricFlowEngine(semantic_manifest_lookup=lookup, sql_client=ReaderSqlClient(reader))
    catalog = publication.qualified(SCHEMA, CATALOG)
    warehouse.execute(f"create schema if not exists {publication.qualified_schema(SCHEMA)}")
    kept = _built(warehouse, catalog) if changed is not None else {}
    warehouse.execute(f"drop table if exists {catalog}")
    warehouse.execute(f"create table {catalog} (name varchar, definition json, rows bigint, built_at timestamptz, "
                      "sql_digest varchar, reads varchar[])")
    built = declared(lookup, path)
    for rollup in built:
        table = publication.qualified(SCHEMA, rollup.name)
        request = MetricFlowQueryRequest.create(metric_names=rollup.stored, group_by_names=[DAY, *rollup.dimensions])
        sql = engine.explain(request).sql_statement.sql
        digest = hashlib.sha256(sql.encode()).hexdigest()
        reads = sorted(publication.warehouse_table(*read.split(".")) for read in tables_read(sql, reader.engine))
        definition = json.dumps({"dimensions": rollup.dimensions,
                                 "shapes": {m: [s.kind, list(s.columns)] for m, s in rollup.shapes.items()}})
        old = kept.pop(rollup.name, None)
        columns = ", ".join([f'cast("{DAY}" as date) as "{DAY}"', *(f'"{c}"' for c in rollup.dimensions),
                             *(f'"{c}"' for c in rollup.stored)])
        if old is not None and old[0] == definition and old[3] == digest:
            if not changed & set(reads):
                warehouse.execute(f"insert into {catalog} values (?, ?, ?, ?, ?, ?)", [rollup.name, *old[:4], reads])
                continue
            first = _first_changed_day(warehouse, publication, lookup, changed & set(reads), merged or {})
            if first is not _UNKNOWN:
                if first is not None:  # no new rows: nothing to recompute
                    recent = _recent_rows(lookup, publication, rollup, changed & set(reads) & set(merged or {}),
                                          reader.engine)
                    _refresh(engine, semantic_manifest, warehouse, reader, publication, table, rollup, columns,
                             first, recent)
                rows = warehouse.rows(f"select count(*) from {table}")[0][0]
                warehouse.execute(f"insert into {catalog} values (?, ?, ?, ?, ?, ?)",
                                  [rollup.name, definition, rows, datetime.now(UTC), digest, reads])
                continue
        warehouse.execute(f"drop table if exists {table}")
        # MetricFlow's SQL is the engine's already, and the rest is the same in every dialect
        reader.run(f"create table {table} as select {columns} from ({sql}) as built", fetch=False)
        rows = warehouse.rows(f"select count(*) from {table}")[0][0]
        warehouse.execute(f"insert into {catalog} values (?, ?, ?, ?, ?, ?)",
                          [rollup.name, definition, rows, datetime.now(UTC), digest, reads])
    for name in kept:  # no longer declared
        warehouse.execute(f"drop table if exists {publication.qualified(SCHEMA, name)}")
    return len(built)


_UNKNOWN = object()


def _first_changed_day(warehouse: Warehouse, publication: Publication, lookup: SemanticManifestLookup,
                       tables: set[str], merged: Mapping[str, Merged]):
    """The earliest UTC day of the rows merged into `tables` ("schema.table" of the warehouse), by
    the time dimensions their semantic model aggregates on; None when there were no such rows;
    `_UNKNOWN` when a table was not merged by cursor or has no semantic model to tell its days.

    A merged row replaces the row of the same key, which the cursor models keep on the same day
    (a re-sent event keeps its time; a minute row keeps its minute): the new rows' days are all the
    days that changed."""
    first = None
    for table in tables:
        if table not in merged:
            return _UNKNOWN
        expressions = _time_expressions(lookup, publication, table)
        if not expressions:
            return _UNKNOWN
        schema, name = table.split(".")
        days = ", ".join(f"min(cast({expression} as date))" for expression in expressions)
        day = warehouse.rows(f'select least({days}) from {publication.qualified(schema, name)} '
                             f'where "{merged[table].column}" > ?', [merged[table].after])[0][0]
        if day is not None and (first is None or day < first):
            first = day
    return first


def _time_expressions(lookup: SemanticManifestLookup, publication: Publication, table: str) -> list[str]:
    """The SQL of every time dimension a measure of `table`'s semantic model aggregates on."""
    found = []
    for model in lookup.semantic_manifest.semantic_models:
        relation = model.node_relation
        if publication.warehouse_table(relation.schema_name, relation.alias) != table:
            continue
        default = model.defaults.agg_time_dimension if model.defaults else None
        names = {measure.agg_time_dimension or default for measure in model.measures} - {None}
        dimensions = {dimension.name: dimension for dimension in model.dimensions}
        found += [dimensions[name].expr or name for name in sorted(names) if name in dimensions]
    return found


def _recent_rows(lookup: SemanticManifestLookup, publication: Publication, rollup: Rollup, tables: set[str],
                 engine: str) -> dict[str, str]:
    """Of the changed `tables` ("schema.table") a rollup reads, those a refresh may read from its
    first changed day on, each with the column its rows' days come from. A table qualifies when
    - every metric the rollup stores counts each row on that row's own day: simple and ratio
      metrics, derived ones without an offset (a cumulative or conversion metric, or an offset,
      looks back: the tables are read whole);
    - the measures it is read for aggregate on time dimensions of one column (`event_at at time
      zone 'UTC'`: `event_at`);
    - it is not where another model's measures find a dimension or entity the rollup groups by
      (the users' country for orders): there every row counts, whatever its day."""
    if engine not in TEMPORARY or not tables:
        return {}
    manifest = lookup.semantic_manifest
    metrics = {metric.name: metric for metric in manifest.metrics}
    owner = {measure.name: model.name for model in manifest.semantic_models for measure in model.measures}
    read, pending = set(), list(rollup.stored)
    while pending:
        metric = metrics[pending.pop()]
        kind, params = metric.type.value.lower(), metric.type_params
        if kind == "simple" and params.measure is not None:
            read.add(owner[params.measure.name])
        elif kind == "ratio":
            pending += [params.numerator.name, params.denominator.name]
        elif kind == "derived" and not any(i.offset_window or i.offset_to_grain for i in params.metrics or ()):
            pending += [i.name for i in params.metrics or ()]
        else:
            return {}
    grouped = {name.split("__")[-1] for name in rollup.dimensions}
    found = {}
    for model in manifest.semantic_models:
        table = publication.warehouse_table(model.node_relation.schema_name, model.node_relation.alias)
        if table not in tables or model.name not in read:
            continue
        joined = {d.name for d in model.dimensions} | {e.name for e in model.entities}
        if read != {model.name} and grouped & joined - {TENANT_ENTITY}:
            continue
        columns = {column.name for expression in _time_expressions(lookup, publication, table)
                   for column in sqlglot.parse_one(expression, dialect=engine).find_all(sqlglot.exp.Column)}
        if len(columns) == 1:
            found[table] = columns.pop()
    return found


def _refresh(engine: MetricFlowEngine, semantic_manifest: Path, warehouse: Warehouse, reader: Reader,
             publication: Publication, table: str, rollup: Rollup, columns: str, first: date,
             recent: Mapping[str, str]) -> None:
    """Recompute a rollup's days from `first` on: MetricFlow's own query for those days (cumulative
    metrics look back as far as their window needs) replaces the stored rows.

    MetricFlow constrains the days on its time dimensions' expressions (`event_at at time zone
    'UTC'` truncated to the minute), which no engine can match against a table's file or row-group
    statistics: it would read every row the warehouse ever kept to recompute one day (3.5 s of a
    micro-batch at 10x the default sample, against 0.9 s at 1x). So each changed table in `recent`
    (table -> its time column, see `_recent_rows`) is read through a view of its rows from the day
    before `first` on, filtered on the column itself, which the scan prunes on; MetricFlow compiles
    the same query over those views."""
    views = {}
    if recent:
        since = first - timedelta(days=1)  # any time dimension's expression moves a row by less than a day
        for changed_table, column in recent.items():
            view = "recent__" + changed_table.replace(".", "__")
            warehouse.execute(f'create or replace temp view "{view}" as select * from '
                              f'{publication.qualified(*changed_table.split("."))} '
                              f'where "{column}" >= cast(\'{since.isoformat()}\' as date)')
            views[changed_table] = (*TEMPORARY[reader.engine], view)
        lookup = load_semantic_manifest(semantic_manifest, lambda schema, alias: views.get(
            publication.warehouse_table(*publication.relation(schema, alias)[1:]), publication.relation(schema, alias)))
        engine = MetricFlowEngine(semantic_manifest_lookup=lookup, sql_client=ReaderSqlClient(reader))
    try:
        request = MetricFlowQueryRequest.create(
            metric_names=rollup.stored, group_by_names=[DAY, *rollup.dimensions],
            time_constraint_start=datetime.combine(first, datetime.min.time()))
        sql = engine.explain(request).sql_statement.sql
        warehouse.execute(f'delete from {table} where "{DAY}" >= ?', [first])
        reader.run(f"insert into {table} select {columns} from ({sql}) as built", fetch=False)
    finally:
        for view in views.values():
            warehouse.execute("drop view if exists " + ".".join(f'"{part}"' for part in view if part is not None))


def tables_read(sql: str, dialect: str = "duckdb") -> list[str]:
    """The "schema.table" names a query reads (its CTEs are not tables)."""
    parsed = sqlglot.parse_one(sql, dialect=dialect)
    return sorted({f"{t.db}.{t.name}" for t in parsed.find_all(sqlglot.exp.Table) if t.db})


def _built(warehouse: Warehouse, catalog: str) -> dict[str, tuple]:
    """The rollups a version already holds: name -> (definition, rows, built_at, sql_digest)."""
    try:
        rows = warehouse.rows(f"select name, definition, rows, built_at, sql_digest from {catalog}")
    except Exception:  # none yet (the driver's "no such table"): build them all
        return {}
    # PostgreSQL's driver hands a json column back parsed: the definition is compared as text
    return {name: (definition if isinstance(definition, str) else json.dumps(definition), *rest)
            for name, definition, *rest in rows}


def builder(semantic_manifest: Path) -> Build:
    """What a publication calls to add the rollups to a new version."""
    def build_rollups(warehouse: Warehouse, reader: Reader, publication: Publication,
                      changed: frozenset[str] | None = None, merged: Mapping[str, Merged] | None = None) -> int:
        return build(warehouse, reader, publication, semantic_manifest, changed=changed, merged=merged)
    return build_rollups


def load(reader: Reader, publication: Publication) -> tuple[Rollup, ...]:
    """The rollups a published version holds (none for one published without them)."""
    schema = publication.relation(SCHEMA, CATALOG)[1]
    _, found = reader.run("select count(*) from information_schema.tables "
                          f"where table_schema = '{schema}' and table_name = '{CATALOG}'")
    if not found[0][0]:
        return ()
    _, rows = reader.run(f"select name, definition from {publication.qualified(SCHEMA, CATALOG)} order by name")
    rollups = []
    for name, definition in rows:
        parsed = json.loads(definition) if isinstance(definition, str) else definition
        rollups.append(Rollup(name, tuple(parsed["dimensions"]),
                              {m: Shape(kind, tuple(columns)) for m, (kind, columns) in parsed["shapes"].items()},
                              publication.qualified(SCHEMA, name)))
    return tuple(rollups)


def match(plan: Plan, rollups: tuple[Rollup, ...]) -> Match | None:
    """The first rollup that answers the plan exactly as MetricFlow would, with its SQL; else None."""
    if (plan.timezone != "UTC" or plan.simple_filters is None or plan.having or plan.as_of_last_day
            or plan.row_key is not None or any(r is not None and not r.whole_days for r in plan.date_ranges)):
        return None
    times = [g for g in plan.group_by if g.startswith(f"{TIME_DIMENSION}__")]
    dimensions = [g for g in plan.group_by if not g.startswith(f"{TIME_DIMENSION}__")]
    pinned = {TENANT_ENTITY} if plan.tenant is not None else set()
    pinned |= {f.group_by for f in plan.simple_filters if not f.negated and len(f.values) == 1}
    for rollup in rollups:
        if not (set(plan.metrics) <= set(rollup.shapes) and set(dimensions) <= set(rollup.dimensions)
                and {f.group_by for f in plan.simple_filters} <= set(rollup.dimensions) and len(times) <= 1):
            continue
        exact = any(rollup.shapes[m].kind == "exact" for m in plan.metrics)
        if exact and (times != [DAY] or not set(rollup.dimensions) <= set(dimensions) | pinned):
            continue
        return Match(rollup.name, _sql(plan, rollup, times, dimensions))
    return None


def _sql(plan: Plan, rollup: Rollup, times: list[str], dimensions: list[str]) -> str:
    selects = [f"""date_trunc('{t.removeprefix(f"{TIME_DIMENSION}__")}', "{DAY}") as "{t}\"""" for t in times]
    selects += [f'"{d}"' for d in dimensions]
    for metric in dict.fromkeys(plan.metrics):
        shape = rollup.shapes[metric]
        if shape.kind == "additive":
            selects.append(f'sum("{metric}") as "{metric}"')
        elif shape.kind == "ratio":
            numerator, denominator = shape.columns
            selects.append(f'cast(sum("{numerator}") as double) / cast(nullif(sum("{denominator}"), 0) as double) '
                           f'as "{metric}"')
        else:
            selects.append(f'max("{metric}") as "{metric}"')  # one stored row per output row
    # a row counts where any of the requested metrics has a value, as in MetricFlow's outer joins
    stored = ", ".join(f'"{c}"' for c in sorted({c for m in plan.metrics for c in rollup.shapes[m].columns}))
    conditions = [f"coalesce({stored}) is not null"]
    if plan.tenant is not None:
        conditions.append(f'"{TENANT_ENTITY}" = {sql_string(plan.tenant)}')
    for resolved in plan.date_ranges:
        if resolved is not None:
            conditions.append(f"\"{DAY}\" between '{resolved.first.isoformat()}' and '{resolved.last.isoformat()}'")
    for f in plan.simple_filters:
        listed = ", ".join(sql_string(v) for v in f.values)
        conditions.append(f'"{f.group_by}" {"not in" if f.negated else "in"} ({listed})')
    group = f"\ngroup by {', '.join(str(i + 1) for i in range(len(times) + len(dimensions)))}" \
        if times or dimensions else ""
    return f"select {', '.join(selects)}\nfrom {rollup.table}\nwhere {' and '.join(conditions)}{group}"
