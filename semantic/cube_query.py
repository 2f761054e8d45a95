"""Cube's query format, validated and translated into a MetricFlow request.

Accepts what Cube's `/v1/load` accepts: measures, dimensions, timeDimensions (granularity,
dateRange absolute or relative, compareDateRange), filters with Cube's operators nested in
and/or, order, limit, offset, total, timezone. Every fault raises `QueryError` naming the part
of the query at fault.

Filter values never reach SQL as text the client wrote: members map to MetricFlow names through
the catalog, numbers are parsed as numbers, dates as dates, and strings become SQL literals with
quotes doubled and Jinja's braces spelled as `chr()` (MetricFlow renders where-clauses as Jinja).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from semantic.members import GRANULARITIES, TENANT_ENTITY, TIME_DIMENSION, Catalog, Dimension

MAX_LIMIT = 50_000
DEFAULT_LIMIT = 10_000
_SAFE_TENANT = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class QueryError(ValueError):
    """A query Cube would refuse with a 400 UserError."""


@dataclass(frozen=True)
class Column:
    """One output column: the Cube key(s) it is returned under and the MetricFlow column it comes from."""

    keys: tuple[str, ...]
    source: str
    kind: str  # measure, dimension or time
    member: str  # the catalog member the values come from


@dataclass(frozen=True)
class SimpleFilter:
    """An equals or notEquals filter on a dimension, kept as data: rollups can apply it themselves."""

    group_by: str
    negated: bool
    values: tuple[str, ...]


@dataclass
class Plan:
    """A query ready for MetricFlow, plus what the reply needs to be shaped like Cube's."""

    metrics: list[str]
    group_by: list[str]
    where: list[str]
    columns: list[Column]
    order: list[tuple[str, bool]]  # (MetricFlow column, descending)
    limit: int
    offset: int
    total: bool
    timezone: str
    # each timeDimension's dateRange as resolved (relative ranges against today in `timezone`)
    date_ranges: list[tuple[date, date] | None] = field(default_factory=list)
    tenant: str | None = None  # the security context's tenant, already in `where`
    # the filters, when every one is a SimpleFilter (also already in `where`); None otherwise
    simple_filters: list[SimpleFilter] | None = None


def sql_string(value: str) -> str:
    """A SQL string literal that neither SQL nor Jinja can read as anything but data."""
    quoted = "'" + value.replace("'", "''") + "'"
    return quoted.replace("{", "' || chr(123) || '").replace("}", "' || chr(125) || '")


