"""One client session of the SQL endpoint: its statements, settings, transaction state and cursors.

Statements are of three kinds. Session statements (SET, SHOW, RESET, DISCARD, BEGIN, COMMIT,
ROLLBACK, SAVEPOINT, DECLARE, FETCH, MOVE, CLOSE, DEALLOCATE) are answered here, as PostgreSQL
answers them: settings are kept per session and visible to `current_setting()` and pg_settings;
`BEGIN` opens a transaction block that an error aborts until ROLLBACK; cursors hold their rows
until fetched or closed. Queries that read the served tables are planned by `sql_api.py` into Cube
queries, run by the metrics service under the session's security context, and finished in the
session's DuckDB connection; all other queries (catalog, constants like `SELECT 1 AS x`,
`current_database()`) run on the emulated catalog (`pg_catalog.py`). Anything that would write is
refused: the endpoint is read-only.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import duckdb
import pyarrow
from sqlglot import exp

from semantic import pg_types
from semantic.auth import SecurityContext
from semantic.cube_query import QueryError, Translator
from semantic.members import UnknownMember
from semantic.pg_catalog import SERVER_VERSION, CatalogDatabase
from semantic.pg_sql import SqlError, duckdb_sql, name_outputs, parse, to_duckdb
from semantic.pg_types import PgType
from semantic.sql_api import Planned, Planner, SemanticQuery
from semantic.sql_parameters import infer_parameter_types, literal, parameter_index, stand_in
from semantic.sql_tables import Table

ROW_LIMIT = 1_000_000  # rows one Cube query of the SQL endpoint may return
_NUMERIC_SCALE = Decimal("1e-10")
DEFAULT_SETTINGS = {
    "server_version": SERVER_VERSION, "server_version_num": "150000", "server_encoding": "UTF8",
    "client_encoding": "UTF8", "DateStyle": "ISO, MDY", "IntervalStyle": "postgres", "TimeZone": "UTC",
    "integer_datetimes": "on", "standard_conforming_strings": "on", "search_path": '"$user", public',
    "transaction_isolation": "read committed", "default_transaction_isolation": "read committed",
    "transaction_read_only": "on", "default_transaction_read_only": "on", "application_name": "",
    "extra_float_digits": "1", "max_identifier_length": "63", "max_index_keys": "32", "lc_collate": "C.UTF-8",
    "lc_ctype": "C.UTF-8", "lc_messages": "C.UTF-8", "lc_monetary": "C.UTF-8", "lc_numeric": "C.UTF-8",
    "lc_time": "C.UTF-8", "is_superuser": "off", "statement_timeout": "0", "bytea_output": "hex",
    "default_table_access_method": "heap", "block_size": "8192", "max_connections": "100",
    "client_min_messages": "notice", "row_security": "on", "datestyle": "ISO, MDY",
}
REPORTED = ("server_version", "server_encoding", "client_encoding", "DateStyle", "TimeZone", "integer_datetimes",
            "standard_conforming_strings", "IntervalStyle", "application_name", "is_superuser")
_WRITES = {"insert", "update", "delete", "merge", "create", "drop", "alter", "truncate", "copy", "grant", "revoke",
           "vacuum", "analyze", "cluster", "reindex", "comment", "lock", "call", "do", "refresh", "import",
           "security", "reassign", "load", "checkpoint"}
_QUERY_WORDS = {"select", "with", "values", "table"}
_SET = re.compile(r"^set\s+(?:(session|local)\s+)?(.+)$", re.I | re.S)
_ASSIGN = re.compile(r"^([A-Za-z_][\w.]*|\"[^\"]+\")\s*(?:=|\s+to\s+)\s*(.+)$", re.I | re.S)
_DECLARE = re.compile(r"^declare\s+(\"(?:[^\"]|\"\")+\"|\w+)\s+((?:binary\s+|insensitive\s+|asensitive\s+|"
                      r"no\s+scroll\s+|scroll\s+)*)cursor\s+(?:(with|without)\s+hold\s+)?for\s+(.+)$", re.I | re.S)
_FETCH = re.compile(r"^(fetch|move)\s+(?:(next|prior|first|last|all|forward\s+all|forward\s+\d+|forward|"
                    r"backward\s+all|backward\s+\d+|backward|absolute\s+-?\d+|relative\s+-?\d+|-?\d+)\s+)?"
                    r"(?:(?:from|in)\s+)?(\"(?:[^\"]|\"\")+\"|\w+)\s*$", re.I | re.S)
_EXPLAIN = re.compile(r"^explain\s+(?:\((?:[^()]*)\)\s*|(?:analyze|analyse|verbose|costs|buffers)\s+)*(.+)$",
                      re.I | re.S)


@dataclass
class Result:
    """A statement's outcome: its columns (None for commands), rows, and command tag."""

    columns: list[tuple[str, PgType]] | None
    rows: list[tuple] = field(default_factory=list)
    tag: str = "SELECT 0"


