"""SQL over the governed metrics: queries on the served tables planned as Cube queries, the way Cube's
SQL API evaluates them, and finished in DuckDB.

    SELECT date_trunc('month', metric_time) AS month, user__country, SUM(revenue), MEASURE(orders)
    FROM metrics
    WHERE metric_time >= now() - interval '90 days' AND user__country IN ('US', 'DE')
    GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 12

A served table (`sql_tables.py`) has dimension columns and measure columns. A SELECT over it is one
Cube query: its grain is its GROUP BY (columns, or `date_trunc` of the time column, which picks the
time column's granularity), or, without GROUP BY, the dimensions it selects; each measure is
evaluated by MetricFlow at that grain with its own aggregation. Aggregate functions over a measure
(`SUM(revenue)`, `MEASURE(revenue)`, `AVG(average_order_value)`) are accepted as Cube accepts them
(the function must match the measure's type; any fits a calculated one) and all mean the measure
itself: a ratio is never summed. `COUNT(*)` is the table's count measure. Conditions on dimensions
become the query's filters; a condition on a time column at a granularity means whole periods
(`metric_time__month = '2026-10-01'` is all of October, `metric_time__month >= '2026-10-15'` starts
in November); conditions on measures filter the result, like HAVING.

A SELECT over a subquery (Superset's virtual datasets, Metabase's nested questions) that aggregates
measures of the subquery by its dimensions is the same Cube query at the outer grain, with the
subquery's filters: re-aggregating a measure always means evaluating it again, never summing the
inner rows. Anything else over a subquery (`COUNT(*)` of its rows, plain projections, expressions)
runs in DuckDB over the subquery's rows, where summing a measure is refused unless the measure is
additive.

So nothing but the governed metrics can be read: each Cube query goes through the same translator,
tenancy and MetricFlow as the REST API; DuckDB only ever sees their results.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlglot import exp

from semantic import pg_types
from semantic.pg_sql import SqlError, name_outputs
from semantic.sql_tables import Column, Table

MAX_CONDITIONS = 200  # leaf conditions in one WHERE; an IN list counts once
MAX_IN_VALUES = 10_000
ADDITIVE = ("sum", "count")
# Cube: the aggregate functions each measure type accepts (MEASURE fits any; `number` takes any function)
_AGGREGATES = {"sum": {"sum"}, "count": {"count", "sum"}, "countDistinct": {"count_distinct"},
               "countDistinctApprox": {"count_distinct"}, "avg": {"avg"}, "min": {"min"}, "max": {"max"},
               "number": {"sum", "avg", "min", "max", "count", "count_distinct"}}
_PERIODS = ("day", "week", "month", "quarter", "year")
_SUB_DAY = {"hour": timedelta(hours=1), "minute": timedelta(minutes=1), "second": timedelta(seconds=1)}
_TRUNC_UNITS = {"day": "day", "days": "day", "week": "week", "weeks": "week", "month": "month", "months": "month",
                "quarter": "quarter", "quarters": "quarter", "year": "year", "years": "year", "hour": "hour",
                "minute": "minute", "second": "second"}
_FIRST_MOMENT, _LAST_MOMENT = "0001-01-01T00:00:00", "9999-12-31T23:59:59"
_GRAIN_ORDER = ("second", "minute", "hour", "day", "week", "month", "quarter", "year")


class NotMergeable(Exception):
    """The block cannot be one Cube query with its source: it runs over the source's rows instead."""


@dataclass(frozen=True)
class SourceColumn:
    column: Column  # the served table's column
    grain: str | None  # time columns: the granularity of the values


@dataclass
class Source:
    """What a SELECT reads: a served table, or a subquery that is one Cube query on it."""

    table: Table
    columns: dict[str, SourceColumn]
    filters: list[dict]
    virtual: bool  # the served table itself (no rows of its own); else a subquery's result


@dataclass
class SemanticQuery:
    """One Cube query to run; its result is the DuckDB relation `name` with `columns`."""

    name: str
    table: Table
    query: dict
    columns: list[tuple[str, str, pg_types.PgType]]  # (relation column, Cube result key, type)
    limit: int | None  # the row limit pushed into the query (None: every row)


@dataclass
class Planned:
    """A statement planned: the Cube queries to run, and the DuckDB query over their results."""

    queries: list[SemanticQuery]
    tree: exp.Expression  # PostgreSQL-dialect tree whose served tables are replaced by the query relations
    limit_zero: bool = False


@dataclass
class _Block:
    """A planned SELECT over a Source: its Cube query and the SELECT over that query's result."""

    select: exp.Select
    query: SemanticQuery
    outputs: dict[str, SourceColumn] | None  # set when the block is itself one Cube query (mergeable)
    filters: list[dict] = field(default_factory=list)
    measure_outputs: dict[str, Column] = field(default_factory=dict)  # output columns that are measures


