"""The SQL endpoint for BI tools: PostgreSQL's wire protocol (v3) over the governed metrics.

`python -m semantic.pgwire --port 15432`, then for instance
`PGPASSWORD=<token> psql -h 127.0.0.1 -p 15432 -U any -d metrics -c "select tenant, revenue from metrics"`.

The password is the same JWT the REST API takes, so the same tenancy applies. Statements go
through `sql_api.py` (the one virtual table `metrics`), never to the warehouse as written.
Both the simple query protocol (psql, psycopg2) and the extended one (psycopg 3, drivers that
bind parameters) are served, plus the handful of session statements and catalog probes that
drivers and SQLAlchemy send when they connect. No TLS: bind it to loopback, or put a TLS proxy
in front.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import struct
from dataclasses import dataclass, field

from semantic import pg_describe
from semantic.auth import AuthError, SecurityContext, authenticate
from semantic.cube_query import QueryError, Translator
from semantic.members import UnknownMember
from semantic.service import MetricsService
from semantic.settings import DEFAULT_TOKEN_MAX_SECONDS, ServingSettings, SettingsError
from semantic.sql_api import OutputColumn, SqlRefused, SqlTranslator, bind_parameters, catalog_probe

SSL_REQUEST, CANCEL_REQUEST, PROTOCOL_3 = 80877103, 80877102, 196608
TEXT, NUMERIC, DATE = 25, 1700, 1082
SERVER_VERSION = "15.0 (governed metrics)"

# Statements drivers send on their own: answered here, never passed on. (pattern, tag, rows)
SESSION_STATEMENTS: list[tuple[re.Pattern, str, list[tuple[str, str]] | None]] = [
    (re.compile(r"^\s*(set|reset|discard|deallocate)\b", re.I), "SET", None),
    (re.compile(r"^\s*(begin|start\s+transaction)\b", re.I), "BEGIN", None),
    (re.compile(r"^\s*commit\s*;?\s*$", re.I), "COMMIT", None),
    (re.compile(r"^\s*rollback\s*;?\s*$", re.I), "ROLLBACK", None),
    (re.compile(r"^\s*select\s+(pg_catalog\.)?version\(\)\s*;?\s*$", re.I), "SELECT 1",
     [("version", f"PostgreSQL {SERVER_VERSION}")]),
    (re.compile(r"^\s*select\s+current_schema\(\)\s*;?\s*$", re.I), "SELECT 1", [("current_schema", "public")]),
    (re.compile(r"^\s*show\s+transaction\s+isolation\s+level\s*;?\s*$", re.I), "SHOW",
     [("transaction_isolation", "read committed")]),
    (re.compile(r"^\s*show\s+standard_conforming_strings\s*;?\s*$", re.I), "SHOW",
     [("standard_conforming_strings", "on")]),
    (re.compile(r"^\s*show\s+server_version\s*;?\s*$", re.I), "SHOW", [("server_version", SERVER_VERSION)]),
    (re.compile(r"^\s*select\s+1\s*;?\s*$", re.I), "SELECT 1", [("?column?", "1")]),
    # `\d+ metrics` shows the view's definition
    (re.compile(r"^\s*select\s+(pg_catalog\.)?pg_get_viewdef\(", re.I), "SELECT 1",
     [("pg_get_viewdef", " -- each column is a governed metric or dimension of the dbt semantic models; "
                         "metrics are aggregated by MetricFlow over the dimensions selected")]),
]
_SQLSTATE_SYNTAX, _SQLSTATE_UNDEFINED_TABLE, _SQLSTATE_AUTH = "42601", "42P01", "28P01"


def _message(kind: bytes, payload: bytes = b"") -> bytes:
    return kind + struct.pack("!I", len(payload) + 4) + payload


def _cstring(text: str) -> bytes:
    return text.encode() + b"\x00"


def error_response(message: str, code: str = _SQLSTATE_SYNTAX, severity: str = "ERROR") -> bytes:
    fields = b"S" + _cstring(severity) + b"V" + _cstring(severity) + b"C" + _cstring(code) + b"M" + _cstring(message)
    return _message(b"E", fields + b"\x00")


def row_description(names: list[tuple[str, int]]) -> bytes:
    body = struct.pack("!H", len(names))
    for name, oid in names:
        body += _cstring(name) + struct.pack("!IHIhiH", 0, 0, oid, -1, -1, 0)
    return _message(b"T", body)


def data_row(values: list[str | None]) -> bytes:
    body = struct.pack("!H", len(values))
    for value in values:
        if value is None:
            body += struct.pack("!i", -1)
        else:
            encoded = value.encode()
            body += struct.pack("!i", len(encoded)) + encoded
    return _message(b"D", body)


@dataclass
class Outcome:
    """What a statement produced: a row description (or none) and rows, and its command tag."""

    columns: list[tuple[str, int]] | None
    rows: list[list[str | None]] = field(default_factory=list)
    tag: str = "SELECT 0"


class Session:
    """One client connection: authenticated once, then statements until it says goodbye."""

    def __init__(self, service: MetricsService, secret: str, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, max_token_seconds: int = DEFAULT_TOKEN_MAX_SECONDS):
        self.service, self.secret, self.reader, self.writer = service, secret, reader, writer
        self.max_token_seconds = max_token_seconds
        self.context: SecurityContext | None = None
        self.statements: dict[str, str] = {}
        self.portals: dict[str, Outcome] = {}

    async def _read_startup(self) -> dict[str, str] | None:
        while True:
            (length,) = struct.unpack("!I", await self.reader.readexactly(4))
            body = await self.reader.readexactly(length - 4)
            (code,) = struct.unpack("!I", body[:4])
            if code == SSL_REQUEST:
                self.writer.write(b"N")
                continue
            if code == CANCEL_REQUEST:
                return None
            if code != PROTOCOL_3:
                self.writer.write(error_response(f"unsupported protocol {code >> 16}.{code & 0xFFFF}", "08P01",
                                                 "FATAL"))
                return None
            parts = body[4:].split(b"\x00")
            return {parts[i].decode(): parts[i + 1].decode() for i in range(0, len(parts) - 1, 2) if parts[i]}

    async def _authenticate(self) -> bool:
        self.writer.write(_message(b"R", struct.pack("!I", 3)))  # cleartext password: the API token
        await self.writer.drain()
        kind = await self.reader.readexactly(1)
        (length,) = struct.unpack("!I", await self.reader.readexactly(4))
        payload = await self.reader.readexactly(length - 4)
        if kind != b"p":
            self.writer.write(error_response("expected a password message", "08P01", "FATAL"))
            return False
        try:
            self.context = authenticate(payload.rstrip(b"\x00").decode(), self.secret, self.max_token_seconds)
            if self.context.tenant_id is not None and self.context.tenant_id not in self.service.current().tenants:
                raise AuthError(f"Invalid token: tenant {self.context.tenant_id!r} is not one the published data knows")
        except AuthError as exc:
            self.writer.write(error_response(f"password authentication failed: {exc} (the password is an API "
                                             "token)", _SQLSTATE_AUTH, "FATAL"))
            return False
        self.writer.write(_message(b"R", struct.pack("!I", 0)))
        for name, value in (("server_version", SERVER_VERSION), ("server_encoding", "UTF8"),
                            ("client_encoding", "UTF8"), ("DateStyle", "ISO, MDY"), ("TimeZone", "UTC"),
                            ("integer_datetimes", "on"), ("standard_conforming_strings", "on"),
                            ("application_name", "")):
            self.writer.write(_message(b"S", _cstring(name) + _cstring(value)))
        self.writer.write(_message(b"K", struct.pack("!II", os.getpid() & 0x7FFFFFFF, secrets.randbits(31))))
        return True

    async def run(self) -> None:
        try:
            if await self._read_startup() is None or not await self._authenticate():
                await self.writer.drain()
                return
            self.writer.write(_message(b"Z", b"I"))
            await self.writer.drain()
            failed = False  # in the extended protocol, an error skips everything up to Sync
            while True:
                kind = await self.reader.readexactly(1)
                (length,) = struct.unpack("!I", await self.reader.readexactly(4))
                body = await self.reader.readexactly(length - 4)
                if kind == b"X":
                    return
                if kind == b"Q":
                    await self._simple(body.rstrip(b"\x00").decode())
                elif kind == b"S":
                    failed = False
                    self.writer.write(_message(b"Z", b"I"))
                elif kind == b"H":
                    pass
                elif not failed:
                    try:
                        await self._extended(kind, body)
                    except (SqlRefused, QueryError, UnknownMember) as exc:
                        failed = True
                        self.writer.write(self._error_for(exc))
                await self.writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            self.writer.close()

    @staticmethod
    def _error_for(exc: Exception) -> bytes:
        text = str(exc)
        code = _SQLSTATE_UNDEFINED_TABLE if "is not exposed" in text else _SQLSTATE_SYNTAX
        return error_response(text, code)

    async def _simple(self, sql: str) -> None:
        statements = [s for s in _split(sql) if s.strip()]
        if not statements:
            self.writer.write(_message(b"I"))
        for statement in statements:
            try:
                outcome = await self._execute(statement)
            except (SqlRefused, QueryError, UnknownMember) as exc:
                self.writer.write(self._error_for(exc))
                break
            if outcome.columns is not None:
                self.writer.write(row_description(outcome.columns))
                for row in outcome.rows:
                    self.writer.write(data_row(row))
            self.writer.write(_message(b"C", _cstring(outcome.tag)))
        self.writer.write(_message(b"Z", b"I"))

    async def _extended(self, kind: bytes, body: bytes) -> None:
        if kind == b"P":
            name, rest = _take_cstring(body)
            query, _ = _take_cstring(rest)
            self.statements[name] = query
            self.writer.write(_message(b"1"))
        elif kind == b"B":
            portal, rest = _take_cstring(body)
            statement, rest = _take_cstring(rest)
            values, result_formats = _bind_values(rest)
            if any(f == 1 for f in result_formats):
                raise SqlRefused("binary results are not supported: ask for text")
            sql = bind_parameters(self.statements.get(statement, ""), values)
            self.portals[portal] = await self._execute(sql)
            self.writer.write(_message(b"2"))
        elif kind == b"D":
            target, name = body[:1], _take_cstring(body[1:])[0]
            if target == b"S":
                sql = self.statements.get(name, "")
                count = len(set(re.findall(r"\$(\d+)", sql)))
                self.writer.write(_message(b"t", struct.pack("!H", count) + struct.pack("!I", TEXT) * count))
                self.writer.write(_message(b"n"))  # columns are known once bound
            else:
                outcome = self.portals.get(name)
                self.writer.write(row_description(outcome.columns) if outcome and outcome.columns is not None
                                  else _message(b"n"))
        elif kind == b"E":
            name = _take_cstring(body)[0]
            outcome = self.portals.pop(name, Outcome(None, tag="SELECT 0"))
            for row in outcome.rows:
                self.writer.write(data_row(row))
            self.writer.write(_message(b"C", _cstring(outcome.tag)))
        elif kind == b"C":
            self.writer.write(_message(b"3"))
        else:
            raise SqlRefused(f"unsupported message {kind!r}")

    async def _execute(self, sql: str) -> Outcome:
        for pattern, tag, rows in SESSION_STATEMENTS:
            if pattern.match(sql):
                if rows is None:
                    return Outcome(None, tag=tag)
                return Outcome([(name, TEXT) for name, _ in rows], [[value for _, value in rows]], tag)
        probed = catalog_probe(sql)
        if probed is not None:
            rows = pg_describe.answer(sql, probed, self.service.catalog)
            return Outcome([(name, TEXT) for name in probed], rows, f"SELECT {len(rows)}")
        query, columns = SqlTranslator(self.service.catalog).translate(sql)
        plan = Translator(self.service.catalog, self.context.tenant_id).plan(query)
        result = await asyncio.wrap_future(self.service.submit(plan, self.context.cache_key))
        return Outcome([(c.name, _oid(c)) for c in columns],
                       [[_text(row.get(c.key), c) for c in columns] for row in result.rows],
                       f"SELECT {len(result.rows)}")


def _oid(column: OutputColumn) -> int:
    return {"measure": NUMERIC, "time": DATE}.get(column.kind, TEXT)


def _text(value, column: OutputColumn) -> str | None:
    if value is None:
        return None
    return value[:10] if column.kind == "time" else str(value)


def _take_cstring(data: bytes) -> tuple[str, bytes]:
    end = data.index(b"\x00")
    return data[:end].decode(), data[end + 1:]


def _bind_values(data: bytes) -> tuple[list[str | None], list[int]]:
    (n_formats,) = struct.unpack("!H", data[:2])
    formats = list(struct.unpack(f"!{n_formats}H", data[2:2 + 2 * n_formats]))
    data = data[2 + 2 * n_formats:]
    (n_values,) = struct.unpack("!H", data[:2])
    data = data[2:]
    values: list[str | None] = []
    for i in range(n_values):
        (length,) = struct.unpack("!i", data[:4])
        data = data[4:]
        if length == -1:
            values.append(None)
            continue
        raw, data = data[:length], data[length:]
        fmt = formats[i] if len(formats) > 1 else (formats[0] if formats else 0)
        if fmt != 0:
            raise SqlRefused("binary parameters are not supported: send text")
        values.append(raw.decode())
    (n_results,) = struct.unpack("!H", data[:2])
    return values, list(struct.unpack(f"!{n_results}H", data[2:2 + 2 * n_results]))


def _split(sql: str) -> list[str]:
    """Statements separated by semicolons outside quotes."""
    parts, current, quoted = [], [], False
    for char in sql:
        if char == "'":
            quoted = not quoted
        if char == ";" and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


async def serve(service: MetricsService, secret: str, host: str, port: int,
                max_token_seconds: int = DEFAULT_TOKEN_MAX_SECONDS) -> asyncio.Server:
    async def handle(reader, writer):
        await Session(service, secret, reader, writer, max_token_seconds).run()

    return await asyncio.start_server(handle, host, port)


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the governed metrics over PostgreSQL's wire protocol.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=15432)
    args = parser.parse_args()
    try:
        settings = ServingSettings.from_environment()
    except (SettingsError, ValueError) as exc:
        raise SystemExit(f"SQL endpoint: {exc}") from None
    service = settings.service()

    async def run():
        server = await serve(service, settings.secret, args.host, args.port, settings.max_token_seconds)
        print(f"SQL endpoint on {args.host}:{args.port} (password: an API token)", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(run())


if __name__ == "__main__":
    main()