def _number(value, where: str) -> str:
    if isinstance(value, bool):
        raise QueryError(f"{where}: expected a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise QueryError(f"{where}: expected a number, got {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise QueryError(f"{where}: expected a finite number, got {value!r}")
    return repr(int(number)) if number.is_integer() else repr(number)


def _date(value, where: str) -> date:
    if not isinstance(value, str):
        raise QueryError(f"{where}: expected a date string (YYYY-MM-DD), got {value!r}")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).date()
    except ValueError:
        raise QueryError(f"{where}: {value!r} is not a date (YYYY-MM-DD)") from None


_RELATIVE = re.compile(r"^(last|next)\s+(\d+)\s+(day|week|month|quarter|year)s?$")
_UNIT = re.compile(r"^(this|last|next)\s+(week|month|quarter|year)$")


def _period_start(day: date, unit: str) -> date:
    if unit == "day":
        return day
    if unit == "week":
        return day - timedelta(days=day.weekday())
    if unit == "month":
        return day.replace(day=1)
    if unit == "quarter":
        return day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
    return day.replace(month=1, day=1)


def _shift(start: date, unit: str, n: int) -> date:
    if unit == "day":
        return start + timedelta(days=n)
    if unit == "week":
        return start + timedelta(weeks=n)
    months = {"month": 1, "quarter": 3, "year": 12}[unit] * n
    index = start.year * 12 + start.month - 1 + months
    return start.replace(year=index // 12, month=index % 12 + 1)


def relative_range(text: str, today: date) -> tuple[date, date]:
    """Cube's relative date ranges: today, yesterday, this/last/next <unit>, last/next N <units>.

    `last 7 days` is the seven days before today, as in Cube; `this month` is the whole month.
    """
    phrase = " ".join(text.lower().split())
    if phrase == "today":
        return today, today
    if phrase == "yesterday":
        return today - timedelta(days=1), today - timedelta(days=1)
    if phrase == "tomorrow":
        return today + timedelta(days=1), today + timedelta(days=1)
    if m := _UNIT.match(phrase):
        which, unit = m.groups()
        start = _shift(_period_start(today, unit), unit, {"this": 0, "last": -1, "next": 1}[which])
        return start, _shift(start, unit, 1) - timedelta(days=1)
    if m := _RELATIVE.match(phrase):
        which, n, unit = m.group(1), int(m.group(2)), m.group(3)
        if n < 1:
            raise QueryError(f"dateRange {text!r}: the count must be at least 1")
        if which == "last":
            end = _period_start(today, unit) - timedelta(days=1)
            return _shift(_period_start(today, unit), unit, -n), end
        start = _shift(_period_start(today, unit), unit, 1)
        return start, _shift(start, unit, n) - timedelta(days=1)
    if phrase.startswith("from ") and " to " in phrase:
        first, second = phrase[5:].split(" to ", 1)
        return _date(first.strip(), "dateRange"), _date(second.strip(), "dateRange")
    raise QueryError(f"dateRange {text!r} is not a date range Cube understands "
                     "(e.g. 'last 7 days', 'this month', 'yesterday', ['2026-01-01', '2026-01-31'])")


def date_range(value, today: date, where: str) -> tuple[date, date]:
    if isinstance(value, str):
        first, last = relative_range(value, today)
    elif isinstance(value, list) and len(value) == 2:
        first, last = _date(value[0], f"{where}[0]"), _date(value[1], f"{where}[1]")
    else:
        raise QueryError(f"{where}: expected a relative range string or [from, to], got {value!r}")
    if first > last:
        raise QueryError(f"{where}: the range starts ({first}) after it ends ({last})")
    return first, last


def query_today(query: dict) -> date:
    """Today in the query's time zone: what relative date ranges count from."""
    timezone = query.get("timezone", "UTC")
    try:
        return datetime.now(ZoneInfo(timezone)).date()
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise QueryError(f"timezone: unknown time zone {timezone!r}") from None


def _time_between(first: date, last: date) -> str:
    ref = "{{ TimeDimension('metric_time', 'day') }}"
    return f"{ref} >= '{first.isoformat()}' and {ref} <= '{last.isoformat()}'"


class Translator:
    """Turns one Cube query into a `Plan`, against a catalog, for one security context."""

    def __init__(self, catalog: Catalog, tenant: str | None):
        if tenant is not None and not _SAFE_TENANT.match(tenant):
            raise QueryError(f"security context: tenant id {tenant!r} is not a valid id")
        self.catalog, self.tenant = catalog, tenant

    def plan(self, query: dict) -> Plan:
        if not isinstance(query, dict):
            raise QueryError(f"query: expected a JSON object, got {type(query).__name__}")
        unknown = set(query) - {"measures", "dimensions", "timeDimensions", "filters", "order", "limit", "offset",
                                "total", "timezone", "segments", "ungrouped", "renewQuery", "responseFormat"}
        if unknown:
            raise QueryError(f"query: unknown key(s) {sorted(unknown)}")
        today = query_today(query)

        measures = [self.catalog.measure(m, f"measures[{i}]") for i, m in enumerate(self._list(query, "measures"))]
        if not measures:
            raise QueryError("measures: a query needs at least one measure (governed metrics only)")
        columns = [Column((m.member,), m.metric, "measure", m.member) for m in measures]
        group_by: list[str] = []
        for i, name in enumerate(self._list(query, "dimensions")):
            dim = self.catalog.dimension(name, f"dimensions[{i}]")
            if dim.type == "time":
                raise QueryError(f"dimensions[{i}]: {name!r} is a time dimension: "
                                 "use timeDimensions with a granularity")
            group_by.append(dim.group_by)
            columns.append(Column((dim.member,), dim.group_by, "dimension", dim.member))
        where: list[str] = []
        date_ranges: list[tuple[date, date] | None] = []
        for i, td in enumerate(self._list(query, "timeDimensions")):
            columns += self._time_dimension(td, i, today, group_by, where, date_ranges)
        filters = self._list(query, "filters")
        where += [self._filter(f, f"filters[{i}]", today) for i, f in enumerate(filters)]
        if self.tenant is not None:
            where.append(f"{{{{ Entity('{TENANT_ENTITY}') }}}} = {sql_string(self.tenant)}")
        simple = [self._simple(f) for f in filters]
        return Plan(
            metrics=[m.metric for m in measures], group_by=group_by, where=where, columns=columns,
            order=self._order(query.get("order"), columns), limit=self._limit(query), offset=self._offset(query),
            total=bool(query.get("total", False)), timezone=query.get("timezone", "UTC"), date_ranges=date_ranges,
            tenant=self.tenant, simple_filters=None if None in simple else simple,
        )

    @staticmethod
    def _list(query: dict, key: str) -> list:
        value = query.get(key, [])
        if not isinstance(value, list):
            raise QueryError(f"{key}: expected a list, got {type(value).__name__}")
        return value

    def _time_dimension(self, td, i: int, today: date, group_by: list[str], where: list[str],
                        date_ranges: list[tuple[date, date] | None]) -> list[Column]:
        where_at = f"timeDimensions[{i}]"
        if not isinstance(td, dict) or "dimension" not in td:
            raise QueryError(f"{where_at}: expected an object with a dimension")
        dim = self.catalog.dimension(td["dimension"], f"{where_at}.dimension")
        if dim.type != "time":
            raise QueryError(f"{where_at}.dimension: {dim.member!r} is not a time dimension")
        resolved = None
        if td.get("dateRange") is not None:
            resolved = date_range(td["dateRange"], today, f"{where_at}.dateRange")
            where.append(_time_between(*resolved))
        date_ranges.append(resolved)
        granularity = td.get("granularity")
        if granularity is None:
            return []
        if granularity not in GRANULARITIES:
            raise QueryError(f"{where_at}.granularity: unknown granularity {granularity!r}; "
                             f"use one of {', '.join(GRANULARITIES)}")
        source = f"{TIME_DIMENSION}__{granularity}"
        group_by.append(source)
        return [Column((f"{dim.member}.{granularity}", dim.member), source, "time", dim.member)]

    def _filter(self, f, where_at: str, today: date) -> str:
        if not isinstance(f, dict):
            raise QueryError(f"{where_at}: expected an object")
        for logical in ("and", "or"):
            if logical in f:
                parts = f[logical]
                if not isinstance(parts, list) or not parts:
                    raise QueryError(f"{where_at}.{logical}: expected a non-empty list of filters")
                inner = [self._filter(p, f"{where_at}.{logical}[{j}]", today) for j, p in enumerate(parts)]
                return "(" + f" {logical} ".join(f"({c})" for c in inner) + ")"
        member_name = f.get("member", f.get("dimension"))
        if not isinstance(member_name, str):
            raise QueryError(f"{where_at}.member: expected a member name")
        member = self.catalog.member(member_name, f"{where_at}.member")
        if not isinstance(member, Dimension):
            raise QueryError(f"{where_at}.member: filtering on a measure ({member_name!r}) is not supported; "
                             "filter on a dimension")
        operator = f.get("operator")
        values = f.get("values", [])
        if not isinstance(values, list):
            raise QueryError(f"{where_at}.values: expected a list")
        ref = ("{{ TimeDimension('metric_time', 'day') }}" if member.type == "time"
               else f"{{{{ Dimension('{member.group_by}') }}}}" if "__" in member.group_by
               else f"{{{{ Entity('{member.group_by}') }}}}")
        return self._condition(ref, member, operator, values, where_at, today)

    def _simple(self, f: dict) -> SimpleFilter | None:
        """The filter as a SimpleFilter if it is one (it has been validated by `_filter` already)."""
        member = self.catalog.dimensions.get(f.get("member", f.get("dimension")))
        values = f.get("values")
        if (member is None or member.type == "time" or f.get("operator") not in ("equals", "notEquals")
                or not values or not all(isinstance(v, str) for v in values)):
            return None
        return SimpleFilter(member.group_by, f["operator"] == "notEquals", tuple(values))

    def _condition(self, ref: str, member: Dimension, operator, values: list, where_at: str, today: date) -> str:
        def literal(j: int, value) -> str:
            at = f"{where_at}.values[{j}]"
            if member.type == "time":
                return f"'{_date(value, at).isoformat()}'"
            if member.type == "number":
                return _number(value, at)
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                raise QueryError(f"{at}: expected a string, got {value!r}")
            return sql_string(str(value))

        def need(n: int | None = None) -> None:
            if not values or (n is not None and len(values) != n):
                count = "a value" if n == 1 else f"{n} values" if n else "at least one value"
                raise QueryError(f"{where_at}.values: operator {operator!r} needs {count}")

        if operator in ("equals", "notEquals"):
            need()
            listed = ", ".join(literal(j, v) for j, v in enumerate(values))
            return f"{ref} {'in' if operator == 'equals' else 'not in'} ({listed})"
        if operator in ("contains", "notContains", "startsWith", "endsWith", "notStartsWith", "notEndsWith"):
            need()
            if member.type != "string":
                raise QueryError(f"{where_at}.operator: {operator!r} applies to string dimensions only")
            pattern = {"contains": "%{}%", "notContains": "%{}%", "startsWith": "{}%", "notStartsWith": "{}%",
                       "endsWith": "%{}", "notEndsWith": "%{}"}[operator]
            likes = []
            for j, v in enumerate(values):
                if not isinstance(v, str):
                    raise QueryError(f"{where_at}.values[{j}]: expected a string, got {v!r}")
                escaped = v.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                likes.append(f"{ref} like {sql_string(pattern.format(escaped))} escape '\\'")
            joined = " or ".join(likes)
            return f"not ({joined})" if operator.startswith("not") else f"({joined})"
        if operator in ("gt", "gte", "lt", "lte"):
            need(1)
            symbol = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[operator]
            value = values[0]
            rendered = (f"'{_date(value, f'{where_at}.values[0]').isoformat()}'" if member.type == "time"
                        else _number(value, f"{where_at}.values[0]") if member.type == "number"
                        else sql_string(value) if isinstance(value, str) else _number(value, f"{where_at}.values[0]"))
            return f"{ref} {symbol} {rendered}"
        if operator == "set":
            return f"{ref} is not null"
        if operator == "notSet":
            return f"{ref} is null"
        if operator in ("inDateRange", "notInDateRange", "beforeDate", "afterDate", "beforeOrOnDate", "afterOrOnDate"):
            if member.type != "time":
                raise QueryError(f"{where_at}.operator: {operator!r} applies to time dimensions only")
            if operator in ("inDateRange", "notInDateRange"):
                first, last = date_range(values if len(values) == 2 else (values[0] if values else None),
                                         today, f"{where_at}.values")
                inside = f"{ref} >= '{first.isoformat()}' and {ref} <= '{last.isoformat()}'"
                return inside if operator == "inDateRange" else f"not ({inside})"
            need(1)
            day = _date(values[0], f"{where_at}.values[0]").isoformat()
            symbol = {"beforeDate": "<", "afterDate": ">", "beforeOrOnDate": "<=", "afterOrOnDate": ">="}[operator]
            return f"{ref} {symbol} '{day}'"
        raise QueryError(f"{where_at}.operator: unknown operator {operator!r}")

    def _order(self, order, columns: list[Column]) -> list[tuple[str, bool]]:
        if order is None:
            return []
        pairs = list(order.items()) if isinstance(order, dict) else order
        if not isinstance(pairs, list):
            raise QueryError("order: expected an object or a list of [member, direction] pairs")
        found = []
        by_key = {key: c for c in columns for key in c.keys}
        for i, pair in enumerate(pairs):
            if not isinstance(pair, list | tuple) or len(pair) != 2 or pair[1] not in ("asc", "desc"):
                raise QueryError(f"order[{i}]: expected [member, 'asc' or 'desc']")
            member, direction = pair
            column = by_key.get(member)
            if column is None:
                self.catalog.member(member, f"order[{i}]")  # an unknown member says so, with suggestions
                raise QueryError(f"order[{i}]: {member!r} is not among the query's measures and dimensions")
            found.append((column.source, direction == "desc"))
        return found

    @staticmethod
    def _limit(query: dict) -> int:
        limit = query.get("limit", DEFAULT_LIMIT)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise QueryError(f"limit: expected a positive integer, got {limit!r}")
        if limit > MAX_LIMIT:
            raise QueryError(f"limit: {limit} is above the maximum of {MAX_LIMIT}")
        return limit

    @staticmethod
    def _offset(query: dict) -> int:
        offset = query.get("offset", 0)
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise QueryError(f"offset: expected a non-negative integer, got {offset!r}")
        return offset