def _unknown_column(name: str, table: Table | None, known: list[str]) -> SqlError:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    where = f' of relation "{table.name}"' if table else ""
    hint = f'; did you mean {" or ".join(repr(c) for c in close)}?' if close else ""
    return SqlError(f'column "{name}"{where} does not exist{hint}', "42703")


def _time_value(value, where: str) -> datetime:
    if isinstance(value, datetime):  # in the session's time zone, as the query's days are
        return value.replace(tzinfo=None)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.strip().replace("Z", "+00:00")).replace(tzinfo=None)
        except ValueError:
            pass
    raise SqlError(f"{where}: invalid input syntax for type timestamp: {str(value)!r}", "22007")


def _trunc(moment: datetime, grain: str) -> datetime:
    if grain in _SUB_DAY:
        fields = {"hour": dict(minute=0, second=0, microsecond=0), "minute": dict(second=0, microsecond=0),
                  "second": dict(microsecond=0)}[grain]
        return moment.replace(**fields)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if grain == "day":
        return day
    if grain == "week":
        return day - timedelta(days=day.weekday())
    if grain == "month":
        return day.replace(day=1)
    if grain == "quarter":
        return day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
    return day.replace(month=1, day=1)


def _next(start: datetime, grain: str) -> datetime:
    if grain in _SUB_DAY:
        return start + _SUB_DAY[grain]
    if grain == "day":
        return start + timedelta(days=1)
    if grain == "week":
        return start + timedelta(days=7)
    months = {"month": 1, "quarter": 3, "year": 12}[grain]
    total = start.month - 1 + months
    return start.replace(year=start.year + total // 12, month=total % 12 + 1)


class Planner:
    """Plans one statement against the served tables; `constant` evaluates a constant expression
    (DuckDB, in the session: `now() - interval '7 days'`, `TO_TIMESTAMP(...)`)."""

    def __init__(self, tables: dict[str, Table], constant, database: str):
        self.tables, self.constant, self.database = tables, constant, database
        self.queries: list[SemanticQuery] = []

    # -- entry -----------------------------------------------------------------------------------
    def plan(self, tree: exp.Expression) -> Planned:
        tree = tree.copy()
        _inline_ctes(tree)
        planned = self._rewrite(tree)
        limit_zero = _limit_zero(planned)
        return Planned(self.queries, planned, limit_zero)

    def references_served(self, tree: exp.Expression) -> bool:
        return any(self._served(t) is not None for t in tree.find_all(exp.Table))

    def _served(self, node: exp.Table) -> Table | None:
        if not isinstance(node.this, exp.Identifier):
            return None
        schema, database = (node.db or "").lower(), (node.catalog or "").lower()
        if schema not in ("", "public") or (database and database != self.database.lower()):
            return None
        return self.tables.get(node.name)

    def _rewrite(self, node: exp.Expression) -> exp.Expression:
        """Every SELECT that reads a served table, innermost first, replaced by SQL over query results."""
        if isinstance(node, exp.Select):
            return self._select(node).select
        for key, value in list(node.args.items()):
            if isinstance(value, exp.Expression) and self._touches(value):
                node.set(key, self._rewrite(value))
            elif isinstance(value, list):
                node.set(key, [self._rewrite(v) if isinstance(v, exp.Expression) and self._touches(v) else v
                               for v in value])
        return node

    def _touches(self, node: exp.Expression) -> bool:
        return any(self._served(t) is not None for t in node.find_all(exp.Table))

    # -- one SELECT ----------------------------------------------------------------------------
    def _select(self, select: exp.Select) -> _Block | _Rows:
        if not self._touches(select):
            return _Rows(select)
        from_ = select.args.get("from_")
        if select.args.get("joins"):
            raise SqlError("JOIN is not supported on the governed tables: each table already holds the measures "
                           "and dimensions that can be combined; query one table at a time", "0A000")
        for part in ("where", "having"):
            clause = select.args.get(part)
            if clause is not None and any(self._touches(s) for s in clause.find_all(exp.Subquery)):
                raise SqlError(f"subqueries in {part.upper()} are not supported on the governed tables", "0A000")
        source_node = from_.this if from_ is not None else None
        if isinstance(source_node, exp.Table):
            table = self._served(source_node)
            if table is None:
                raise SqlError("a query cannot mix governed tables with other relations", "0A000")
            source = Source(table, {c.name: SourceColumn(c, c.granularity) for c in table.columns}, [], True)
            return self._block(select, source, {source_node.alias_or_name.lower(), table.name.lower()})
        if isinstance(source_node, exp.Subquery) and isinstance(source_node.this, exp.Select):
            inner = self._select(source_node.this)
            alias = source_node.alias_or_name.lower()
            if isinstance(inner, _Block) and inner.outputs is not None:
                source = Source(inner.query.table, inner.outputs, inner.filters, False)
                try:
                    block = self._block(select, source, {alias})
                except NotMergeable:
                    pass
                else:
                    self.queries.remove(inner.query)
                    return block
            source_node.set("this", inner.select)
            if isinstance(inner, _Block):
                _check_reaggregation(select, inner.measure_outputs)
            return _Rows(select)
        if isinstance(source_node, exp.Subquery):  # a set operation or the like inside
            source_node.set("this", self._rewrite(source_node.this))
            return _Rows(select)
        raise SqlError("unsupported FROM clause on the governed tables", "0A000")

    def _block(self, select: exp.Select, source: Source, qualifiers: set[str]) -> _Block:
        select = select.copy()
        name_outputs(select)
        table = source.table
        resolve = _Resolver(source, qualifiers, table)
        self._expand_star(select, source)
        aggregating = bool(select.args.get("group")) or any(
            _is_aggregate(node) for part in (select.expressions, [select.args.get("having")],
                                             [select.args.get("order")]) for p in part if p is not None
            for node in p.find_all(exp.AggFunc, exp.Anonymous))
        if not source.virtual and not aggregating:
            raise NotMergeable()
        where = select.args.get("where")
        filters, post_conditions = list(source.filters), []
        if where is not None:
            dims, measures = self._conditions(where.this, resolve)
            filters += dims
            post_conditions += measures
            if post_conditions and not source.virtual:
                raise NotMergeable()
        relation = f"_q{len(self.queries)}"
        columns: dict[tuple, str] = {}  # (kind, member/grain...) -> relation column
        query_columns: list[tuple[str, str, pg_types.PgType]] = []
        cube: dict = {"measures": [], "dimensions": [], "timeDimensions": []}

        def semantic(kind: str, column: Column, grain: str | None = None) -> str:
            key = (kind, column.member, grain)
            if key not in columns:
                columns[key] = f"c{len(columns)}"
                if kind == "measure":
                    cube["measures"].append(column.member)
                    result_key = column.member
                    pg_type = column.pg_type
                elif kind == "time":
                    cube["timeDimensions"].append({"dimension": column.member, "granularity": grain})
                    result_key = f"{column.member}.{grain}"
                    pg_type = pg_types.TIMESTAMP if grain in _SUB_DAY else pg_types.DATE
                else:
                    cube["dimensions"].append(column.member)
                    result_key = column.member
                    pg_type = column.pg_type
                query_columns.append((columns[key], result_key, pg_type))
            return columns[key]

        group_keys: list[exp.Expression] = []
        if aggregating:
            group = select.args.get("group")
            for key in (group.expressions if group else []):
                group_keys.append(self._group_key(key, select, resolve, semantic))
        outputs: dict[str, SourceColumn] = {}
        measure_outputs: dict[str, Column] = {}
        pure = not post_conditions and not select.args.get("distinct") and not any(
            select.args.get(k) for k in ("order", "limit", "offset", "having"))

        def replace(node: exp.Expression) -> exp.Expression:
            if _is_aggregate(node):
                return exp.column(self._aggregate(node, resolve, semantic, source))
            if isinstance(node, exp.Column) and not isinstance(node.this, exp.Star):
                found = resolve.column(node)
                if found is None:
                    return node
                if found.column.kind == "measure":
                    return exp.column(semantic("measure", found.column))
                if aggregating and not any(isinstance(k, exp.Column) and k.name == node.name for k in group_keys):
                    raise SqlError(f'column "{node.name}" must appear in the GROUP BY clause or be used in an '
                                   "aggregate function", "42803")
                grain = found.grain
                return exp.column(semantic("time" if found.column.kind == "time" else "dimension", found.column,
                                           grain))
            trunc = None if isinstance(node, exp.Cast) else _date_trunc(node, resolve)
            if trunc is not None:
                unit, found = trunc
                return exp.Anonymous(this="date_trunc", expressions=[
                    exp.Literal.string(unit), exp.column(semantic("time", found.column, _coarser(found, unit)))])
            return node

        for i, projection in enumerate(select.expressions):
            inner = projection.this if isinstance(projection, exp.Alias) else projection
            found = resolve.column(inner) if isinstance(inner, exp.Column) else None
            if found is None and _is_aggregate(inner) and _measure_argument(inner, resolve) is not None:
                found = SourceColumn(_measure_argument(inner, resolve), None)
            if found is None and _date_trunc(inner, resolve) is not None:
                unit, time_column = _date_trunc(inner, resolve)
                found = SourceColumn(time_column.column, _coarser(time_column, unit))
                pure = pure and isinstance(inner, exp.Anonymous | exp.TimestampTrunc | exp.DateTrunc)
            elif found is None:
                pure = False
            if found is not None:
                outputs[projection.alias_or_name] = found
            measure = _measure_argument(inner, resolve) if _is_aggregate(inner) else (
                found.column if found is not None and found.column.kind == "measure" else None)
            if measure is not None:
                measure_outputs[projection.alias_or_name] = measure
            select.expressions[i] = _transform(projection, replace)
        labels = {p.alias_or_name for p in select.expressions}

        def replace_in_order(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.Column) and not node.table and node.name in labels \
                    and node.name not in source.columns:
                return node  # an output column's name (ORDER BY "SUM(revenue)")
            return replace(node)

        for part, fn in (("order", replace_in_order), ("having", replace)):
            node = select.args.get(part)
            if node is not None:
                select.set(part, _transform(node, fn))
        if not cube["measures"]:
            self._measure_for_dimensions(table, semantic)
        cube["filters"] = filters
        if not cube["timeDimensions"]:
            del cube["timeDimensions"]
        limit = self._push_limit(select, cube, post_conditions, columns)
        query = SemanticQuery(relation, table, cube, query_columns, limit)
        self.queries.append(query)
        conditions = [_transform(c, replace) for c in post_conditions]
        having = select.args.get("having")
        if having is not None:
            conditions.append(having.this)
        select.set("having", None)
        select.set("group", None)
        select.set("where", exp.Where(this=exp.and_(*conditions)) if conditions else None)
        select.set("from_", exp.From(this=exp.Table(this=exp.to_identifier(relation))))
        return _Block(select, query, outputs if pure else None, filters, measure_outputs)

    def _expand_star(self, select: exp.Select, source: Source) -> None:
        expanded = []
        for projection in select.expressions:
            star = isinstance(projection, exp.Star) or (isinstance(projection, exp.Column)
                                                        and isinstance(projection.this, exp.Star))
            if not star:
                expanded.append(projection)
                continue
            if source.virtual and not source.table.combinable:
                raise SqlError(f"SELECT * is not supported on {source.table.name}: its metrics come from different "
                               "facts; name the metrics and dimensions you want", "0A000")
            expanded += [exp.alias_(exp.column(name), name, quoted=True) for name in source.columns]
        select.set("expressions", expanded)

    def _measure_for_dimensions(self, table: Table, semantic) -> None:
        """A Cube query needs a measure: dimensions alone are read through the table's count measure
        (the combinations that have facts)."""
        if not table.combinable:
            raise SqlError(f"select at least one metric (a measure) from {table.name}, e.g. "
                           f"SELECT {table.measures[0].name} FROM {table.name}", "0A000")
        measure = table.column(table.count_measure) if table.count_measure else table.measures[0]
        semantic("measure", measure)

    def _push_limit(self, select: exp.Select, cube: dict, post_conditions: list, columns: dict) -> int | None:
        """LIMIT + OFFSET rows, in the ORDER BY's order, are asked of the Cube query when its rows are the
        result's (DuckDB then applies ORDER BY, LIMIT and OFFSET to them as written)."""
        limit, offset = select.args.get("limit"), select.args.get("offset")
        if limit is None or post_conditions or select.args.get("having") or select.args.get("distinct"):
            return None
        value = limit.expression if isinstance(limit, exp.Limit) else limit
        if not isinstance(value, exp.Literal) or value.is_string:
            return None
        count = int(value.this)
        skip = 0
        if offset is not None:
            skip_node = offset.expression if isinstance(offset, exp.Offset) else offset
            if not isinstance(skip_node, exp.Literal) or skip_node.is_string:
                return None
            skip = int(skip_node.this)
        order = select.args.get("order")
        by_relation = {name: key for key, name in columns.items()}
        cube_order = []
        if order is not None:
            outputs = {p.alias_or_name: p for p in select.expressions}
            for ordered in order.expressions:
                target = ordered.this
                if isinstance(target, exp.Literal) and not target.is_string:
                    index = int(target.this) - 1
                    target = select.expressions[index] if 0 <= index < len(select.expressions) else None
                elif isinstance(target, exp.Column) and target.name in outputs and target.name not in by_relation:
                    target = outputs[target.name]
                if isinstance(target, exp.Alias):
                    target = target.this
                if not isinstance(target, exp.Column) or target.name not in by_relation:
                    return None
                kind, member, grain = by_relation[target.name]
                cube_order.append([member, "desc" if ordered.args.get("desc") else "asc"])
        if cube_order:
            cube["order"] = cube_order
        if count + skip == 0:
            return 0
        cube["limit"] = count + skip
        return count + skip

    # -- parts -------------------------------------------------------------------------------
    def _group_key(self, key: exp.Expression, select: exp.Select, resolve, semantic) -> exp.Expression:
        original = key
        if isinstance(key, exp.Literal) and not key.is_string:
            index = int(key.this) - 1
            if not 0 <= index < len(select.expressions):
                raise SqlError(f"GROUP BY position {index + 1} is not in select list", "42P10")
            key = select.expressions[index]
        elif isinstance(key, exp.Column) and not key.table and resolve.column(key) is None:
            aliased = next((p for p in select.expressions if p.alias_or_name == key.name), None)
            if aliased is not None:
                key = aliased
        if isinstance(key, exp.Alias):
            key = key.this
        found = resolve.column(key) if isinstance(key, exp.Column) else None
        if found is not None and found.column.kind != "measure":
            semantic("time" if found.column.kind == "time" else "dimension", found.column, found.grain)
            return key
        trunc = _date_trunc(key, resolve)
        if trunc is not None:
            unit, time_column = trunc
            semantic("time", time_column.column, _coarser(time_column, unit))
            return key
        raise SqlError(f"GROUP BY {original.sql('postgres')}: group by the table's dimension columns, or by "
                       "date_trunc() of its time columns", "42803")

    def _aggregate(self, node: exp.Expression, resolve, semantic, source: Source) -> str:
        function = _aggregate_name(node)
        argument = node.this if not isinstance(node, exp.Anonymous) else (node.expressions[0]
                                                                          if node.expressions else None)
        distinct = isinstance(argument, exp.Distinct)
        if distinct:
            argument = argument.expressions[0] if argument.expressions else None
        if function == "count" and (argument is None or isinstance(argument, exp.Star)):
            if not source.virtual:
                raise NotMergeable()
            table = source.table
            if table.count_measure is None:
                raise SqlError(f"COUNT(*): {table.name} has no count measure; aggregate one of its measures, e.g. "
                               f"MEASURE({table.measures[0].name})", "0A000")
            return semantic("measure", table.column(table.count_measure))
        found = resolve.column(argument) if isinstance(argument, exp.Column) else None
        if found is None or found.column.kind != "measure":
            if not source.virtual:
                raise NotMergeable()
            shown = node.sql("postgres")
            raise SqlError(f"{shown}: aggregate the table's measures (their own aggregation applies), e.g. "
                           f"SUM({source.table.measures[0].name}); dimensions are grouped by", "0A000")
        column = found.column
        kind = "count_distinct" if function == "count" and distinct else function
        if kind != "measure" and column.aggregation is not None \
                and kind not in _AGGREGATES.get(column.aggregation, {kind}):
            raise SqlError(f"{node.sql('postgres')}: measure aggregation type doesn't match: {column.name} is a "
                           f"{column.aggregation} measure; use MEASURE({column.name})"
                           + "".join(f" or {f.upper()}({column.name})" for f in
                                     sorted(_AGGREGATES[column.aggregation]) if f != "count_distinct"), "42803")
        return semantic("measure", column)

    def _conditions(self, where: exp.Expression, resolve) -> tuple[list[dict], list[exp.Expression]]:
        """The WHERE clause as Cube filters (conditions on dimensions) and conditions on measures."""
        conjuncts = _flatten(where, exp.And)
        leaves = sum(len(_flatten(c, exp.Or)) for c in conjuncts)
        if leaves > MAX_CONDITIONS:
            raise SqlError(f"WHERE has {leaves:,} conditions, more than the {MAX_CONDITIONS} a query may have: "
                           "list values with IN (...) instead of OR-ing comparisons", "54001")
        filters, on_measures = [], []
        for conjunct in conjuncts:
            referenced = [resolve.column(c) for c in conjunct.find_all(exp.Column)]
            if any(r is not None and r.column.kind == "measure" for r in referenced):
                on_measures.append(conjunct)
                continue
            filters.append(_Filters(self, resolve).convert(conjunct))
        return filters, on_measures


def _check_reaggregation(select: exp.Select, measures: dict[str, Column]) -> None:
    """Over a subquery's rows, SUM/AVG of a measure re-aggregates correctly only if it is additive."""
    for agg in select.find_all(exp.Sum, exp.Avg):
        for column in agg.find_all(exp.Column):
            measure = measures.get(column.name)
            if measure is None or measure.aggregation in ADDITIVE:
                continue
            kind = f"a {measure.aggregation} measure" if measure.aggregation else "not known to be additive"
            raise SqlError(f"{agg.sql('postgres')}: {column.name} is {kind}, so summing the subquery's rows would "
                           "be wrong. Aggregate it by the columns you group by (it is then evaluated at that "
                           "grain), without COUNT(*), LIMIT or expressions in the same query", "0A000")


@dataclass
class _Rows:
    """A SELECT that runs in DuckDB over rows (no Cube query of its own)."""

    select: exp.Expression


class _Resolver:
    """Column references of a block, resolved against its source."""

    def __init__(self, source: Source, qualifiers: set[str], table: Table):
        self.source, self.qualifiers, self.table = source, qualifiers, table

    def column(self, node: exp.Expression) -> SourceColumn | None:
        if not isinstance(node, exp.Column) or isinstance(node.this, exp.Star):
            return None
        qualifier = (node.table or "").lower()
        if qualifier and qualifier not in self.qualifiers:
            raise SqlError(f'missing FROM-clause entry for table "{node.table}"', "42P01")
        found = self.source.columns.get(node.name)
        if found is None:
            raise _unknown_column(node.name, self.table, list(self.source.columns))
        return found


def _transform(node: exp.Expression, fn) -> exp.Expression:
    """`fn` applied top-down; a node it replaces is not descended into."""
    replaced = fn(node)
    if replaced is not node:
        return replaced
    for key, value in list(node.args.items()):
        if isinstance(value, exp.Expression):
            node.set(key, _transform(value, fn))
        elif isinstance(value, list):
            node.set(key, [_transform(v, fn) if isinstance(v, exp.Expression) else v for v in value])
    return node


def _is_aggregate(node: exp.Expression) -> bool:
    if isinstance(node, exp.AggFunc):
        return True
    return isinstance(node, exp.Anonymous) and str(node.this).lower() == "measure"


def _aggregate_name(node: exp.Expression) -> str:
    if isinstance(node, exp.Anonymous):
        return "measure"
    return {exp.Sum: "sum", exp.Count: "count", exp.Avg: "avg", exp.Min: "min", exp.Max: "max"}.get(
        type(node), node.sql_name().lower())


def _measure_argument(node: exp.Expression, resolve: _Resolver) -> Column | None:
    argument = node.expressions[0] if isinstance(node, exp.Anonymous) and node.expressions else node.this
    if isinstance(argument, exp.Column) and not isinstance(argument.this, exp.Star):
        found = resolve.column(argument)
        if found is not None and found.column.kind == "measure":
            return found.column
    return None


def _date_trunc(node: exp.Expression, resolve: _Resolver) -> tuple[str, SourceColumn] | None:
    """`date_trunc('month', <time column>)` (also cast to date) as (unit, the time column)."""
    if isinstance(node, exp.Cast) and node.to.this in (exp.DataType.Type.DATE, exp.DataType.Type.TIMESTAMP):
        inner = _date_trunc(node.this, resolve)
        return inner
    unit_node = column = None
    if isinstance(node, exp.TimestampTrunc | exp.DateTrunc):
        unit_node, column = node.args.get("unit"), node.this
    elif isinstance(node, exp.Anonymous) and str(node.this).lower() == "date_trunc" and len(node.expressions) == 2:
        unit_node, column = node.expressions
    if unit_node is None or not isinstance(column, exp.Column):
        return None
    found = resolve.column(column)
    if found is None or found.column.kind != "time":
        return None
    unit = unit_node.name.lower() if isinstance(unit_node, exp.Literal | exp.Var) else str(unit_node).lower()
    unit = _TRUNC_UNITS.get(unit.strip("'"))
    if unit is None:
        raise SqlError(f"date_trunc unit {unit_node.sql('postgres')} is not supported: use "
                       + ", ".join(_PERIODS), "22023")
    return unit, found


def _coarser(found: SourceColumn, unit: str) -> str:
    """The granularity of date_trunc(unit, column): the unit, unless the column is coarser already."""
    grain = found.grain or "day"
    if _GRAIN_ORDER.index(unit) < _GRAIN_ORDER.index(grain):
        return grain
    if grain == "week" and unit in ("month", "quarter", "year"):
        raise SqlError(f"date_trunc('{unit}', ...) of a week column mixes weeks across periods; truncate the day "
                       "column instead", "22023")
    return unit


def _flatten(node: exp.Expression, kind: type) -> list[exp.Expression]:
    """The operands of a chain of AND (or OR), iteratively: deep chains do not recurse."""
    out, stack = [], [node]
    while stack:
        current = stack.pop()
        while isinstance(current, exp.Paren):
            current = current.this
        if isinstance(current, kind):
            stack.append(current.expression)
            stack.append(current.this)
        else:
            out.append(current)
    return out


def _inline_ctes(tree: exp.Expression) -> None:
    """WITH queries as subqueries where they are read (the planner then sees through them)."""
    with_ = tree.args.get("with")
    if with_ is None or with_.recursive:
        return
    bodies = {cte.alias_or_name.lower(): cte.this for cte in with_.expressions}
    for table in list(tree.find_all(exp.Table)):
        body = bodies.get(table.name.lower()) if not table.db else None
        if body is not None:
            table.replace(exp.Subquery(this=body.copy(), alias=exp.TableAlias(
                this=exp.to_identifier(table.alias_or_name))))
    tree.set("with", None)


def _limit_zero(tree: exp.Expression) -> bool:
    limit = tree.args.get("limit") if isinstance(tree, exp.Select) else None
    value = limit.expression if isinstance(limit, exp.Limit) else limit
    return isinstance(value, exp.Literal) and not value.is_string and int(value.this) == 0


_TRUE = {"t", "true", "y", "yes", "on", "1"}
_FALSE = {"f", "false", "n", "no", "off", "0"}


class _Filters:
    """Conditions on dimension columns as Cube filters."""

    def __init__(self, planner: Planner, resolve: _Resolver):
        self.planner, self.resolve = planner, resolve

    def convert(self, node: exp.Expression) -> dict:
        while isinstance(node, exp.Paren):
            node = node.this
        if isinstance(node, exp.And | exp.Or):
            key = "and" if isinstance(node, exp.And) else "or"
            return {key: [self.convert(part) for part in _flatten(node, type(node))]}
        if isinstance(node, exp.Not):
            return self._negated(node.this)
        return self._leaf(node, negated=False)

    def _negated(self, node: exp.Expression) -> dict:
        while isinstance(node, exp.Paren):
            node = node.this
        if isinstance(node, exp.And | exp.Or):  # De Morgan
            key = "or" if isinstance(node, exp.And) else "and"
            return {key: [self._negated(part) for part in _flatten(node, type(node))]}
        if isinstance(node, exp.Not):
            return self.convert(node.this)
        return self._leaf(node, negated=True)

    def _column(self, node: exp.Expression, where: exp.Expression) -> SourceColumn:
        found = self.resolve.column(node) if isinstance(node, exp.Column) else None
        if found is None:
            raise SqlError(f"WHERE {where.sql('postgres')}: compare a column of the table with values", "0A000")
        return found

    def _value(self, node: exp.Expression, where: exp.Expression):
        if isinstance(node, exp.Column):
            raise SqlError(f"WHERE {where.sql('postgres')}: compare a column with a value, not with a column",
                           "0A000")
        if isinstance(node, exp.Null):
            return None
        if isinstance(node, exp.Literal):
            return node.this if node.is_string else _number(node.this)
        if isinstance(node, exp.Boolean):
            return node.this
        return self.planner.constant(node)

    def _typed(self, found: SourceColumn, value, where: exp.Expression):
        column = found.column
        if value is None:
            raise SqlError(f"WHERE {where.sql('postgres')}: a comparison with NULL is never true; use IS NULL",
                           "22004")
        if column.pg_type is pg_types.BOOL:
            text = str(value).strip().lower() if not isinstance(value, bool) else ("true" if value else "false")
            if text in _TRUE:
                return "true"
            if text in _FALSE:
                return "false"
            raise SqlError(f'WHERE {where.sql("postgres")}: invalid input syntax for type boolean: "{value}" '
                           f"({column.name} is true or false)", "22P02")
        if column.pg_type in (pg_types.NUMERIC, pg_types.INT8):
            try:
                return float(value) if not isinstance(value, int | float) else value
            except (TypeError, ValueError):
                raise SqlError(f'WHERE {where.sql("postgres")}: invalid input syntax for type numeric: "{value}"',
                               "22P02") from None
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, datetime | date):
            return value.isoformat()
        return value if isinstance(value, str) else str(value)

    def _leaf(self, node: exp.Expression, negated: bool) -> dict:
        if isinstance(node, exp.Column):  # a boolean column as the condition
            found = self._column(node, node)
            if found.column.pg_type is not pg_types.BOOL:
                raise SqlError(f"WHERE {node.name}: argument of WHERE must be type boolean", "42804")
            return self._member(found, "equals", ["false" if negated else "true"])
        if isinstance(node, exp.Is):
            found = self._column(node.this, node)
            if isinstance(node.expression, exp.Boolean):
                value = node.expression.this != negated
                return self._member(found, "equals", ["true" if value else "false"])
            return self._member(found, "set" if negated else "notSet", None)
        if isinstance(node, exp.In):
            found = self._column(node.this, node)
            if node.args.get("query") is not None:
                raise SqlError(f"WHERE {node.sql('postgres')}: IN (SELECT ...) is not supported; list values",
                               "0A000")
            values = [self._value(v, node) for v in node.expressions]
            if len(values) > MAX_IN_VALUES:
                raise SqlError(f"WHERE {found.column.name} IN (...): {len(values):,} values, more than "
                               f"{MAX_IN_VALUES:,}", "54001")
            if found.column.kind == "time":
                parts = [self._time(found, "eq", v, node) for v in values]
                return {"and": [self._time_negated(p) for p in parts]} if negated else {"or": parts}
            typed = [self._typed(found, v, node) for v in values if v is not None]
            return self._member(found, "notEquals" if negated else "equals", typed)
        if isinstance(node, exp.Like | exp.ILike):
            found = self._column(node.this, node)
            pattern = self._value(node.expression, node)
            return self._like(found, pattern, negated, node)
        if isinstance(node, exp.Between):
            low, high = node.args["low"], node.args["high"]
            inside = {"and": [self._leaf(exp.GTE(this=node.this, expression=low), False),
                              self._leaf(exp.LTE(this=node.this, expression=high), False)]}
            return self._negated_tree(inside) if negated else inside
        comparisons = {exp.EQ: "eq", exp.NEQ: "ne", exp.GT: "gt", exp.GTE: "gte", exp.LT: "lt", exp.LTE: "lte"}
        operator = comparisons.get(type(node))
        if operator is None:
            raise SqlError(f"WHERE {node.sql('postgres')}: not a condition the governed tables support (use =, <>, "
                           "<, >, IN, LIKE, BETWEEN, IS NULL on columns)", "0A000")
        left, right = node.this, node.expression
        if not isinstance(left, exp.Column) and isinstance(right, exp.Column):
            left, right = right, left
            operator = {"gt": "lt", "gte": "lte", "lt": "gt", "lte": "gte"}.get(operator, operator)
        found = self._column(left, node)
        if negated:
            operator = {"eq": "ne", "ne": "eq", "gt": "lte", "gte": "lt", "lt": "gte", "lte": "gt"}[operator]
        value = self._value(right, node)
        if found.column.kind == "time":
            return self._time(found, operator, value, node)
        typed = self._typed(found, value, node)
        cube = {"eq": "equals", "ne": "notEquals", "gt": "gt", "gte": "gte", "lt": "lt", "lte": "lte"}[operator]
        if cube in ("gt", "gte", "lt", "lte") and found.column.pg_type is pg_types.BOOL:
            raise SqlError(f"WHERE {node.sql('postgres')}: booleans are compared with = or <>", "42883")
        return self._member(found, cube, [typed])

    def _like(self, found: SourceColumn, pattern, negated: bool, node: exp.Expression) -> dict:
        if not isinstance(pattern, str):
            raise SqlError(f"WHERE {node.sql('postgres')}: LIKE needs a string pattern", "42883")
        body = pattern
        starts, ends = body.startswith("%"), body.endswith("%") and len(body) > 1
        body = body[1 if starts else 0:len(body) - 1 if ends else len(body)]
        if "%" in body or "_" in body.replace("\\_", ""):
            raise SqlError(f"WHERE {node.sql('postgres')}: LIKE patterns may have % at the start and/or end only",
                           "0A000")
        body = body.replace("\\_", "_").replace("\\%", "%")
        operator = "contains" if starts and ends else "endsWith" if starts else "startsWith" if ends else "equals"
        if negated:
            operator = {"contains": "notContains", "endsWith": "notEndsWith", "startsWith": "notStartsWith",
                        "equals": "notEquals"}[operator]
        return self._member(found, operator, [body])

    @staticmethod
    def _member(found: SourceColumn, operator: str, values: list | None) -> dict:
        out = {"member": found.column.member, "operator": operator}
        if values is not None:
            out["values"] = values
        return out

    def _negated_tree(self, tree: dict) -> dict:
        if "and" in tree:
            return {"or": [self._negated_tree(t) for t in tree["and"]]}
        if "or" in tree:
            return {"and": [self._negated_tree(t) for t in tree["or"]]}
        return self._time_negated(tree)

    @staticmethod
    def _time_negated(tree: dict) -> dict:
        if tree.get("operator") == "inDateRange":
            return {**tree, "operator": "notInDateRange"}
        flip = {"afterOrOnDate": "beforeDate", "beforeDate": "afterOrOnDate", "equals": "notEquals",
                "notEquals": "equals", "gt": "lte", "lte": "gt", "gte": "lt", "lt": "gte", "set": "notSet",
                "notSet": "set"}
        if "and" in tree:
            return {"or": [_Filters._time_negated(t) for t in tree["and"]]}
        if "or" in tree:
            return {"and": [_Filters._time_negated(t) for t in tree["or"]]}
        return {**tree, "operator": flip[tree["operator"]]}

    def _time(self, found: SourceColumn, operator: str, value, node: exp.Expression) -> dict:
        """A comparison of a time column at its granularity, as a range of whole periods of the day
        (or finer) time dimension: `month = '2026-10-01'` is every day of October."""
        grain = found.grain or "day"
        where = f"WHERE {node.sql('postgres')}"
        if value is None:
            raise SqlError(f"{where}: a comparison with NULL is never true; use IS NULL", "22004")
        moment = _time_value(value, where)
        start = _trunc(moment, grain)
        exact = start == moment
        ceiling = start if exact else _next(start, grain)
        after_start = _next(start, grain)
        if operator == "eq":
            if not exact:
                return self._range(found, ceiling, ceiling)  # no period starts there: nothing matches
            return self._range(found, start, _next(start, grain))
        if operator == "ne":  # every period but that one (all of them when none starts there)
            end = _next(start, grain) if exact else ceiling
            return {"or": [self._bound(found, "beforeDate", ceiling if not exact else start),
                           self._bound(found, "afterOrOnDate", end)]}
        if operator == "gte":
            return self._bound(found, "afterOrOnDate", ceiling)
        if operator == "gt":
            return self._bound(found, "afterOrOnDate", after_start)
        if operator == "lt":
            return self._bound(found, "beforeDate", ceiling)
        return self._bound(found, "beforeDate", after_start)  # lte

    def _range(self, found: SourceColumn, start: datetime, end: datetime) -> dict:
        return {"and": [self._bound(found, "afterOrOnDate", start), self._bound(found, "beforeDate", end)]}

    @staticmethod
    def _bound(found: SourceColumn, operator: str, moment: datetime) -> dict:
        if (found.grain or "day") not in _SUB_DAY:  # whole days
            return {"member": found.column.member, "operator": operator, "values": [moment.date().isoformat()]}
        # times: Cube's inDateRange takes them (both ends included); one end open is the widest range
        if operator == "afterOrOnDate":
            values = [moment.isoformat(timespec="seconds"), _LAST_MOMENT]
        else:
            values = [_FIRST_MOMENT, (moment - timedelta(seconds=1)).isoformat(timespec="seconds")]
        return {"member": found.column.member, "operator": "inDateRange", "values": values}


def _number(text: str):
    try:
        return int(text)
    except ValueError:
        return float(text)
