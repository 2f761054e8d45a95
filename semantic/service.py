"""The metrics service behind the REST and SQL endpoints: compile with MetricFlow, run, cache.

It reads the current published version (see `publication.py`: DuckDB snapshots or PostgreSQL's
published schemas), never the warehouse a run is writing, so it keeps answering, with one
consistent version, while the pipeline runs. When a run publishes a new version, the next
request switches to it; caches are keyed by the data version, so nothing computed on older data
is served after the switch.

Compiling a query costs tens of milliseconds of Python, so standard dashboard queries are read
from the snapshot's rollups when one matches (see `rollups.py`), compiled SQL is cached per
(plan, security context) and results per (plan, security context, data version). Identical
queries in flight share one execution.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import orjson
import pyarrow as pa
from metricflow.engine.metricflow_engine import MetricFlowEngine, MetricFlowQueryRequest

from semantic import monitoring, rollups
from semantic.cube_query import Plan, QueryError
from semantic.members import TIME_DIMENSION, Catalog, build_catalog, declared_aggregations
from semantic.metricflow_engine import ReaderSqlClient, load_semantic_manifest
from semantic.publication import Publication, Reader
from semantic.warehouse import translate

DAY = f"{TIME_DIMENSION}__day"


class LRU:
    """A small thread-safe least-recently-used map; its hits and misses are counted under `name`
    (`semantic_cache_lookups_total`)."""

    def __init__(self, size: int, name: str = "other"):
        self.size, self._data, self._lock = size, OrderedDict(), threading.Lock()
        self._hit, self._miss = monitoring.cache_counters(name)

    def get(self, key):
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                self._hit.inc()
                return self._data[key]
        self._miss.inc()
        return None

    def put(self, key, value) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


@dataclass(frozen=True)
class Version:
    """One published version, opened: its reader, MetricFlow engine and member catalog."""

    version: str
    published_at: datetime
    reader: Reader
    engine: MetricFlowEngine
    catalog: Catalog
    rollups: tuple[rollups.Rollup, ...]
    tenants: frozenset[str]  # the tenants the published data knows


@dataclass(frozen=True)
class Result:
    rows: list[dict]
    total: int | None
    data_version: str
    published_at: datetime
    rollup: str | None  # the rollup that answered, if one did
    engine: str = "duckdb"  # the engine that holds the published data


@dataclass(frozen=True)
class ResultStream:
    """A plan's rows, read batch by batch as they are consumed (`MetricsService.stream`); `close`
    ends the read (the engine's cursor) whether or not every batch was read."""

    batches: pa.RecordBatchReader  # the engine's columns (MetricFlow's names: `Plan.columns`' sources)
    rows: int | None  # counted before the first batch, when a row limit was checked
    data_version: str
    published_at: datetime
    rollup: str | None
    engine: str
    close: Callable[[], None]


def _cube_value(value):
    """Cube returns numbers as strings and times as local ISO timestamps with milliseconds."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}"
    if isinstance(value, date):
        return value.isoformat() + "T00:00:00.000"
    if isinstance(value, Decimal | float | int):
        return str(value)
    return str(value)


class MetricsService:
    def __init__(self, publication: Publication, semantic_manifest: Path, workers: int = 4,
                 poll_seconds: float = 0.1, use_rollups: bool = True):
        self.publication = publication
        self.use_rollups = use_rollups
        self.lookup = load_semantic_manifest(semantic_manifest, publication.relation)
        self.declared_aggregations = declared_aggregations(semantic_manifest)
        self.compiled = LRU(4096, "compiled_sql")
        self.results = LRU(2048, "results")
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="metrics")
        self._inflight: dict[tuple, Future] = {}
        self._inflight_lock = threading.Lock()
        self._compile_lock = threading.Lock()
        self._version_lock = threading.Lock()
        self._current: Version | None = None
        self._catalog: Catalog | None = None
        self._checked_at = 0.0
        # how stale the version may be: live subscriptions wait on it (reading the pointer is cheap)
        self._poll_seconds = poll_seconds

    # -- versions ---------------------------------------------------------------------------
    def current(self) -> Version:
        """The version to answer from; switches when a newer snapshot has been published."""
        now = time.monotonic()
        current = self._current
        if current is not None and now - self._checked_at < self._poll_seconds:
            return current
        with self._version_lock:
            self._checked_at = now
            latest = self.publication.current()
            if latest is None:
                raise FileNotFoundError("nothing published yet: run the main job")
            if self._current is None or self._current.version != latest.version:
                reader, opened = self.publication.open()
                engine = MetricFlowEngine(semantic_manifest_lookup=self.lookup, sql_client=ReaderSqlClient(reader))
                if self._catalog is None:  # the definitions do not change while the server runs
                    self._catalog = build_catalog(engine, self.lookup, _probe(engine, reader),
                                                  _column_types(self.lookup, reader), self.declared_aggregations)
                old = self._current
                self._current = Version(opened.version, opened.published_at, reader, engine, self._catalog,
                                        rollups.load(reader, self.publication) if self.use_rollups else (),
                                        _tenants(reader, self.publication))
                self.results.clear()  # keyed by version too; clearing just frees the memory now
                if old is not None:
                    # let queries on it finish; a server stopping does not wait for it
                    closing = threading.Timer(60, old.reader.close)
                    closing.daemon = True
                    closing.start()
            return self._current

    @property
    def catalog(self) -> Catalog:
        return self.current().catalog

    # -- compile and run ---------------------------------------------------------------------
    def compile(self, plan: Plan, context_key: str) -> str:
        """MetricFlow's SQL for the plan's metrics, dimensions and filters, cached per security context.

        Rolling-window metrics asked without a time grain are compiled by day and read on the last
        day; the other metrics of the same query are joined to them on the dimensions.
        """
        key = (orjson.dumps([plan.metrics, plan.group_by, plan.where, plan.as_of_last_day]), context_key)
        base = self.compiled.get(key)
        if base is None:
            version = self.current()
            windowed = [m for m in plan.metrics if m in plan.as_of_last_day]
            plain = [m for m in plan.metrics if m not in plan.as_of_last_day]
            parts = []
            if plain:
                parts.append((self._explain(version, plain, plan.group_by, plan.where), plain))
            if windowed:
                daily = self._explain(version, windowed, [*plan.group_by, DAY], plan.where)
                columns = ", ".join(f'"{c}"' for c in [*plan.group_by, *windowed])
                parts.append((f"select {columns} from (select daily.*, max(\"{DAY}\") over () as last_day__ "
                              f"from (\n{daily}\n) as daily) as windowed where \"{DAY}\" = last_day__", windowed))
            base = parts[0][0] if len(parts) == 1 else _joined(parts, plan.group_by)
            self.compiled.put(key, base)
        return base

    def _explain(self, version: Version, metrics: list[str], group_by: list[str], where: list[str]) -> str:
        request = MetricFlowQueryRequest.create(metric_names=metrics, group_by_names=group_by,
                                                where_constraints=where or None)
        try:
            with self._compile_lock:
                explained = version.engine.explain(request)
        except Exception as exc:  # MetricFlow's own errors say what is wrong with the query
            raise QueryError(_first_lines(str(exc))) from exc
        statement = explained.sql_statement
        if statement.bind_parameter_set.param_dict:
            raise QueryError("the compiled query needs bind parameters, which this server does not pass")
        return statement.sql

    def base_sql(self, plan: Plan, context_key: str, version: Version) -> tuple[str, str | None]:
        """The SQL that answers the plan, and the rollup it reads if one matches (else MetricFlow's)."""
        matched = rollups.match(plan, version.rollups)
        if matched is not None:
            return translate(matched.sql, version.reader.engine), matched.rollup
        return self.compile(plan, context_key), None

    def wrapped_sql(self, plan: Plan, base: str) -> str:
        order = ", ".join(f'"{column}" {"desc" if desc else "asc"}' for column, desc in plan.order)
        default_order = ", ".join(f'"{c.source}" asc' for c in plan.columns if c.kind == "time")
        by = order or default_order
        return (f"select * from (\n{base}\n) as metric_query{_having(plan)}" + (f"\norder by {by}" if by else "")
                + f"\nlimit {plan.limit} offset {plan.offset}")

    def submit(self, plan: Plan, context_key: str) -> Future:
        """Run the plan on the current version in a worker thread (compiling there too).

        A cached result, or an identical execution already in flight, is reused.
        """
        version = self.current()
        key = (_plan_key(plan), context_key, version.version)
        cached = self.results.get(key)
        if cached is not None:
            done: Future = Future()
            done.set_result(cached)
            return done
        with self._inflight_lock:
            running = self._inflight.get(key)
            if running is not None:
                return running
            future = self.pool.submit(self._run, version, plan, context_key, key)
            self._inflight[key] = future
        return future

    def _run(self, version: Version, plan: Plan, context_key: str, key: tuple) -> Result:
        try:
            base, rollup = self.base_sql(plan, context_key, version)
            sql = self.wrapped_sql(plan, base)
            started = time.perf_counter()
            names, rows = version.reader.run(sql, timezone=plan.timezone)
            monitoring.record_query(rollup, time.perf_counter() - started)
            count = self._count(version, base, plan) if plan.total else None
            index = {name: i for i, name in enumerate(names)}
            shaped = [{key_: _cube_value(row[index[c.source]]) for c in plan.columns for key_ in c.keys}
                      for row in rows]
            result = Result(shaped, count, version.version, version.published_at, rollup, version.reader.engine)
            self.results.put(key, result)
            return result
        finally:
            with self._inflight_lock:
                self._inflight.pop(key, None)

    @staticmethod
    def _count(version: Version, base: str, plan: Plan) -> int:
        """The rows the plan's query has, before its limit and offset."""
        return version.reader.run(f"select count(*) from ({base}) as metric_query{_having(plan)}",
                                  timezone=plan.timezone)[1][0][0]

    def stream(self, plan: Plan, context_key: str, row_limit: tuple[int, str] | None = None) -> ResultStream:
        """The plan's rows as they are read from the current version, for an export: never cached,
        never all in memory. With a `row_limit` (the most rows, and that limit's name for people),
        the rows are counted first, and more than that many refused (QueryError) before any is read.
        Blocking: call it off the event loop."""
        version = self.current()
        base, rollup = self.base_sql(plan, context_key, version)
        rows = None
        if row_limit is not None:
            rows = max(0, self._count(version, base, plan) - plan.offset)
            # a plan whose limit is the row limit got it by default (a query without one): the rows past it count
            if (rows if plan.limit <= row_limit[0] else min(rows, plan.limit)) > row_limit[0]:
                raise QueryError(f"export: the query's result has {rows:,} rows, above {row_limit[1]}; narrow it "
                                 "(filters, a dateRange, a coarser granularity) or pass a limit")
            rows = min(rows, plan.limit)
        opened = contextlib.ExitStack()
        try:
            batches = opened.enter_context(version.reader.stream(self.wrapped_sql(plan, base),
                                                                 timezone=plan.timezone))
        except BaseException:
            opened.close()
            raise
        return ResultStream(batches, rows, version.version, version.published_at, rollup, version.reader.engine,
                            opened.close)

    def sql(self, plan: Plan, context_key: str) -> tuple[str, str | None]:
        """The statement a load of the plan runs now, and the rollup it reads (None for the marts)."""
        base, rollup = self.base_sql(plan, context_key, self.current())
        return self.wrapped_sql(plan, base), rollup

    def dry_run(self, plan: Plan, context_key: str) -> str:
        sql, _ = self.sql(plan, context_key)
        self.current().reader.run(f"explain {sql}")
        return sql


def _having(plan: Plan) -> str:
    """The filters on measures, on the aggregated rows."""
    return "\nwhere " + " and ".join(f"({c})" for c in plan.having) if plan.having else ""


def _joined(parts: list[tuple[str, list[str]]], group_by: list[str]) -> str:
    """Two result sets of the same dimensions, side by side (a full join on every dimension)."""
    (left, left_metrics), (right, right_metrics) = parts
    dims = [c for c in group_by]
    on = " and ".join(f'a."{d}" is not distinct from b."{d}"' for d in dims) or "true"
    selected = [f'coalesce(a."{d}", b."{d}") as "{d}"' for d in dims]
    selected += [f'a."{m}"' for m in left_metrics] + [f'b."{m}"' for m in right_metrics]
    return f"select {', '.join(selected)}\nfrom (\n{left}\n) as a\nfull outer join (\n{right}\n) as b on {on}"


def _probe(engine: MetricFlowEngine, reader: Reader):
    """Whether MetricFlow compiles a query and the warehouse plans it (catalog building)."""
    def probe(metrics: list[str], group_by: list[str]) -> str | None:
        try:
            explained = engine.explain(MetricFlowQueryRequest.create(metric_names=metrics, group_by_names=group_by))
            reader.run(f"explain {explained.sql_statement.sql}")
        except Exception as exc:  # the reason is logged and the member left out
            return _first_lines(str(exc), 1)
        return None
    return probe


def _column_types(lookup, reader: Reader):
    """Cube's type of a semantic model's column, from the published table's information_schema."""
    models = {m.name: m.node_relation for m in lookup.semantic_manifest.semantic_models}
    cache: dict[str, dict[str, str]] = {}

    def column_type(model: str, column: str) -> str:
        relation = models.get(model)
        if relation is None:
            return "string"
        if model not in cache:
            _, rows = reader.run("select column_name, data_type from information_schema.columns "
                                 f"where table_schema = '{relation.schema_name}' and table_name = '{relation.alias}'")
            cache[model] = {name.lower(): kind.lower() for name, kind in rows}
        kind = cache[model].get(column.strip().strip('"').lower(), "")
        if "bool" in kind:
            return "boolean"
        if any(t in kind for t in ("int", "numeric", "decimal", "double", "real", "float")):
            return "number"
        if "date" in kind or "time" in kind:
            return "time"
        return "string"
    return column_type


def _tenants(reader: Reader, publication: Publication) -> frozenset[str]:
    _, rows = reader.run(f"select tenant_id from {publication.qualified('marts', 'dim_tenants')}")
    return frozenset(tenant for (tenant,) in rows)


def _plan_key(plan: Plan) -> bytes:
    """Everything about a plan that changes its answer, as bytes to key caches with."""
    return orjson.dumps([plan.metrics, plan.group_by, plan.where, plan.order, plan.limit, plan.offset, plan.total,
                         plan.timezone, [(c.keys, c.source) for c in plan.columns], plan.having, plan.as_of_last_day,
                         plan.row_key])


def _first_lines(text: str, lines: int = 6) -> str:
    kept = [line for line in text.splitlines() if line.strip()]
    return "\n".join(kept[:lines])
