"""SQL over the governed metrics: one virtual table, `metrics`, whose columns are the members.

    SELECT metric_time__month, tenant, revenue, orders
    FROM metrics
    WHERE user__country IN ('US', 'DE') AND metric_time >= '2026-10-01'
    ORDER BY 1 DESC LIMIT 12

Columns are the metrics (`revenue`, or `MEASURE(revenue)`), the dimensions (`tenant`,
`user__country`, ...) and the time at a granularity (`metric_time` is the day; `metric_time__week`,
`__month`, `__quarter`, `__year`). Each metric is aggregated by MetricFlow over the selected
dimensions, as it is for every other consumer: the statement is parsed (sqlglot) into the same
Cube query the REST API takes, never run as written. So nothing but the governed metrics can be
read (raw and mart tables are not there), and the caller's tenant filter always applies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlglot
from sqlglot import exp

from semantic.members import GRANULARITIES, TIME_DIMENSION, VIEW, Catalog

TABLE = "metrics"


class SqlRefused(ValueError):
    """A statement the SQL endpoint will not run; the message says why and what would work."""


@dataclass(frozen=True)
class OutputColumn:
    name: str  # as the client sees it
    key: str  # the Cube key of the value in a result row
    kind: str  # measure, dimension or time


def bind_parameters(sql: str, values: list[str | None]) -> str:
    """Inline `$1`, `$2`... as SQL literals (strings quoted, quotes doubled), outside quoted text."""
    def literal(match: re.Match) -> str:
        if match.group(1) is not None:
            return match.group(1)
        index = int(match.group(2)) - 1
        if index >= len(values):
            raise SqlRefused(f"parameter ${index + 1} has no value")
        value = values[index]
        return "NULL" if value is None else "'" + value.replace("'", "''") + "'"

    return re.sub(r"('(?:[^']|'')*')|\$(\d+)", literal, sql)


def catalog_probe(sql: str) -> list[str] | None:
    """The output column names of a query on the system catalogs only (drivers probe for types such
    as hstore when they connect, psql to describe tables), else None. `pg_describe` answers them."""
    try:
        tree = sqlglot.parse_one(sql, read="postgres")
    except sqlglot.errors.ParseError:
        return None
    if not isinstance(tree, exp.Select):
        return None
    tables = list(tree.find_all(exp.Table))
    if not tables or not all(t.name.startswith("pg_") or t.db in ("pg_catalog", "information_schema")
                             for t in tables):
        return None
    return [p.alias_or_name or f"column{i + 1}" for i, p in enumerate(tree.expressions)]


class SqlTranslator:
    def __init__(self, catalog: Catalog):
        self.catalog = catalog

    def translate(self, sql: str) -> tuple[dict, list[OutputColumn]]:
        try:
            statements = [s for s in sqlglot.parse(sql, read="postgres") if s is not None]
        except sqlglot.errors.ParseError as exc:
            raise SqlRefused(f"could not parse the statement: {str(exc).splitlines()[0]}") from None
        if len(statements) != 1:
            raise SqlRefused("send one statement at a time")
        tree = statements[0]
        if not isinstance(tree, exp.Select):
            raise SqlRefused(f"only SELECT is allowed here, not {tree.key.upper()}")
        self._check_source(tree)
        query: dict = {"measures": [], "dimensions": [], "timeDimensions": []}
        columns: list[OutputColumn] = []
        for projection in tree.expressions:
            columns.append(self._projection(projection, query))
        if not query["measures"]:
            raise SqlRefused("select at least one metric (a measure), e.g. SELECT revenue FROM metrics")
        if not query["timeDimensions"]:
            del query["timeDimensions"]
        where = tree.args.get("where")
        if where is not None:
            query["filters"] = [self._filter(where.this)]
        order = tree.args.get("order")
        if order is not None:
            query["order"] = [self._order(o, columns) for o in order.expressions]
        for part in ("limit", "offset"):
            node = tree.args.get(part)
            if node is not None:
                value = node.expression if isinstance(node, exp.Limit | exp.Offset) else node
                if not isinstance(value, exp.Literal) or value.is_string:
                    raise SqlRefused(f"{part.upper()} must be a number")
                query[part] = int(value.this)
        return query, columns

    def _check_source(self, tree: exp.Select) -> None:
        for unsupported in ("joins", "having", "with"):
            if tree.args.get(unsupported):
                raise SqlRefused(f"{unsupported.upper()} is not supported: query the metrics table alone")
        tables = list(tree.find_all(exp.Table))
        names = {".".join(p for p in (t.db, t.name) if p) for t in tables}
        if not tables:
            raise SqlRefused(f"say FROM {TABLE}")
        refused = names - {TABLE, f"public.{TABLE}", f"{VIEW}.{TABLE}"}
        if refused:
            raise SqlRefused(f"only the governed metrics can be queried (FROM {TABLE}); "
                             f"{', '.join(sorted(refused))} is not exposed")
        if any(isinstance(s, exp.Subquery) for s in tree.find_all(exp.Subquery)):
            raise SqlRefused("subqueries are not supported")

    def _name(self, node: exp.Expression) -> str:
        if isinstance(node, exp.Column) and not node.table:
            return node.name
        if isinstance(node, exp.Column):
            return node.name if node.table == TABLE else f"{node.table}.{node.name}"
        if isinstance(node, exp.Anonymous) and node.name.lower() == "measure" and len(node.expressions) == 1:
            return self._name(node.expressions[0])
        raise SqlRefused(f"{node.sql('postgres')!r} is not a column of {TABLE}: select metrics and dimensions "
                         "by name (aggregation is the metric's own)")

    def _projection(self, projection: exp.Expression, query: dict) -> OutputColumn:
        alias = projection.alias if isinstance(projection, exp.Alias) else None
        node = projection.this if isinstance(projection, exp.Alias) else projection
        if isinstance(node, exp.Star):
            raise SqlRefused("SELECT * is not supported: name the metrics and dimensions you want")
        name = self._name(node)
        member = f"{VIEW}.{name}"
        if member in self.catalog.measures:
            query["measures"].append(member)
            return OutputColumn(alias or name, member, "measure")
        granularity = self._granularity(name)
        if granularity:
            query["timeDimensions"].append({"dimension": f"{VIEW}.{TIME_DIMENSION}", "granularity": granularity})
            return OutputColumn(alias or name, f"{VIEW}.{TIME_DIMENSION}.{granularity}", "time")
        self.catalog.dimension(member, f"column {name!r}")
        query["dimensions"].append(member)
        return OutputColumn(alias or name, member, "dimension")

    @staticmethod
    def _granularity(name: str) -> str | None:
        if name == TIME_DIMENSION:
            return "day"
        prefix = f"{TIME_DIMENSION}__"
        if name.startswith(prefix) and name.removeprefix(prefix) in GRANULARITIES:
            return name.removeprefix(prefix)
        return None

    def _value(self, node: exp.Expression) -> str | float:
        if isinstance(node, exp.Literal):
            return node.this if node.is_string else float(node.this)
        if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal):
            return -float(node.this.this)
        if isinstance(node, exp.Cast):
            return self._value(node.this)
        raise SqlRefused(f"{node.sql('postgres')!r}: compare columns with literal values only")

    def _member(self, node: exp.Expression) -> tuple[str, bool]:
        name = self._name(node)
        if self._granularity(name):
            return f"{VIEW}.{TIME_DIMENSION}", True
        member = f"{VIEW}.{name}"
        if member in self.catalog.measures:
            raise SqlRefused(f"WHERE on the metric {name!r} is not supported: filter on dimensions")
        self.catalog.dimension(member, f"WHERE column {name!r}")
        return member, False

    def _filter(self, node: exp.Expression) -> dict:
        if isinstance(node, exp.Paren):
            return self._filter(node.this)
        if isinstance(node, exp.And | exp.Or):
            key = "and" if isinstance(node, exp.And) else "or"
            return {key: [self._filter(node.this), self._filter(node.expression)]}
        negated = isinstance(node, exp.Not)
        inner = node.this if negated else node
        if isinstance(inner, exp.In):
            member, is_time = self._member(inner.this)
            if is_time:
                raise SqlRefused("IN on metric_time is not supported: use a range")
            return {"member": member, "operator": "notEquals" if negated else "equals",
                    "values": [self._value(v) for v in inner.expressions]}
        if isinstance(inner, exp.Is):
            member, _ = self._member(inner.this)
            return {"member": member, "operator": "set" if negated else "notSet"}
        if isinstance(inner, exp.Like):
            member, _ = self._member(inner.this)
            pattern = self._value(inner.expression)
            if not isinstance(pattern, str):
                raise SqlRefused("LIKE needs a string pattern")
            body = pattern.strip("%")
            if "%" in body or "_" in body:
                raise SqlRefused("LIKE supports a leading and/or trailing % only")
            operator = ("contains" if pattern.startswith("%") and pattern.endswith("%") and len(pattern) > 1
                        else "endsWith" if pattern.startswith("%") else "startsWith" if pattern.endswith("%")
                        else "equals")
            if negated:
                operator = {"contains": "notContains", "endsWith": "notEndsWith", "startsWith": "notStartsWith",
                            "equals": "notEquals"}[operator]
            return {"member": member, "operator": operator, "values": [body]}
        if negated:
            raise SqlRefused(f"NOT {inner.sql('postgres')!r} is not supported")
        if isinstance(node, exp.Between):
            member, is_time = self._member(node.this)
            low, high = self._value(node.args["low"]), self._value(node.args["high"])
            if is_time:
                return {"member": member, "operator": "inDateRange", "values": [low, high]}
            return {"and": [{"member": member, "operator": "gte", "values": [low]},
                            {"member": member, "operator": "lte", "values": [high]}]}
        comparisons = {exp.EQ: "equals", exp.NEQ: "notEquals", exp.GT: "gt", exp.GTE: "gte", exp.LT: "lt",
                       exp.LTE: "lte"}
        operator = comparisons.get(type(node))
        if operator is None:
            raise SqlRefused(f"{node.sql('postgres')!r} is not a condition the metrics endpoint understands")
        member, is_time = self._member(node.this)
        value = self._value(node.expression)
        if is_time:
            if operator == "equals":
                return {"member": member, "operator": "inDateRange", "values": [value, value]}
            operator = {"gt": "afterDate", "gte": "afterOrOnDate", "lt": "beforeDate",
                        "lte": "beforeOrOnDate"}.get(operator)
            if operator is None:
                raise SqlRefused("<> on metric_time is not supported: use ranges")
        return {"member": member, "operator": operator, "values": [value]}

    def _order(self, ordered: exp.Ordered, columns: list[OutputColumn]) -> list[str]:
        node = ordered.this
        direction = "desc" if ordered.args.get("desc") else "asc"
        if isinstance(node, exp.Literal) and not node.is_string:
            index = int(node.this) - 1
            if not 0 <= index < len(columns):
                raise SqlRefused(f"ORDER BY {index + 1}: there are {len(columns)} columns")
            column = columns[index]
        else:
            name = self._name(node)
            column = next((c for c in columns if c.name == name), None)
            if column is None:
                raise SqlRefused(f"ORDER BY {name}: order by a selected column")
        member = f"{VIEW}.{TIME_DIMENSION}" if column.kind == "time" else column.key
        return [member, direction]
