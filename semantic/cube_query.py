"""Cube's query format, validated and translated into a MetricFlow request.

Accepts what Cube's `/v1/load` accepts: measures, dimensions, timeDimensions (granularity,
dateRange absolute, with times or relative, compareDateRange), filters with Cube's operators
nested in and/or (on dimensions, and on measures, which filter the aggregated rows as Cube does),
order, limit, offset, total, ungrouped, timezone. Every fault raises `QueryError` naming the part of
the query at fault, and every member of a query must come from one view (`members.py`).

Filter values never reach SQL as text the client wrote: members map to MetricFlow names through
the catalog, numbers are parsed as numbers, booleans as booleans, dates as dates, and strings
become SQL literals with quotes doubled and Jinja's braces spelled as `chr()` (MetricFlow renders
where-clauses as Jinja).

Two of Cube's behaviours MetricFlow has no word for are planned here and carried out by the
service: a rolling-window metric (weekly active users) without a time grain is its value on the
last day of the range (`Plan.as_of_last_day`), and an ungrouped query keeps one row per instance
of the view's fact (`Plan.row_key`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from semantic.members import GRANULARITIES, TENANT_ENTITY, TIME_DIMENSION, Catalog, Dimension, Measure, View

MAX_LIMIT = 50_000
DEFAULT_LIMIT = 10_000
MAX_FILTER_DEPTH = 32
MAX_FILTER_TERMS = 1_000
_SAFE_TENANT = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_END_OF_DAY = time(23, 59, 59, 999000)


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


@dataclass(frozen=True)
class DateRange:
    """A resolved range, both ends included, in the query's time zone."""

    start: datetime
    end: datetime

    @property
    def whole_days(self) -> bool:
        return self.start.time() == time.min and self.end.time() >= _END_OF_DAY

    @property
    def first(self) -> date:
        return self.start.date()

    @property
    def last(self) -> date:
        return self.end.date()

    def echoed(self) -> list[str]:
        """As Cube echoes a range: milliseconds, the end's last millisecond included."""
        return [self.start.strftime("%Y-%m-%dT%H:%M:%S.") + f"{self.start.microsecond // 1000:03d}",
                self.end.strftime("%Y-%m-%dT%H:%M:%S.") + f"{self.end.microsecond // 1000:03d}"]


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
    # each timeDimension's dateRange as resolved (relative ranges against now in `timezone`)
    date_ranges: list[DateRange | None] = field(default_factory=list)
    tenant: str | None = None  # the security context's tenant, already in `where`
    # the filters, when every one is a SimpleFilter (also already in `where`); None otherwise
    simple_filters: list[SimpleFilter] | None = None
    view: str = ""
    # conditions on the aggregated rows (filters on measures), in SQL on the output columns
    having: list[str] = field(default_factory=list)
    # rolling-window metrics asked without a time grain: their value on the last day of the range
    as_of_last_day: list[str] = field(default_factory=list)
    # an ungrouped query: the entity whose key keeps one row per fact (not returned)
    row_key: str | None = None


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
    if not math.isfinite(number):
        raise QueryError(f"{where}: expected a finite number, got {value!r}")
    return repr(int(number)) if number.is_integer() and abs(number) < 2 ** 63 else repr(number)


def _where_ref(group_by: str) -> str:
    """MetricFlow's where-filter reference to a group-by name such as `user__channel__is_paid`: the
    dimension (or entity) with its last entity, and the entities before it as its path, which a
    name of more than one hop needs (`Dimension('user__channel__is_paid')` does not parse)."""
    *path, name = group_by.split("__")
    kind = "Dimension" if path else "Entity"
    if path:
        name = f"{path.pop()}__{name}"
    return f"{{{{ {kind}('{name}'" + (f", entity_path={path!r}" if path else "") + ") }}"


def _boolean(value, where: str) -> str:
    text = str(value).strip().lower() if isinstance(value, bool | str) else None
    if text in ("true", "false"):
        return text
    raise QueryError(f"{where}: expected true or false, got {value!r}")


