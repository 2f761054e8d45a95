"""The SQL endpoint for BI tools: PostgreSQL's wire protocol (version 3) over the governed metrics.

`python -m semantic.pgwire --port 15432`, then for instance
`PGPASSWORD=<token> psql -h 127.0.0.1 -p 15432 -U any -d metrics -c "select tenant, revenue from metrics"`.

The password is the same JWT the REST API takes, so the same tenancy applies. This module is the
protocol only: startup and authentication, the simple query protocol (psql, psycopg2), the
extended one (Parse/Bind/Describe/Execute/Sync: psycopg 3, pgjdbc, asyncpg) with typed parameters
and results in text or binary per column, portals run in batches (`Execute` with a row limit, as
pgjdbc's fetch size does), cancel requests, and errors: every failure a statement meets is sent as
an ErrorResponse with its SQLSTATE, and the connection stays usable (in the extended protocol,
messages up to the next Sync are skipped, as PostgreSQL does). What statements mean is
`sql_session.py`'s.

Hand-written because no maintained Python library serves this protocol here: buenavista (PyPI) maps
bound parameters and COMMIT wrongly and depends on a DuckDB API that is gone; riffq has no wheel
for this platform. Types are encoded with psycopg's adapters (`pg_types.py`).

TLS: with `SEMANTIC_TLS_CERT_FILE`/`SEMANTIC_TLS_KEY_FILE` set, an SSLRequest is answered `S` and the
connection upgraded (libpq's `sslmode=require` and up, pgjdbc's `ssl=true`), and a startup without
TLS is refused (28000), as the password is a token; without them, `N` (bind it to loopback). Each
statement is held to its token's rate limit (53400 past it, the connection stays open), counted in
the metrics (`monitoring.py`, on the HTTP port `SEMANTIC_SQL_METRICS_PORT`) and logged with its
rows in the audit log (`audit.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import secrets
import ssl
import struct
import threading
import time
from dataclasses import dataclass

import uvicorn

from semantic import monitoring, pg_types
from semantic.audit import AuditLog, clipped, who
from semantic.auth import AuthError, authenticate
from semantic.limits import SESSION_CONTROL, TokenLimits
from semantic.pg_catalog import Catalogs
from semantic.pg_sql import SqlError, Statement, split
from semantic.settings import SHUTDOWN_SECONDS, ServingSettings, SettingsError, stop_on_sigterm
from semantic.sql_session import REPORTED, Prepared, Result, Session
from semantic.sql_tables import tables

SSL_REQUEST, GSSENC_REQUEST, CANCEL_REQUEST, PROTOCOL_3 = 80877103, 80877104, 80877102, 196608
MAX_MESSAGE = 64 * 1024 * 1024  # larger messages are read past and refused
log = logging.getLogger(__name__)


def _message(kind: bytes, payload: bytes = b"") -> bytes:
    return kind + struct.pack("!I", len(payload) + 4) + payload


def _cstring(text: str) -> bytes:
    return text.encode() + b"\x00"


def error_response(message: str, code: str, severity: str = "ERROR", hint: str | None = None) -> bytes:
    fields = b"S" + _cstring(severity) + b"V" + _cstring(severity) + b"C" + _cstring(code) + b"M" + _cstring(message)
    if hint:
        fields += b"H" + _cstring(hint)
    return _message(b"E", fields + b"\x00")


def row_description(columns: list[tuple[str, pg_types.PgType]], formats: list[int]) -> bytes:
    body = struct.pack("!H", len(columns))
    for (name, pg_type), fmt in zip(columns, formats, strict=True):
        size = {16: 1, 20: 8, 21: 2, 23: 4, 26: 4, 700: 4, 701: 8, 1082: 4, 1114: 8, 1184: 8}.get(pg_type.oid, -1)
        body += _cstring(name) + struct.pack("!IhIhih", 0, 0, pg_type.oid, size, -1, fmt)
    return _message(b"T", body)


def data_row(values: tuple, columns: list[tuple[str, pg_types.PgType]], formats: list[int]) -> bytes:
    parts = [struct.pack("!H", len(values))]
    for value, (_, pg_type), fmt in zip(values, columns, formats, strict=True):
        encoded = pg_types.encode(value, pg_type, fmt == 1)
        parts.append(struct.pack("!i", -1) if encoded is None else struct.pack("!i", len(encoded)) + encoded)
    return _message(b"D", b"".join(parts))


def _formats(requested: list[int], count: int) -> list[int]:
    if not requested:
        return [0] * count
    if len(requested) == 1:
        return requested * count
    if len(requested) != count:
        raise SqlError(f"bind message has {len(requested)} result formats but query has {count} columns", "08P01")
    return requested


@dataclass
class Portal:
    prepared: Prepared
    parameters: list
    result_formats: list[int]
    result: Result | None = None
    position: int = 0


class Registry:
    """What the server's connections share: open sessions by (process id, secret key), for cancel
    requests; the TLS context, the per-token rate limits and the audit log."""

    def __init__(self, settings: ServingSettings | None = None):
        self.sessions: dict[tuple[int, int], Session] = {}
        self.ids = itertools.count(1000)
        self.tls = settings.tls.server_context() if settings is not None and settings.tls else None
        self.limits = TokenLimits(settings.rate_limit if settings is not None else ())
        self.audit = AuditLog(settings.audit_dir if settings is not None else None)


class Connection:
    """One client connection: startup, authentication, then messages until it says goodbye."""

    def __init__(self, service, catalogs: Catalogs, settings: ServingSettings, registry: Registry,
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.service, self.catalogs, self.settings, self.registry = service, catalogs, settings, registry
        self.reader, self.writer = reader, writer
        self.session: Session | None = None
        self.statements: dict[str, Prepared] = {}
        self.portals: dict[str, Portal] = {}
        self.key = (next(registry.ids), secrets.randbits(31))
        self.token: str | None = None
        self.context = None
        self.client = (writer.get_extra_info("peername") or ("?",))[0]

    async def _read(self, size: int) -> bytes:
        return await self.reader.readexactly(size)

    async def _startup(self) -> dict[str, str] | None:
        while True:
            (length,) = struct.unpack("!I", await self._read(4))
            if not 8 <= length <= 10_000:
                self.writer.write(error_response("invalid startup packet length", "08P01", "FATAL"))
                return None
            body = await self._read(length - 4)
            (code,) = struct.unpack("!I", body[:4])
            if code == SSL_REQUEST and self.registry.tls is not None and not self.encrypted:
                self.writer.write(b"S")
                await self.writer.drain()
                await self.writer.start_tls(self.registry.tls)
                monitoring.SQL_CONNECTIONS.labels("tls").inc()
                continue
            if code in (SSL_REQUEST, GSSENC_REQUEST):
                self.writer.write(b"N")
                await self.writer.drain()
                continue
            if code == CANCEL_REQUEST:
                pid, key = struct.unpack("!II", body[4:12])
                target = self.registry.sessions.get((pid, key))
                if target is not None:
                    target.cancel()
                return None
            if code != PROTOCOL_3:
                self.writer.write(error_response(f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}: "
                                                 "the server supports 3.0", "0A000", "FATAL"))
                return None
            if self.registry.tls is not None and not self.encrypted:
                self.writer.write(error_response("this endpoint accepts TLS connections only (the password is an API "
                                                 "token): connect with sslmode=require (JDBC: ssl=true)", "28000",
                                                 "FATAL"))
                return None
            parts = body[4:].split(b"\x00")
            return {parts[i].decode(): parts[i + 1].decode() for i in range(0, len(parts) - 1, 2) if parts[i]}

    async def _authenticate(self, startup: dict[str, str]) -> bool:
        self.writer.write(_message(b"R", struct.pack("!I", 3)))  # cleartext password: the API token
        await self.writer.drain()
        kind = await self._read(1)
        (length,) = struct.unpack("!I", await self._read(4))
        if kind != b"p" or not 4 <= length <= 100_000:
            self.writer.write(error_response("expected a password message", "08P01", "FATAL"))
            return False
        payload = await self._read(length - 4)
        user = startup.get("user", "")
        self.token = payload.rstrip(b"\x00").decode(errors="replace")
        try:
            # in a thread: a token naming an unknown kid reads the key sets again, which may fetch a URL
            context = await asyncio.to_thread(authenticate, self.token, self.settings.keys,
                                              self.settings.max_token_seconds)
            if context.tenant_id is not None and context.tenant_id not in self.service.current().tenants:
                raise AuthError(f"Invalid token: tenant {context.tenant_id!r} is not one the published data knows")
        except AuthError as exc:
            monitoring.SQL_CONNECTIONS.labels("refused").inc()
            self._audit({"user": user, "database": startup.get("database"), "error": str(exc), "sqlstate": "28P01"})
            self.writer.write(error_response(f'password authentication failed for user "{user}": {exc} (the '
                                             "password is an API token)", "28P01", "FATAL"))
            return False
        monitoring.SQL_CONNECTIONS.labels("authenticated").inc()
        self.context = context
        database = startup.get("database") or user
        self.session = Session(self.service, context, database, user, self.key[0], _startup_settings(startup),
                               self.catalogs, self.settings.now)
        self.session.on_deallocate = self._deallocate
        self.registry.sessions[self.key] = self.session
        self.writer.write(_message(b"R", struct.pack("!I", 0)))
        for name in REPORTED:
            self.writer.write(_message(b"S", _cstring(name) + _cstring(self.session.settings.get(name, ""))))
        self.writer.write(_message(b"K", struct.pack("!II", *self.key)))
        return True

    @property
    def encrypted(self) -> bool:
        return self.writer.get_extra_info("ssl_object") is not None

    def _audit(self, record: dict) -> None:
        self.registry.audit.write({"api": "sql", "client": self.client, **who(self.context, self.token),
                                   **({"user": self.session.user, "database": self.session.database}
                                      if self.session is not None else {}), **record})

    async def _execute_statement(self, prepared: Prepared, parameters: list | None = None) -> Result:
        """Run a statement in a thread, held to the token's rate limit, timed, counted and audited
        (session and transaction control only timed and counted: `limits.SESSION_CONTROL`)."""
        started = time.perf_counter()
        guarded = prepared.keyword not in SESSION_CONTROL
        try:
            if guarded:
                self.registry.limits.check_statement(self.token)
            result = await asyncio.to_thread(self.session.execute, prepared, parameters)
        except Exception as exc:
            monitoring.SQL_STATEMENTS.labels("error").inc()
            if not guarded:
                raise
            self._audit({"query": clipped(prepared.text), "sqlstate": getattr(exc, "code", "XX000"),
                         "error": str(exc), "seconds": round(time.perf_counter() - started, 6)})
            raise
        seconds = time.perf_counter() - started
        monitoring.SQL_STATEMENTS.labels("ok").inc()
        monitoring.SQL_LATENCY.observe(seconds)
        if guarded:
            self._audit({"query": clipped(prepared.text), "tag": result.tag,
                         "rows": len(result.rows) if result.columns is not None else None,
                         "seconds": round(seconds, 6)})
        return result

    async def run(self) -> None:
        monitoring.SQL_CONNECTIONS.labels("opened").inc()
        monitoring.SQL_OPEN.inc()
        try:
            startup = await self._startup()
            if startup is None or not await self._authenticate(startup):
                await self.writer.drain()
                return
            self._ready()
            await self.writer.drain()
            skipping = False  # after an error in the extended protocol: skip to Sync
            while True:
                kind = await self._read(1)
                (length,) = struct.unpack("!I", await self._read(4))
                if length < 4:
                    self.writer.write(error_response("invalid message length", "08P01", "FATAL"))
                    return
                if length - 4 > MAX_MESSAGE:
                    await self._discard(length - 4)
                    self._error(SqlError(f"message of {length - 4:,} bytes is larger than the {MAX_MESSAGE:,} "
                                         "the endpoint reads", "54000"))
                    if kind == b"Q":
                        self._ready()
                    else:
                        skipping = True
                    await self.writer.drain()
                    continue
                body = await self._read(length - 4)
                if kind == b"X":
                    return
                if kind == b"Q":
                    await self._simple(body)
                elif kind == b"S":
                    skipping = False
                    self._sync()
                elif kind == b"H":
                    pass
                elif not skipping:
                    try:
                        await self._extended(kind, body)
                    except Exception as exc:  # every failure is an ErrorResponse, never a dropped connection
                        skipping = True
                        self._error(exc)
                await self.writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            return
        finally:
            monitoring.SQL_OPEN.dec()
            self.registry.sessions.pop(self.key, None)
            if self.session is not None:
                self.session.close()
            self.writer.close()

    async def _discard(self, size: int) -> None:
        while size > 0:
            chunk = await self.reader.read(min(size, 1 << 20))
            if not chunk:
                raise asyncio.IncompleteReadError(b"", size)
            size -= len(chunk)

    def _ready(self) -> None:
        self.writer.write(_message(b"Z", self.session.status))

    def _error(self, exc: BaseException) -> None:
        monitoring.SQL_ERRORS.labels(exc.code if isinstance(exc, SqlError) else "XX000").inc()
        if isinstance(exc, SqlError):
            self.writer.write(error_response(str(exc), exc.code, hint=exc.hint))
            return
        log.exception("internal error in the SQL endpoint")
        self.writer.write(error_response(f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                                         if str(exc) else f"internal error: {type(exc).__name__}", "XX000"))

    # -- simple query protocol -----------------------------------------------------------------
    async def _simple(self, body: bytes) -> None:
        try:
            statements = split(body.rstrip(b"\x00").decode())
        except Exception as exc:
            self._fail(exc)
            self._ready()
            return
        if not statements:
            self.writer.write(_message(b"I"))
        for statement in statements:
            try:
                prepared = self.session.prepare(statement.text, statement.keyword)
                result = await self._execute_statement(prepared)
            except Exception as exc:
                self._fail(exc)
                break
            if result.columns is not None:
                formats = [0] * len(result.columns)
                self.writer.write(row_description(result.columns, formats))
                for row in result.rows:
                    self.writer.write(data_row(row, result.columns, formats))
            self.writer.write(_message(b"C", _cstring(result.tag)))
            await self.writer.drain()
        self._ready()

    def _fail(self, exc: BaseException) -> None:
        if self.session.in_transaction:
            self.session.failed = True
        self._error(exc)

    # -- extended query protocol ---------------------------------------------------------------
    async def _extended(self, kind: bytes, body: bytes) -> None:
        handler = {b"P": self._parse, b"B": self._bind, b"D": self._describe, b"E": self._execute,
                   b"C": self._close}.get(kind)
        if handler is None:
            raise SqlError(f"unsupported protocol message {kind.decode(errors='replace')!r}", "08P01")
        try:
            await handler(body)
        except Exception:
            if self.session.in_transaction:
                self.session.failed = True
            raise

    async def _parse(self, body: bytes) -> None:
        name, rest = _take_cstring(body)
        query, rest = _take_cstring(rest)
        (count,) = struct.unpack("!H", rest[:2])
        types = tuple(struct.unpack(f"!{count}I", rest[2:2 + 4 * count]))
        statements = split(query)
        if len(statements) > 1:
            raise SqlError("cannot insert multiple commands into a prepared statement", "42601")
        statement = statements[0] if statements else Statement("", "")
        if name and name in self.statements:
            raise SqlError(f'prepared statement "{name}" already exists', "42P05")
        self.statements[name] = await asyncio.to_thread(self.session.prepare, statement.text, statement.keyword,
                                                        types)
        self.writer.write(_message(b"1"))

    async def _bind(self, body: bytes) -> None:
        portal, rest = _take_cstring(body)
        name, rest = _take_cstring(rest)
        prepared = self.statements.get(name)
        if prepared is None:
            raise SqlError(f'prepared statement "{name}" does not exist', "26000")
        (n_formats,) = struct.unpack("!H", rest[:2])
        formats = list(struct.unpack(f"!{n_formats}H", rest[2:2 + 2 * n_formats]))
        rest = rest[2 + 2 * n_formats:]
        (n_values,) = struct.unpack("!H", rest[:2])
        rest = rest[2:]
        types = await asyncio.to_thread(self.session.parameter_types, prepared) if n_values else []
        values = []
        for i in range(n_values):
            (length,) = struct.unpack("!i", rest[:4])
            rest = rest[4:]
            if length == -1:
                values.append(None)
                continue
            raw, rest = rest[:length], rest[length:]
            fmt = formats[i] if len(formats) > 1 else (formats[0] if formats else 0)
            oid = types[i] if i < len(types) else 0
            try:
                values.append(pg_types.decode_parameter(raw, oid, fmt == 1))
            except pg_types.ParameterError as exc:
                raise SqlError(f"parameter ${i + 1}: {exc}", "22P02") from None
        (n_results,) = struct.unpack("!H", rest[:2])
        result_formats = list(struct.unpack(f"!{n_results}H", rest[2:2 + 2 * n_results]))
        self.portals[portal] = Portal(prepared, values, result_formats)
        self.writer.write(_message(b"2"))

    async def _describe(self, body: bytes) -> None:
        target, name = body[:1], _take_cstring(body[1:])[0]
        if target == b"S":
            prepared = self.statements.get(name)
            if prepared is None:
                raise SqlError(f'prepared statement "{name}" does not exist', "26000")
            types = await asyncio.to_thread(self.session.parameter_types, prepared)
            self.writer.write(_message(b"t", struct.pack("!H", len(types))
                                       + b"".join(struct.pack("!I", t) for t in types)))
            described = await asyncio.to_thread(self.session.execute, prepared, None, True)
            self._describe_rows(described.columns, [])
            return
        portal = self.portals.get(name)
        if portal is None:
            cursor = self.session.cursors.get(name)
            if cursor is None:
                raise SqlError(f'portal "{name}" does not exist', "34000")
            self._describe_rows(cursor.columns, [])
            return
        if portal.result is None and _produces_rows(portal.prepared):
            portal.result = await self._execute_statement(portal.prepared, portal.parameters)
        columns = portal.result.columns if portal.result is not None else None
        self._describe_rows(columns, portal.result_formats)

    def _describe_rows(self, columns, formats: list[int]) -> None:
        if columns is None:
            self.writer.write(_message(b"n"))
        else:
            self.writer.write(row_description(columns, _formats(formats, len(columns))))

    async def _execute(self, body: bytes) -> None:
        name, rest = _take_cstring(body)
        (max_rows,) = struct.unpack("!i", rest[:4])
        portal = self.portals.get(name)
        if portal is None:
            cursor = self.session.cursors.get(name)
            if cursor is None:
                raise SqlError(f'portal "{name}" does not exist', "34000")
            portal = Portal(Prepared("", "", None, ()), [], [], Result(cursor.columns, cursor.rows[cursor.position:]))
        if not portal.prepared.text and portal.result is None:
            self.writer.write(_message(b"I"))
            return
        if portal.result is None:
            portal.result = await self._execute_statement(portal.prepared, portal.parameters)
        result = portal.result
        if result.columns is not None:
            formats = _formats(portal.result_formats, len(result.columns))
            end = len(result.rows) if max_rows <= 0 else min(len(result.rows), portal.position + max_rows)
            for row in result.rows[portal.position:end]:
                self.writer.write(data_row(row, result.columns, formats))
            sent, portal.position = end - portal.position, end
            if end < len(result.rows):
                self.writer.write(_message(b"s"))  # PortalSuspended: the client asks for more
                return
            tag = f"SELECT {sent}" if result.tag.startswith("SELECT") else result.tag
        else:
            tag = result.tag
        self.writer.write(_message(b"C", _cstring(tag)))

    async def _close(self, body: bytes) -> None:
        target, name = body[:1], _take_cstring(body[1:])[0]
        if target == b"S":
            self.statements.pop(name, None)
        else:
            self.portals.pop(name, None)
            self.session.cursors.pop(name, None)
        self.writer.write(_message(b"3"))

    def _sync(self) -> None:
        self.portals.pop("", None)
        if not self.session.in_transaction:
            self.portals.clear()
        self._ready()

    def _deallocate(self, name: str | None) -> None:
        if name is None:
            self.statements.clear()
        else:
            self.statements.pop(name, None)


def _produces_rows(prepared: Prepared) -> bool:
    return prepared.tree is not None or prepared.keyword in ("show", "fetch", "explain")


def _startup_settings(startup: dict[str, str]) -> dict[str, str]:
    """Settings a client sends at startup, including `options=-c name=value ...`."""
    settings = {k: v for k, v in startup.items() if k not in ("user", "database", "options", "replication")}
    for part in startup.get("options", "").replace("--", "-c ").split("-c"):
        if "=" in part:
            name, value = part.strip().split("=", 1)
            settings[name.strip()] = value.strip()
    return settings


def _take_cstring(data: bytes) -> tuple[str, bytes]:
    end = data.index(b"\x00")
    return data[:end].decode(), data[end + 1:]


async def serve(service, settings: ServingSettings, host: str, port: int) -> asyncio.Server:
    catalogs = Catalogs(service, tables)
    registry = Registry(settings)

    async def handle(reader, writer):
        await Connection(service, catalogs, settings, registry, reader, writer).run()

    return await asyncio.start_server(handle, host, port)


def serve_ops(service, settings: ServingSettings, host: str) -> None:
    """/metrics and /healthz on their own HTTP port, served by uvicorn in a thread of its own.

    Not in the main thread: there uvicorn captures SIGTERM for its own graceful stop, and the SQL
    endpoint would stop only once this port's server had (and not at all if it started with SIGTERM
    ignored); SIGTERM's default action ends the endpoint at once. A port that cannot be bound ends
    the process."""
    port = settings.sql_metrics_port
    config = uvicorn.Config(monitoring.ops_app(service), host=host, port=port, log_level="warning",
                            timeout_graceful_shutdown=SHUTDOWN_SECONDS,
                            **(settings.tls.uvicorn_options() if settings.tls else {}))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="sql-endpoint-ops", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise SystemExit(f"SQL endpoint: cannot serve /metrics on {host}:{port} (SEMANTIC_SQL_METRICS_PORT)")
        time.sleep(0.05)
    print(f"SQL endpoint metrics on {'https' if settings.tls else 'http'}://{host}:{port}/metrics", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the governed metrics over PostgreSQL's wire protocol.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=15432)
    args = parser.parse_args()
    # our own messages; MetricFlow's INFO lines (several per query) would bury them
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("semantic").setLevel(logging.INFO)
    try:
        settings = ServingSettings.from_environment()
    except (SettingsError, ValueError) as exc:
        raise SystemExit(f"SQL endpoint: {exc}") from None
    service = settings.service()
    stop_on_sigterm()
    if settings.sql_metrics_port is not None:
        serve_ops(service, settings, args.host)

    async def run():
        server = await serve(service, settings, args.host, args.port)
        tls = " over TLS" if settings.tls else ""
        print(f"SQL endpoint on {args.host}:{args.port}{tls} (password: an API token)", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(run())


if __name__ == "__main__":
    main()