@dataclass
class Cursor:
    name: str
    columns: list[tuple[str, PgType]]
    rows: list[tuple]
    holdable: bool
    position: int = 0


@dataclass(frozen=True)
class Prepared:
    """A statement as the extended protocol prepared it."""

    text: str
    keyword: str
    tree: exp.Expression | None  # queries only
    parameter_types: tuple[int, ...]


def _identifier(text: str) -> str:
    text = text.strip()
    return text[1:-1].replace('""', '"') if text.startswith('"') else text.lower()


class Session:
    """The statements of one connection, run one at a time (the protocol layer calls from a thread)."""

    def __init__(self, service, context: SecurityContext, database: str, user: str, backend_pid: int,
                 startup: dict[str, str], catalogs, now: datetime | None = None):
        self.service, self.context, self.database, self.user = service, context, database, user
        self.backend_pid, self.catalogs, self.now = backend_pid, catalogs, now
        self.settings = dict(DEFAULT_SETTINGS)
        for name, value in startup.items():
            if name not in ("user", "database", "options", "replication"):
                self.settings[self._canonical(name)] = value
        self.in_transaction = self.failed = False
        self.cursors: dict[str, Cursor] = {}
        self._catalog: CatalogDatabase | None = None
        self._conn: duckdb.DuckDBPyConnection | None = None
        self._cancelled = threading.Event()
        self.on_deallocate = None  # set by the protocol layer: DEALLOCATE and DISCARD drop prepared statements

    # -- the session's DuckDB connection -------------------------------------------------------
    @property
    def tables(self) -> dict[str, Table]:
        return self.connection()[0].tables

    def connection(self) -> tuple[CatalogDatabase, duckdb.DuckDBPyConnection]:
        catalog = self.catalogs.get()
        if catalog is not self._catalog:
            if self._conn is not None:
                self._conn.close()
            self._conn = catalog.connect(self.database, self.user, self.backend_pid, self.settings, self.now)
            self._catalog = catalog
            self._apply_timezone()
        return self._catalog, self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def cancel(self) -> None:
        self._cancelled.set()
        if self._conn is not None:
            self._conn.interrupt()

    @property
    def status(self) -> bytes:
        """ReadyForQuery's transaction status."""
        return b"E" if self.failed else b"T" if self.in_transaction else b"I"

    # -- statements ----------------------------------------------------------------------------
    def prepare(self, text: str, keyword: str, parameter_types: tuple[int, ...] = ()) -> Prepared:
        tree = parse(text) if keyword in _QUERY_WORDS or text.startswith("(") else None
        return Prepared(text, keyword, tree, parameter_types)

    def execute(self, prepared: Prepared, parameters: list | None = None, describe_only: bool = False) -> Result:
        """Run one statement (or, with describe_only, find its result columns without running it)."""
        self._cancelled.clear()
        keyword = prepared.keyword
        if self.failed and not self._ends_transaction(prepared.text):
            raise SqlError("current transaction is aborted, commands ignored until end of transaction block",
                           "25P02")
        try:
            if prepared.tree is not None:
                return self._query(prepared.tree, parameters or [], prepared.parameter_types, describe_only)
            if describe_only and keyword not in ("show", "fetch", "explain", "declare"):
                return Result(None)
            return self._command(prepared, parameters or [], describe_only)
        except (SqlError, duckdb.Error, QueryError, UnknownMember):
            if self.in_transaction and not describe_only:
                self.failed = True
            raise

    def _ends_transaction(self, text: str) -> bool:
        return re.match(r"^\s*(rollback|abort|commit|end)\b", text, re.I) is not None

    def _command(self, prepared: Prepared, parameters: list, describe_only: bool) -> Result:
        text, keyword = prepared.text.strip(), prepared.keyword
        if keyword in _WRITES:
            raise SqlError(f"only SELECT is allowed here, not {keyword.upper()}: the SQL endpoint is read-only",
                           "25006")
        handler = {"set": self._set, "reset": self._reset, "show": self._show, "discard": self._discard,
                   "begin": self._begin, "start": self._begin, "commit": self._commit, "end": self._commit,
                   "rollback": self._rollback, "abort": self._rollback, "savepoint": self._savepoint,
                   "release": self._release, "deallocate": self._deallocate, "close": self._close,
                   "explain": self._explain}.get(keyword)
        if keyword == "declare":
            return self._declare(text, parameters, prepared.parameter_types, describe_only)
        if keyword in ("fetch", "move"):
            return self._fetch(text, describe_only)
        if handler is None:
            raise SqlError(f"{keyword.upper() or text[:20]!r} is not supported by the SQL endpoint", "0A000")
        return handler(text) if keyword != "explain" else self._explain(text, parameters, prepared.parameter_types,
                                                                         describe_only)

    # -- settings --------------------------------------------------------------------------------
    def _canonical(self, name: str) -> str:
        lowered = name.lower()
        return next((known for known in self.settings if known.lower() == lowered), lowered) \
            if hasattr(self, "settings") else next((k for k in DEFAULT_SETTINGS if k.lower() == lowered), lowered)

    def _set(self, text: str) -> Result:
        match = _SET.match(text.rstrip(";"))
        body = match.group(2).strip() if match else ""
        lowered = body.lower()
        if lowered.startswith(("characteristics", "session characteristics", "transaction", "role", "authorization",
                               "session authorization", "constraints")):
            return Result(None, tag="SET")
        if lowered.startswith("time zone"):
            name, value = "TimeZone", body[len("time zone"):].strip()
        elif lowered.startswith("names"):
            name, value = "client_encoding", body[len("names"):].strip()
        else:
            assign = _ASSIGN.match(body)
            if assign is None:
                raise SqlError(f"syntax error in SET: {text!r}")
            name, value = _identifier(assign.group(1)), assign.group(2).strip()
        value = self._setting_value(name, value)
        self._store(self._canonical(name), value)
        return Result(None, tag="SET")

    def _setting_value(self, name: str, raw: str) -> str:
        parts = [p.strip() for p in re.findall(r"'(?:[^']|'')*'|\"[^\"]*\"|[^,]+", raw)]
        values = [p[1:-1].replace("''", "'") if p.startswith("'") else p for p in parts]
        value = ", ".join(values)
        if value.lower() == "default":
            return DEFAULT_SETTINGS.get(self._canonical(name), "")
        if name.lower() == "timezone":
            value = self._timezone(value)
        if name.lower() == "client_encoding" and value.upper().replace("-", "") not in ("UTF8", "UNICODE"):
            raise SqlError(f'invalid value for parameter "client_encoding": "{value}": the endpoint speaks UTF8',
                           "22023")
        return value

    @staticmethod
    def _timezone(value: str) -> str:
        if value.lower() in ("local", "default"):
            return "UTC"
        if re.fullmatch(r"[+-]?\d{1,2}(:\d\d)?", value):
            hours = value.split(":")[0]
            return f"Etc/GMT{'-' if not hours.startswith('-') else '+'}{abs(int(hours))}" if int(hours) else "UTC"
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise SqlError(f'invalid value for parameter "TimeZone": "{value}"', "22023") from None
        return value

    def _store(self, name: str, value: str) -> None:
        self.settings[name] = value
        if self._conn is not None:
            CatalogDatabase.set(self._conn, name, value)
            if name == "TimeZone":
                self._apply_timezone()

    def _apply_timezone(self) -> None:
        self._conn.execute(f"SET TimeZone = '{self.settings['TimeZone']}'")

    def _reset(self, text: str) -> Result:
        name = text.split(None, 1)[1].strip().rstrip(";") if len(text.split()) > 1 else ""
        if name.lower() == "all":
            for key, value in DEFAULT_SETTINGS.items():
                self._store(key, value)
        else:
            key = self._canonical(_identifier(name))
            self._store(key, DEFAULT_SETTINGS.get(key, ""))
        return Result(None, tag="RESET")

    def _show(self, text: str) -> Result:
        name = re.sub(r"\s+", " ", text.split(None, 1)[1].strip().rstrip(";")) if len(text.split()) > 1 else ""
        lowered = name.lower()
        if lowered == "all":
            rows = [(k, v, "") for k, v in sorted(self.settings.items(), key=lambda kv: kv[0].lower())]
            return Result([("name", pg_types.TEXT), ("setting", pg_types.TEXT), ("description", pg_types.TEXT)],
                          rows, f"SHOW {len(rows)}")
        key = {"transaction isolation level": "transaction_isolation", "time zone": "TimeZone",
               "session authorization": "session_authorization"}.get(lowered, _identifier(name))
        if key == "session_authorization":
            return Result([(key, pg_types.TEXT)], [(self.user,)], "SHOW")
        canonical = self._canonical(key)
        if canonical not in self.settings:
            raise SqlError(f'unrecognized configuration parameter "{name}"', "42704")
        return Result([(canonical if canonical != "TimeZone" else "TimeZone", pg_types.TEXT)],
                      [(self.settings[canonical],)], "SHOW")

    def _discard(self, text: str) -> Result:
        what = text.split(None, 1)[1].strip().lower().rstrip(";") if len(text.split()) > 1 else ""
        if what in ("all", "plans", "temp", "temporary", "sequences"):
            if what == "all":
                for key, value in DEFAULT_SETTINGS.items():
                    self._store(key, value)
                self.cursors.clear()
                if self.on_deallocate:
                    self.on_deallocate(None)
            return Result(None, tag=f"DISCARD {what.upper()}")
        raise SqlError(f"syntax error in DISCARD: {text!r}")

    def _deallocate(self, text: str) -> Result:
        name = re.sub(r"^deallocate\s+(prepare\s+)?", "", text.strip().rstrip(";"), flags=re.I).strip()
        if self.on_deallocate:
            self.on_deallocate(None if name.lower() == "all" else _identifier(name))
        return Result(None, tag="DEALLOCATE ALL" if name.lower() == "all" else "DEALLOCATE")

    # -- transactions ----------------------------------------------------------------------------
    def _begin(self, text: str) -> Result:
        self.in_transaction = True
        return Result(None, tag="BEGIN" if text.lower().startswith("begin") else "START TRANSACTION")

    def _end(self) -> None:
        self.in_transaction = self.failed = False
        self.cursors = {k: c for k, c in self.cursors.items() if c.holdable}

    def _commit(self, text: str) -> Result:
        tag = "ROLLBACK" if self.failed else "COMMIT"
        self._end()
        return Result(None, tag=tag)

    def _rollback(self, text: str) -> Result:
        if re.match(r"^rollback\s+(work\s+|transaction\s+)?to\b", text, re.I):
            self.failed = False
            return Result(None, tag="ROLLBACK")
        self._end()
        return Result(None, tag="ROLLBACK")

    def _savepoint(self, text: str) -> Result:
        return Result(None, tag="SAVEPOINT")

    def _release(self, text: str) -> Result:
        return Result(None, tag="RELEASE")

    # -- cursors ---------------------------------------------------------------------------------
    def _declare(self, text: str, parameters: list, types: tuple[int, ...], describe_only: bool) -> Result:
        match = _DECLARE.match(text.rstrip(";").strip())
        if match is None:
            raise SqlError(f"syntax error in DECLARE: {text[:80]!r}")
        name, options, hold, query = match.groups()
        name = _identifier(name)
        if "scroll" in options.lower() and "no" not in options.lower():
            raise SqlError("SCROLL cursors are not supported: fetch forward", "0A000")
        holdable = (hold or "").lower() == "with"
        if not self.in_transaction and not holdable:
            raise SqlError("DECLARE CURSOR can only be used in transaction blocks", "25P01")
        if name in self.cursors and not describe_only:
            raise SqlError(f'cursor "{name}" already exists', "42P03")
        result = self._query(parse(query), parameters, types, describe_only)
        if not describe_only:
            self.cursors[name] = Cursor(name, result.columns or [], result.rows, holdable)
        return Result(None, tag="DECLARE CURSOR")

    def _fetch(self, text: str, describe_only: bool) -> Result:
        match = _FETCH.match(text.rstrip(";").strip())
        if match is None:
            raise SqlError(f"syntax error in {text.split()[0].upper()}: {text[:80]!r}")
        verb, direction, name = match.groups()
        cursor = self.cursors.get(_identifier(name))
        if cursor is None:
            raise SqlError(f'cursor "{_identifier(name)}" does not exist', "34000")
        direction = re.sub(r"\s+", " ", (direction or "next").lower())
        if direction in ("all", "forward all"):
            count = len(cursor.rows)
        elif direction in ("next", "forward"):
            count = 1
        elif re.fullmatch(r"(forward )?\d+", direction):
            count = int(direction.split()[-1])
        else:
            raise SqlError(f"cursor can only scan forward: FETCH {direction.upper()} is not supported", "55000")
        if describe_only:
            return Result(cursor.columns if verb.lower() == "fetch" else None, tag="FETCH 0")
        rows = cursor.rows[cursor.position:cursor.position + count]
        cursor.position += len(rows)
        if verb.lower() == "move":
            return Result(None, tag=f"MOVE {len(rows)}")
        return Result(cursor.columns, rows, f"FETCH {len(rows)}")

    def _close(self, text: str) -> Result:
        name = text.split(None, 1)[1].strip().rstrip(";") if len(text.split()) > 1 else ""
        if name.lower() == "all":
            self.cursors.clear()
        elif self.cursors.pop(_identifier(name), None) is None:
            raise SqlError(f'cursor "{_identifier(name)}" does not exist', "34000")
        return Result(None, tag="CLOSE CURSOR")

    # -- queries ---------------------------------------------------------------------------------
    def _explain(self, text: str, parameters: list, types: tuple[int, ...], describe_only: bool) -> Result:
        match = _EXPLAIN.match(text.strip().rstrip(";"))
        if match is None:
            raise SqlError(f"syntax error in EXPLAIN: {text[:80]!r}")
        tree = self.bind(parse(match.group(1)), parameters, types, describe=describe_only)
        columns = [("QUERY PLAN", pg_types.TEXT)]
        if describe_only:
            return Result(columns, tag="EXPLAIN")
        catalog, conn = self.connection()
        planner = Planner(catalog.tables, self._constant, self.database)
        lines: list[str] = []
        if planner.references_served(tree):
            planned = planner.plan(tree)
            for query in planned.queries:
                plan = self._cube_plan(query)
                lines.append(f"{query.name}: Cube query on {query.table.name}: {json.dumps(query.query)}")
                sql, rollup = self.service.sql(plan, self.context.cache_key)
                lines.append(f"  answered from rollup {rollup}" if rollup else "  MetricFlow SQL:")
                lines += ["    " + line for line in sql.splitlines()]
            lines.append("Finished in DuckDB: " + self._duckdb_tree(planned.tree, planned.queries).sql("duckdb"))
        else:
            lines.append("Catalog query in DuckDB: " + self._duckdb_tree(tree, []).sql("duckdb"))
        return Result(columns, [(line,) for line in lines], "EXPLAIN")

    def parameter_types(self, prepared: Prepared) -> list[int]:
        """The OIDs of the statement's parameters: declared by the client, else inferred."""
        tree = prepared.tree
        if tree is None and prepared.keyword in ("declare", "explain"):
            match = (_DECLARE if prepared.keyword == "declare" else _EXPLAIN).match(prepared.text.strip().rstrip(";"))
            tree = parse(match.group(match.lastindex)) if match else None
        if tree is None:
            return list(prepared.parameter_types)
        return infer_parameter_types(tree, self.tables, prepared.parameter_types)

    def bind(self, tree: exp.Expression, parameters: list, types: tuple[int, ...], describe: bool) -> exp.Expression:
        """`$n` replaced by the bound values (by type-appropriate stand-ins, to describe a statement)."""
        placeholders = [p for p in tree.find_all(exp.Parameter, exp.Placeholder)]
        if not placeholders:
            return tree
        tree = tree.copy()
        inferred = infer_parameter_types(tree, self.tables, types)
        for node in list(tree.find_all(exp.Parameter, exp.Placeholder)):
            index = parameter_index(node)
            if index is None:
                raise SqlError(f"unsupported parameter marker {node.sql('postgres')}; use $1, $2, ...", "42601")
            oid = inferred[index - 1] if index - 1 < len(inferred) else pg_types.TEXT.oid
            if describe:
                value = stand_in(oid)
            elif index - 1 < len(parameters):
                value = parameters[index - 1]
            else:
                raise SqlError(f"there is no parameter ${index}", "42P02")
            node.replace(literal(value, oid))
        return tree

    def _query(self, tree: exp.Expression, parameters: list, types: tuple[int, ...], describe_only: bool) -> Result:
        tree = self.bind(tree, parameters, types, describe=describe_only)
        catalog, conn = self.connection()
        planner = Planner(catalog.tables, self._constant, self.database)
        queries: list[SemanticQuery] = []
        if planner.references_served(tree):
            planned: Planned = planner.plan(tree)
            queries = planned.queries
            for query in queries:
                self._register(conn, query, [] if describe_only or planned.limit_zero or query.limit == 0
                               else self._run(query))
            final = self._duckdb_tree(planned.tree, queries)
        else:
            name_outputs(tree)
            final = to_duckdb(tree, catalog.relations, self.database)
        timeout = self._timeout()
        timer = threading.Timer(timeout, conn.interrupt) if timeout else None
        try:
            if timer is not None:
                timer.start()
            cursor = conn.execute(duckdb_sql(final))
            rows = [] if describe_only else cursor.fetchall()
            description = cursor.description or []
        except duckdb.InterruptException:
            why = "user request" if self._cancelled.is_set() else "statement timeout"
            raise SqlError(f"canceling statement due to {why}", "57014") from None
        except duckdb.Error as exc:
            raise _duckdb_error(exc) from None
        finally:
            if timer is not None:
                timer.cancel()
            for query in queries:
                conn.unregister(query.name)
        columns = [(d[0], pg_types.from_duckdb(d[1])) for d in description]
        return Result(columns, rows, f"SELECT {len(rows)}")

    def _duckdb_tree(self, tree: exp.Expression, queries: list[SemanticQuery]) -> exp.Expression:
        catalog, _ = self.connection()
        relations = {**catalog.relations, **{("public", q.name): q.name for q in queries}}
        name_outputs(tree)
        return to_duckdb(tree, relations, self.database)

    def _constant(self, node: exp.Expression):
        """A constant expression's value, computed by DuckDB in this session (time zone, now)."""
        catalog, conn = self.connection()
        if any(True for _ in node.find_all(exp.Column)):
            raise SqlError(f"{node.sql('postgres')}: expected a constant value", "0A000")
        select = to_duckdb(exp.select(node.copy()), catalog.relations, self.database)
        try:
            return conn.execute(duckdb_sql(select)).fetchone()[0]
        except duckdb.Error as exc:
            raise _duckdb_error(exc) from None

    def _cube_plan(self, query: SemanticQuery):
        try:
            plan = Translator(self.service.catalog, self.context.tenant_id).plan(
                {**query.query, "timezone": self._query_timezone()})
        except (QueryError, UnknownMember) as exc:
            raise SqlError(f"{query.table.name}: {exc}", "42P10") from None
        return replace(plan, limit=query.limit if query.limit is not None else ROW_LIMIT + 1)

    def _timeout(self) -> float | None:
        """statement_timeout in seconds (PostgreSQL's milliseconds, or with a unit), None for none."""
        raw = self.settings.get("statement_timeout", "0").strip().lower()
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms|s|min|h)?", raw)
        if match is None:
            return None
        seconds = float(match.group(1)) * {"ms": 0.001, None: 0.001, "s": 1, "min": 60, "h": 3600}[match.group(2)]
        return seconds or None

    def _query_timezone(self) -> str:
        zone = self.settings.get("TimeZone", "UTC")
        return "UTC" if zone.upper() in ("UTC", "ETC/UTC", "GMT") else zone

    def _run(self, query: SemanticQuery) -> list[dict]:
        plan = self._cube_plan(query)
        future = self.service.submit(plan, self.context.cache_key)
        try:
            result = future.result(timeout=self._timeout())
        except TimeoutError:
            raise SqlError("canceling statement due to statement timeout", "57014") from None
        except (QueryError, UnknownMember) as exc:
            raise SqlError(f"{_describe(query)}: {exc}", "42803") from None
        except duckdb.ConversionException as exc:
            raise SqlError(f"{_describe(query)}: invalid input: {str(exc).splitlines()[0]}", "22P02") from None
        if self._cancelled.is_set():
            raise SqlError("canceling statement due to user request", "57014")
        if query.limit is None and len(result.rows) > ROW_LIMIT:
            raise SqlError(f"{_describe(query)} has more than {ROW_LIMIT:,} rows: add filters, a coarser GROUP BY "
                           "or a LIMIT", "54000")
        return result.rows

    @staticmethod
    def _register(conn: duckdb.DuckDBPyConnection, query: SemanticQuery, rows: list[dict]) -> None:
        arrays = {}
        for name, key, pg_type in query.columns:
            values = [_arrow_value(row.get(key), pg_type) for row in rows]
            arrays[name] = pyarrow.array(values, type=_ARROW.get(pg_type.oid, pyarrow.string()))
        if not arrays:
            arrays["_"] = pyarrow.array([None] * len(rows), type=pyarrow.bool_())
        conn.register(query.name, pyarrow.table(arrays))