def _moment(value, where: str, end: bool = False) -> datetime:
    """A date or a date and time (ISO 8601); a date alone is the whole day (its last instant, as an end)."""
    if not isinstance(value, str):
        raise QueryError(f"{where}: expected a date string (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS), got {value!r}")
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(f"{where}: {value!r} is not a date (YYYY-MM-DD) or a date and time") from None
    if parsed.tzinfo is not None:
        parsed = parsed.replace(tzinfo=None)  # a range is read in the query's time zone, as Cube does
    if len(text) <= 10:  # a date: the day, whole
        return datetime.combine(parsed.date(), _END_OF_DAY if end else time.min)
    return parsed


def _date(value, where: str) -> date:
    return _moment(value, where).date()


_UNITS = ("minute", "hour", "day", "week", "month", "quarter", "year")
_RELATIVE = re.compile(r"^(last|next)\s+(\d+)\s+(minute|hour|day|week|month|quarter|year)s?$")
_UNIT = re.compile(r"^(this|last|next)\s+(minute|hour|day|week|month|quarter|year)$")
_AGO = re.compile(r"^(\d+)\s+(minute|hour|day|week|month|quarter|year)s?\s+(ago|from now)$")


def _period_start(moment: datetime, unit: str) -> datetime:
    if unit == "minute":
        return moment.replace(second=0, microsecond=0)
    if unit == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    day = datetime.combine(moment.date(), time.min)
    if unit == "day":
        return day
    if unit == "week":
        return day - timedelta(days=day.weekday())
    if unit == "month":
        return day.replace(day=1)
    if unit == "quarter":
        return day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
    return day.replace(month=1, day=1)


