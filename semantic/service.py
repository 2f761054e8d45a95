"""The metrics service behind the REST and SQL endpoints: compile with MetricFlow, run, cache.

It reads the current published snapshot (see `snapshots.py`), never the warehouse a run is
writing, so it keeps answering, with one consistent version, while the pipeline runs. When a run
publishes a new snapshot, the next request switches to it; caches are keyed by the snapshot's
data version, so nothing computed on older data is served after the switch.

Compiling a query costs tens of milliseconds of Python, so standard dashboard queries are read
from the snapshot's rollups when one matches (see `rollups.py`), compiled SQL is cached per
(plan, security context) and results per (plan, security context, data version). Identical
queries in flight share one execution.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import orjson
from metricflow.engine.metricflow_engine import MetricFlowEngine, MetricFlowQueryRequest

from semantic import rollups, snapshots
from semantic.cube_query import Plan, QueryError
from semantic.members import Catalog, build_catalog
from semantic.metricflow_engine import DuckDbSqlClient, load_semantic_manifest


class LRU:
    """A small thread-safe least-recently-used map."""

    def __init__(self, size: int):
        self.size, self._data, self._lock = size, OrderedDict(), threading.Lock()

    def get(self, key):
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
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
    """One published snapshot, opened: its connection, MetricFlow engine and member catalog."""

    version: str
    published_at: datetime
    connection: duckdb.DuckDBPyConnection
    engine: MetricFlowEngine
    catalog: Catalog
    rollups: tuple[rollups.Rollup, ...]


@dataclass(frozen=True)
class Result:
    rows: list[dict]
    total: int | None
    data_version: str
    published_at: datetime
    rollup: str | None  # the rollup that answered, if one did


def _published_at(version: str) -> datetime:
    return datetime.strptime(version, "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)


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
    def __init__(self, published_dir: Path, semantic_manifest: Path, workers: int = 4,
                 poll_seconds: float = 0.5, use_rollups: bool = True):
        self.published_dir = published_dir
        self.use_rollups = use_rollups
        self.lookup = load_semantic_manifest(semantic_manifest)
        self.compiled = LRU(4096)
        self.results = LRU(2048)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="metrics")
        self._inflight: dict[tuple, Future] = {}
        self._inflight_lock = threading.Lock()
        self._compile_lock = threading.Lock()
        self._version_lock = threading.Lock()
        self._current: Version | None = None
        self._checked_at = 0.0
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
            latest = snapshots.current(self.published_dir)
            if latest is None:
                raise FileNotFoundError(f"nothing published under {self.published_dir} yet: run the main job")
            if self._current is None or self._current.version != latest.version:
                connection, snapshot = snapshots.connect_current(self.published_dir)
                engine = MetricFlowEngine(semantic_manifest_lookup=self.lookup,
                                          sql_client=DuckDbSqlClient(connection))
                old = self._current
                self._current = Version(snapshot.version, _published_at(snapshot.version), connection, engine,
                                        build_catalog(engine, self.lookup),
                                        rollups.load(connection) if self.use_rollups else ())
                self.results.clear()  # keyed by version too; clearing just frees the memory now
                if old is not None:
                    threading.Timer(60, old.connection.close).start()  # let queries on it finish
            return self._current

    @property
    def catalog(self) -> Catalog:
        return self.current().catalog

    # -- compile and run ---------------------------------------------------------------------
    def compile(self, plan: Plan, context_key: str) -> str:
        """MetricFlow's SQL for the plan's metrics, dimensions and filters, cached per security context."""
        key = (orjson.dumps([plan.metrics, plan.group_by, plan.where]), context_key)
        base = self.compiled.get(key)
        if base is None:
            version = self.current()
            request = MetricFlowQueryRequest.create(metric_names=plan.metrics, group_by_names=plan.group_by,
                                                    where_constraints=plan.where or None)
            try:
                with self._compile_lock:
                    explained = version.engine.explain(request)
            except Exception as exc:  # MetricFlow's own errors say what is wrong with the query
                raise QueryError(_first_lines(str(exc))) from exc
            statement = explained.sql_statement
            if statement.bind_parameter_set.param_dict:
                raise QueryError("the compiled query needs bind parameters, which this server does not pass")
            base = statement.sql
            self.compiled.put(key, base)
        return base

    def base_sql(self, plan: Plan, context_key: str, version: Version) -> tuple[str, str | None]:
        """The SQL that answers the plan, and the rollup it reads if one matches (else MetricFlow's)."""
        matched = rollups.match(plan, version.rollups)
        if matched is not None:
            return matched.sql, matched.rollup
        return self.compile(plan, context_key), None

    def wrapped_sql(self, plan: Plan, base: str) -> str:
        order = ", ".join(f'"{column}" {"desc" if desc else "asc"}' for column, desc in plan.order)
        default_order = ", ".join(f'"{c.source}" asc' for c in plan.columns if c.kind == "time")
        by = order or default_order
        return (f"select * from (\n{base}\n) as metric_query" + (f"\norder by {by}" if by else "")
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
            cursor = version.connection.cursor()
            try:
                _use_timezone(cursor, plan.timezone)
                rows = cursor.execute(sql).fetchall()
                names = [d[0] for d in cursor.description]
                count = cursor.execute(f"select count(*) from ({base}) as q").fetchone()[0] if plan.total else None
            finally:
                cursor.close()
            index = {name: i for i, name in enumerate(names)}
            shaped = [{key_: _cube_value(row[index[c.source]]) for c in plan.columns for key_ in c.keys}
                      for row in rows]
            result = Result(shaped, count, version.version, version.published_at, rollup)
            self.results.put(key, result)
            return result
        finally:
            with self._inflight_lock:
                self._inflight.pop(key, None)

    def sql(self, plan: Plan, context_key: str) -> tuple[str, str | None]:
        """The statement a load of the plan runs now, and the rollup it reads (None for the marts)."""
        base, rollup = self.base_sql(plan, context_key, self.current())
        return self.wrapped_sql(plan, base), rollup

    def dry_run(self, plan: Plan, context_key: str) -> str:
        sql, _ = self.sql(plan, context_key)
        cursor = self.current().connection.cursor()
        try:
            cursor.execute(f"explain {sql}")
        finally:
            cursor.close()
        return sql


def _use_timezone(cursor: duckdb.DuckDBPyConnection, timezone: str) -> None:
    """Days (and weeks, months...) of timestamped facts start at midnight in the query's time zone.

    Their time dimensions are zoned timestamps (see the semantic models), which DuckDB truncates
    in the session's zone; each query runs on its own cursor, so zones never leak between queries.
    """
    try:
        cursor.execute("set TimeZone = '" + timezone.replace("'", "''") + "'")
    except duckdb.Error as exc:
        raise QueryError(f"timezone: {timezone!r} is not a time zone the warehouse knows") from exc


def _plan_key(plan: Plan) -> bytes:
    """Everything about a plan that changes its answer, as bytes to key caches with."""
    return orjson.dumps([plan.metrics, plan.group_by, plan.where, plan.order, plan.limit, plan.offset, plan.total,
                         plan.timezone, [(c.keys, c.source) for c in plan.columns]])


def _first_lines(text: str, lines: int = 6) -> str:
    kept = [line for line in text.splitlines() if line.strip()]
    return "\n".join(kept[:lines])