_ARROW = {pg_types.NUMERIC.oid: pyarrow.decimal128(38, 10), pg_types.INT8.oid: pyarrow.int64(),
          pg_types.FLOAT8.oid: pyarrow.float64(), pg_types.BOOL.oid: pyarrow.bool_(),
          pg_types.DATE.oid: pyarrow.date32(), pg_types.TIMESTAMP.oid: pyarrow.timestamp("us")}


def _arrow_value(value, pg_type: PgType):
    """A value of a Cube-shaped result (numbers as strings, times as ISO strings) as its column's type."""
    if value is None:
        return None
    if pg_type is pg_types.NUMERIC:
        return Decimal(str(value)).quantize(_NUMERIC_SCALE)
    if pg_type is pg_types.INT8:
        return int(Decimal(str(value)))
    if pg_type is pg_types.FLOAT8:
        return float(value)
    if pg_type is pg_types.BOOL:
        return value if isinstance(value, bool) else str(value).lower() in ("true", "t", "1")
    if pg_type is pg_types.DATE:
        return date.fromisoformat(str(value)[:10])
    if pg_type is pg_types.TIMESTAMP:
        return datetime.fromisoformat(str(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _describe(query: SemanticQuery) -> str:
    parts = [m.split(".", 1)[1] for m in query.query.get("measures", [])]
    parts += [m.split(".", 1)[1] for m in query.query.get("dimensions", [])]
    parts += [f"{t['dimension'].split('.', 1)[1]} by {t['granularity']}" for t in query.query.get("timeDimensions", [])]
    return f"{query.table.name} ({', '.join(parts)})"


def _duckdb_error(exc: duckdb.Error) -> SqlError:
    message = str(exc).splitlines()[0]
    message = re.sub(r"^(\w+ )?Error: ", "", message)
    if isinstance(exc, duckdb.CatalogException):
        code = "42883" if "Function" in message else "42P01"
    elif isinstance(exc, duckdb.BinderException):
        code = "42703" if "column" in message.lower() else "42804"
    elif isinstance(exc, duckdb.ConversionException):
        code = "22P02"
    elif isinstance(exc, duckdb.OutOfRangeException):
        code = "22003"
    elif isinstance(exc, duckdb.ParserException):
        code = "42601"
    elif isinstance(exc, duckdb.PermissionException):
        code = "42501"
    elif isinstance(exc, duckdb.OutOfMemoryException):
        code = "53200"
    else:
        code = "XX000"
    return SqlError(message, code)