def _shift(start: datetime, unit: str, n: int, where: str) -> datetime:
    try:
        if unit in ("minute", "hour", "day", "week"):
            return start + timedelta(**{f"{unit}s": n})
        months = {"month": 1, "quarter": 3, "year": 12}[unit] * n
        index = start.year * 12 + start.month - 1 + months
        return start.replace(year=index // 12, month=index % 12 + 1)
    except (OverflowError, ValueError):
        raise QueryError(f"{where}: {n} {unit}s from {start:%Y-%m-%d} is outside the calendar (years 1 to 9999)") \
            from None


def _relative_moment(phrase: str, now: datetime, where: str) -> datetime:
    """One end of a `from ... to ...` range: now, today, yesterday, tomorrow, N units ago, or a date."""
    if phrase == "now":
        return now
    if phrase in ("today", "yesterday", "tomorrow"):
        return _period_start(now, "day") + timedelta(days={"today": 0, "yesterday": -1, "tomorrow": 1}[phrase])
    if m := _AGO.match(phrase):
        n, unit, direction = int(m.group(1)), m.group(2), m.group(3)
        return _shift(now, unit, -n if direction == "ago" else n, where)
    return _moment(phrase, where)


def relative_range(text: str, now: datetime, where: str = "dateRange") -> DateRange:
    """Cube's relative date ranges: today, yesterday, this/last/next <unit>, last/next N <units>,
    from <moment> to <moment> (moments: a date, now, today, N units ago).

    `last 7 days` is the seven days before today, as in Cube; `this month` is the whole month.
    """
    if not isinstance(text, str):
        raise QueryError(f"{where}: expected a string, got {text!r}")
    phrase = " ".join(text.lower().split())
    one = timedelta(microseconds=1000)
    if phrase in ("today", "yesterday", "tomorrow"):
        start = _relative_moment(phrase, now, where)
        return DateRange(start, start + timedelta(days=1) - one)
    if m := _UNIT.match(phrase):
        which, unit = m.groups()
        start = _shift(_period_start(now, unit), unit, {"this": 0, "last": -1, "next": 1}[which], where)
        return DateRange(start, _shift(start, unit, 1, where) - one)
    if m := _RELATIVE.match(phrase):
        which, n, unit = m.group(1), int(m.group(2)), m.group(3)
        if n < 1:
            raise QueryError(f"{where} {text!r}: the count must be at least 1")
        current = _period_start(now, unit)
        if which == "last":
            return DateRange(_shift(current, unit, -n, where), current - one)
        start = _shift(current, unit, 1, where)
        return DateRange(start, _shift(start, unit, n, where) - one)
    if phrase.startswith("from ") and " to " in phrase:
        first, second = phrase[5:].split(" to ", 1)
        start = _relative_moment(first.strip(), now, f"{where} (from)")
        end_text = second.strip()
        end = _relative_moment(end_text, now, f"{where} (to)")
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", end_text):
            end = _moment(end_text, f"{where} (to)", end=True)
        return DateRange(start, end)
    raise QueryError(f"{where} {text!r} is not a date range Cube understands "
                     "(e.g. 'last 7 days', 'this month', 'yesterday', 'from 7 days ago to now', "
                     "['2026-01-01', '2026-01-31'])")


def date_range(value, now: datetime, where: str) -> DateRange:
    if isinstance(value, str):
        resolved = relative_range(value, now, where)
    elif isinstance(value, list) and len(value) == 2:
        resolved = DateRange(_moment(value[0], f"{where}[0]"), _moment(value[1], f"{where}[1]", end=True))
    else:
        raise QueryError(f"{where}: expected a relative range string or [from, to], got {value!r}")
    if resolved.start > resolved.end:
        start = resolved.first.isoformat() if resolved.start.time() == time.min else f"{resolved.start:%Y-%m-%d %H:%M}"
        end = resolved.last.isoformat() if resolved.end.time() >= _END_OF_DAY else f"{resolved.end:%Y-%m-%d %H:%M}"
        raise QueryError(f"{where}: the range starts ({start}) after it ends ({end})")
    return resolved


def query_now(query: dict) -> datetime:
    """Now in the query's time zone (naive): what relative date ranges count from."""
    timezone = query.get("timezone", "UTC")
    try:
        return datetime.now(ZoneInfo(timezone)).replace(tzinfo=None)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise QueryError(f"timezone: unknown time zone {timezone!r}") from None


def _time_condition(resolved: DateRange, view: View) -> str:
    """The where-clause for a range: whole days on days; with times, on the view's finest grain
    (days whose start is in the range, where the facts are daily)."""
    if resolved.whole_days:
        ref = "{{ TimeDimension('metric_time', 'day') }}"
        return f"{ref} >= '{resolved.first.isoformat()}' and {ref} <= '{resolved.last.isoformat()}'"
    finest = view.granularities[0] if view.granularities else "day"
    ref = f"{{{{ TimeDimension('metric_time', '{finest}') }}}}"
    if finest in ("minute", "hour"):
        return f"{ref} >= '{resolved.start:%Y-%m-%d %H:%M:%S}' and {ref} <= '{resolved.end:%Y-%m-%d %H:%M:%S}'"
    first = resolved.first if resolved.start.time() == time.min else resolved.first + timedelta(days=1)
    return f"{ref} >= '{first.isoformat()}' and {ref} <= '{resolved.last.isoformat()}'"


class Translator:
    """Turns one Cube query into a `Plan`, against a catalog, for one security context.

    `max_limit` is the largest `limit` a query may ask for and `default_limit` what it gets without
    one: /load's are Cube's; an export's are its row limit (`ServingSettings.export_max_rows`)."""

    def __init__(self, catalog: Catalog, tenant: str | None, max_limit: int = MAX_LIMIT,
                 default_limit: int = DEFAULT_LIMIT):
        if tenant is not None and not _SAFE_TENANT.match(tenant):
            raise QueryError(f"security context: tenant id {tenant!r} is not a valid id")
        self.catalog, self.tenant = catalog, tenant
        self.max_limit, self.default_limit = max_limit, default_limit
        self._terms = 0

    def plan(self, query: dict) -> Plan:
        if not isinstance(query, dict):
            raise QueryError(f"query: expected a JSON object, got {type(query).__name__}")
        unknown = set(query) - {"measures", "dimensions", "timeDimensions", "filters", "order", "limit", "offset",
                                "total", "timezone", "segments", "ungrouped", "renewQuery", "responseFormat"}
        if unknown:
            raise QueryError(f"query: unknown key(s) {sorted(unknown)}")
        if self._list(query, "segments"):
            raise QueryError("segments: no segments are defined; filter on dimensions instead")
        now = query_now(query)

        measures = [self.catalog.measure(m, f"measures[{i}]") for i, m in enumerate(self._list(query, "measures"))]
        if not measures:
            raise QueryError("measures: a query needs at least one measure (governed metrics only)")
        dimensions = [(self.catalog.dimension(name, f"dimensions[{i}]"), f"dimensions[{i}]")
                      for i, name in enumerate(self._list(query, "dimensions"))]
        time_dimensions = self._list(query, "timeDimensions")
        named = [(m.member, f"measures[{i}]") for i, m in enumerate(measures)]
        named += [(d.member, where) for d, where in dimensions]
        named += [(td.get("dimension"), f"timeDimensions[{i}].dimension") for i, td in enumerate(time_dimensions)
                  if isinstance(td, dict)]
        for member, where in named[len(measures):]:
            self.catalog.member(member, where)  # unknown or not a string: said before anything else
        view = self.catalog.check(named)

        columns = [Column((m.member,), m.metric, "measure", m.member) for m in measures]
        group_by: list[str] = []
        for dim, where in dimensions:
            if dim.type == "time":
                raise QueryError(f"{where}: {dim.member!r} is a time dimension: use timeDimensions with a granularity")
            group_by.append(dim.group_by)
            columns.append(Column((dim.member,), dim.group_by, "dimension", dim.member))
        where: list[str] = []
        date_ranges: list[DateRange | None] = []
        for i, td in enumerate(time_dimensions):
            columns += self._time_dimension(td, i, now, view, group_by, where, date_ranges)
        filters = self._list(query, "filters")
        having: list[str] = []
        for i, f in enumerate(filters):
            condition, on_measures = self._filter(f, f"filters[{i}]", now, view, depth=0)
            (having if on_measures else where).append(condition)
        if self.tenant is not None:
            where.append(f"{{{{ Entity('{TENANT_ENTITY}') }}}} = {sql_string(self.tenant)}")
        simple = [self._simple(f) for f in filters]
        timed = any(g.startswith(f"{TIME_DIMENSION}__") for g in group_by)
        plan = Plan(
            metrics=[m.metric for m in measures], group_by=group_by, where=where, columns=columns,
            order=self._order(query.get("order"), columns), limit=self._limit(query), offset=self._offset(query),
            total=self._flag(query, "total"), timezone=query.get("timezone", "UTC"), date_ranges=date_ranges,
            tenant=self.tenant, simple_filters=None if None in simple or having else simple, view=view.name,
            having=having,
            as_of_last_day=[] if timed else list(dict.fromkeys(m.metric for m in measures if m.cumulative)),
        )
        if self._flag(query, "ungrouped"):
            plan.row_key = self._row_key(view)
            plan.group_by.append(plan.row_key)
        return plan

    @staticmethod
    def _list(query: dict, key: str) -> list:
        value = query.get(key, [])
        if value is None:
            return []
        if not isinstance(value, list):
            raise QueryError(f"{key}: expected a list, got {type(value).__name__}")
        return value

    @staticmethod
    def _flag(query: dict, key: str) -> bool:
        value = query.get(key, False)
        if not isinstance(value, bool):
            raise QueryError(f"{key}: expected true or false, got {value!r}")
        return value

    def _row_key(self, view: View) -> str:
        keys = [d.group_by for d in view.dimensions.values() if d.group_by == view.primary_entity]
        if not keys:
            raise QueryError(f"ungrouped: view {view.name!r} has no row key (its facts are aggregates); "
                             "drop ungrouped or use a view of raw facts")
        return keys[0]

    def _time_dimension(self, td, i: int, now: datetime, view: View, group_by: list[str], where: list[str],
                        date_ranges: list[DateRange | None]) -> list[Column]:
        where_at = f"timeDimensions[{i}]"
        if not isinstance(td, dict) or "dimension" not in td:
            raise QueryError(f"{where_at}: expected an object with a dimension")
        dim = self.catalog.dimension(td["dimension"], f"{where_at}.dimension")
        if dim.type != "time":
            raise QueryError(f"{where_at}.dimension: {dim.member!r} is not a time dimension")
        resolved = None
        if td.get("dateRange") is not None:
            resolved = date_range(td["dateRange"], now, f"{where_at}.dateRange")
            where.append(_time_condition(resolved, view))
        date_ranges.append(resolved)
        granularity = td.get("granularity")
        if granularity is None:
            return []
        if granularity not in GRANULARITIES:
            raise QueryError(f"{where_at}.granularity: unknown granularity {granularity!r}; "
                             f"use one of {', '.join(view.granularities)}")
        if granularity not in view.granularities:
            raise QueryError(f"{where_at}.granularity: {granularity!r} is finer than the facts of view "
                             f"{view.name!r} go; use one of {', '.join(view.granularities)}")
        source = f"{TIME_DIMENSION}__{granularity}"
        group_by.append(source)
        return [Column((f"{dim.member}.{granularity}", dim.member), source, "time", dim.member)]

    def _filter(self, f, where_at: str, now: datetime, view: View, depth: int) -> tuple[str, bool]:
        """The condition in SQL, and whether it is on measures (aggregated rows) or on dimensions."""
        if depth > MAX_FILTER_DEPTH:
            raise QueryError(f"{where_at.split('.')[0]}: filters nested deeper than {MAX_FILTER_DEPTH} levels")
        if not isinstance(f, dict):
            raise QueryError(f"{where_at}: expected an object")
        for logical in ("and", "or"):
            if logical in f:
                parts = f[logical]
                if not isinstance(parts, list) or not parts:
                    raise QueryError(f"{where_at}.{logical}: expected a non-empty list of filters")
                inner = [self._filter(p, f"{where_at}.{logical}[{j}]", now, view, depth + 1)
                         for j, p in enumerate(parts)]
                kinds = {on_measures for _, on_measures in inner}
                if len(kinds) > 1:
                    raise QueryError(f"{where_at}.{logical}: mixes filters on measures and on dimensions; a measure "
                                     "filters the aggregated rows, so combine them with the top-level list instead")
                return "(" + f" {logical} ".join(f"({c})" for c, _ in inner) + ")", kinds.pop()
        self._terms += 1
        if self._terms > MAX_FILTER_TERMS:
            raise QueryError(f"{where_at}: more than {MAX_FILTER_TERMS} filter conditions")
        member_name = f.get("member", f.get("dimension"))
        if not isinstance(member_name, str):
            raise QueryError(f"{where_at}.member: expected a member name")
        member = self.catalog.member(member_name, f"{where_at}.member")
        if self.catalog.view(member.member) is not view:
            raise QueryError(f"{where_at}.member: {member.member!r} is not in view {view.name!r}: a query reads one "
                             "view")
        operator = f.get("operator")
        values = f.get("values", [])
        if not isinstance(values, list):
            raise QueryError(f"{where_at}.values: expected a list")
        if isinstance(member, Measure):
            return self._measure_condition(member, operator, values, where_at), True
        ref = "{{ TimeDimension('metric_time', 'day') }}" if member.type == "time" else _where_ref(member.group_by)
        return self._condition(ref, member, operator, values, where_at, now, view), False

    def _simple(self, f: dict) -> SimpleFilter | None:
        """The filter as a SimpleFilter if it is one (it has been validated by `_filter` already)."""
        member = self.catalog.dimensions.get(f.get("member", f.get("dimension")))
        values = f.get("values")
        if (member is None or member.type != "string" or f.get("operator") not in ("equals", "notEquals")
                or not values or not all(isinstance(v, str) for v in values)):
            return None
        return SimpleFilter(member.group_by, f["operator"] == "notEquals", tuple(values))

    @staticmethod
    def _measure_condition(measure: Measure, operator, values: list, where_at: str) -> str:
        column = f'"{measure.metric}"'
        if operator == "set":
            return f"{column} is not null"
        if operator == "notSet":
            return f"{column} is null"
        symbols = {"equals": "=", "notEquals": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
        if operator not in symbols:
            raise QueryError(f"{where_at}.operator: {operator!r} does not apply to a measure; use one of "
                             f"{', '.join(symbols)}, set or notSet")
        if not values:
            raise QueryError(f"{where_at}.values: operator {operator!r} needs a value")
        numbers = [_number(v, f"{where_at}.values[{j}]") for j, v in enumerate(values)]
        if operator in ("equals", "notEquals"):
            listed = ", ".join(numbers)
            return f"{column} {'in' if operator == 'equals' else 'not in'} ({listed})"
        if len(numbers) != 1:
            raise QueryError(f"{where_at}.values: operator {operator!r} needs one value")
        return f"{column} {symbols[operator]} {numbers[0]}"

    def _condition(self, ref: str, member: Dimension, operator, values: list, where_at: str, now: datetime,
                   view: View) -> str:
        def literal(j: int, value) -> str:
            at = f"{where_at}.values[{j}]"
            if isinstance(value, str) and "\x00" in value:
                raise QueryError(f"{at}: contains a NUL character")
            if member.type == "time":
                return f"'{_date(value, at).isoformat()}'"
            if member.type == "number":
                return _number(value, at)
            if member.type == "boolean":
                return _boolean(value, at)
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
                raise QueryError(f"{where_at}.operator: {operator!r} applies to string dimensions only; "
                                 f"{member.member!r} is {member.type}")
            pattern = {"contains": "%{}%", "notContains": "%{}%", "startsWith": "{}%", "notStartsWith": "{}%",
                       "endsWith": "%{}", "notEndsWith": "%{}"}[operator]
            likes = []
            for j, v in enumerate(values):
                if not isinstance(v, str):
                    raise QueryError(f"{where_at}.values[{j}]: expected a string, got {v!r}")
                literal(j, v)  # the NUL check
                escaped = v.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                likes.append(f"{ref} like {sql_string(pattern.format(escaped))} escape '\\'")
            joined = " or ".join(likes)
            return f"not ({joined})" if operator.startswith("not") else f"({joined})"
        if operator in ("gt", "gte", "lt", "lte"):
            need(1)
            if member.type == "boolean":
                raise QueryError(f"{where_at}.operator: {operator!r} does not apply to boolean {member.member!r}")
            symbol = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[operator]
            return f"{ref} {symbol} {literal(0, values[0])}"
        if operator == "set":
            return f"{ref} is not null"
        if operator == "notSet":
            return f"{ref} is null"
        if operator in ("inDateRange", "notInDateRange", "beforeDate", "afterDate", "beforeOrOnDate", "afterOrOnDate"):
            if member.type != "time":
                raise QueryError(f"{where_at}.operator: {operator!r} applies to time dimensions only")
            if operator in ("inDateRange", "notInDateRange"):
                resolved = date_range(values if len(values) == 2 else (values[0] if values else None), now,
                                      f"{where_at}.values")
                inside = _time_condition(resolved, view)
                return inside if operator == "inDateRange" else f"not ({inside})"
            need(1)
            moment = _moment(values[0], f"{where_at}.values[0]")
            symbol = {"beforeDate": "<", "afterDate": ">", "beforeOrOnDate": "<=", "afterOrOnDate": ">="}[operator]
            finest = view.granularities[0] if view.granularities else "day"
            if len(values[0].strip()) > 10 and finest in ("minute", "hour"):  # a time of day, on facts that have one
                return f"{{{{ TimeDimension('metric_time', '{finest}') }}}} {symbol} '{moment:%Y-%m-%d %H:%M:%S}'"
            return f"{ref} {symbol} '{moment.date().isoformat()}'"
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
            column = by_key.get(member) if isinstance(member, str) else None
            if column is None:
                self.catalog.member(member, f"order[{i}]")  # an unknown member says so, with suggestions
                raise QueryError(f"order[{i}]: {member!r} is not among the query's measures and dimensions")
            found.append((column.source, direction == "desc"))
        return found

    def _limit(self, query: dict) -> int:
        limit = query.get("limit")
        if limit is None:
            return self.default_limit
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise QueryError(f"limit: expected a positive integer, got {limit!r}")
        if limit > self.max_limit:
            raise QueryError(f"limit: {limit} is above the maximum of {self.max_limit}")
        return limit

    @staticmethod
    def _offset(query: dict) -> int:
        offset = query.get("offset", 0)
        if offset is None:
            return 0
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise QueryError(f"offset: expected a non-negative integer, got {offset!r}")
        return offset
