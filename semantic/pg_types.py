"""PostgreSQL's data types on the SQL endpoint: OIDs, DuckDB's types mapped onto them, and values
encoded in the text and binary formats of the wire protocol.

What a client sees as a column's type is a PostgreSQL OID (RowDescription, `pg_attribute.atttypid`,
`pg_type`), and drivers pick their decoders by it: asyncpg and pgjdbc's server-prepared statements
read binary, psql and most others text. The values themselves come out of DuckDB (the catalog and
the post-processing of metric results run there), so DuckDB's result types are mapped to
PostgreSQL's here, in one table, the way PostgreSQL itself would type the same expression (a sum
of bigints is numeric, a count is bigint).

Encoding and decoding use psycopg's adapters (its public `psycopg.adapters` map of dumpers and
loaders per OID and format), the same code that reads and writes these formats against real
PostgreSQL servers; only arrays are framed here, element by element, because psycopg chooses an
array's element type from the Python values while the column's type is fixed by the query.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

import duckdb
import psycopg
from psycopg.pq import Format


@dataclass(frozen=True)
class PgType:
    oid: int
    name: str  # pg_type.typname
    sql_name: str  # as format_type() spells it
    array_oid: int = 0
    element_oid: int = 0  # for array types: the element's OID


BOOL = PgType(16, "bool", "boolean", 1000)
BYTEA = PgType(17, "bytea", "bytea", 1001)
CHAR = PgType(18, "char", '"char"', 1002)
NAME = PgType(19, "name", "name", 1003)
INT8 = PgType(20, "int8", "bigint", 1016)
INT2 = PgType(21, "int2", "smallint", 1005)
INT4 = PgType(23, "int4", "integer", 1007)
TEXT = PgType(25, "text", "text", 1009)
OID = PgType(26, "oid", "oid", 1028)
JSON = PgType(114, "json", "json", 199)
FLOAT4 = PgType(700, "float4", "real", 1021)
FLOAT8 = PgType(701, "float8", "double precision", 1022)
VARCHAR = PgType(1043, "varchar", "character varying", 1015)
DATE = PgType(1082, "date", "date", 1182)
TIME = PgType(1083, "time", "time without time zone", 1183)
TIMESTAMP = PgType(1114, "timestamp", "timestamp without time zone", 1115)
TIMESTAMPTZ = PgType(1184, "timestamptz", "timestamp with time zone", 1185)
INTERVAL = PgType(1186, "interval", "interval", 1187)
NUMERIC = PgType(1700, "numeric", "numeric", 1231)
UUID = PgType(2950, "uuid", "uuid", 2951)

SCALARS = (BOOL, BYTEA, CHAR, NAME, INT8, INT2, INT4, TEXT, OID, JSON, FLOAT4, FLOAT8, VARCHAR, DATE, TIME,
           TIMESTAMP, TIMESTAMPTZ, INTERVAL, NUMERIC, UUID)
BY_OID: dict[int, PgType] = {t.oid: t for t in SCALARS}
for _t in SCALARS:
    BY_OID[_t.array_oid] = PgType(_t.array_oid, f"_{_t.name}", f"{_t.sql_name}[]", 0, _t.oid)

# DuckDB's type ids (DuckDBPyType.id) -> the PostgreSQL type of the same values
_FROM_DUCKDB = {
    "boolean": BOOL, "tinyint": INT2, "smallint": INT2, "utinyint": INT2, "integer": INT4, "usmallint": INT4,
    "uinteger": OID,  # the emulated catalog declares its oid columns UINTEGER
    "bigint": INT8, "ubigint": NUMERIC, "hugeint": NUMERIC, "uhugeint": NUMERIC, "float": FLOAT4,
    "double": FLOAT8, "decimal": NUMERIC, "varchar": TEXT, "date": DATE, "time": TIME, "timestamp": TIMESTAMP,
    "timestamp_s": TIMESTAMP, "timestamp_ms": TIMESTAMP, "timestamp_ns": TIMESTAMP,
    "timestamp with time zone": TIMESTAMPTZ, "interval": INTERVAL, "blob": BYTEA, "uuid": UUID, "json": JSON,
}


def from_duckdb(dtype: duckdb.DuckDBPyType) -> PgType:
    """The PostgreSQL type of a DuckDB result column (text for what PostgreSQL has no type for)."""
    if dtype.id == "list":
        element = from_duckdb(dtype.child)
        return BY_OID.get(element.array_oid, BY_OID[TEXT.array_oid])
    return _FROM_DUCKDB.get(dtype.id, TEXT)


class ParameterError(ValueError):
    """A parameter value that cannot be read as its declared type."""


_ADAPTERS = psycopg.adapters


def _trim(value: Decimal) -> Decimal:
    """A decimal without trailing fractional zeros (DuckDB's decimals have a fixed scale)."""
    if not value.is_finite():
        return value
    trimmed = value.normalize()
    return trimmed.quantize(Decimal(1)) if trimmed.as_tuple().exponent > 0 else trimmed


def _scalar(value) -> object:
    return _trim(value) if isinstance(value, Decimal) else value


def _text(value, pg_type: PgType) -> bytes:
    if pg_type.element_oid:
        return _text_array(value, BY_OID[pg_type.element_oid])
    if isinstance(value, bool):
        return b"t" if value else b"f"
    if pg_type is NUMERIC or isinstance(value, Decimal):
        number = value if isinstance(value, Decimal) else Decimal(repr(value) if isinstance(value, float) else value)
        return format(_trim(number), "f").encode() if number.is_finite() else str(number).encode()
    if isinstance(value, datetime | date | time | timedelta | bytes):
        dumper = _ADAPTERS.get_dumper(type(value), psycopg.adapt.PyFormat.TEXT)
        return bytes(dumper(type(value)).dump(value))
    if isinstance(value, float):
        if value != value:
            return b"NaN"
        return repr(value).encode() if abs(value) != float("inf") else b"Infinity" if value > 0 else b"-Infinity"
    return str(value).encode()


def _text_array(values: list, element: PgType) -> bytes:
    parts = []
    for value in values:
        if value is None:
            parts.append(b"NULL")
            continue
        raw = _text(value, element)
        if not raw or raw.upper() == b"NULL" or any(c in raw for c in b'{},"\\ \t\n'):
            raw = b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
        parts.append(raw)
    return b"{" + b",".join(parts) + b"}"


def _binary(value, pg_type: PgType) -> bytes:
    if pg_type.element_oid:
        return _binary_array(value, BY_OID[pg_type.element_oid])
    if pg_type in (TEXT, VARCHAR, NAME, CHAR, JSON):
        return str(value).encode()
    if pg_type is NUMERIC and not isinstance(value, Decimal):
        value = Decimal(repr(value) if isinstance(value, float) else value)
    if pg_type is OID:
        return struct.pack("!I", int(value))
    dumper = _ADAPTERS.get_dumper_by_oid(pg_type.oid, Format.BINARY)
    if dumper is None:
        return str(value).encode()
    return bytes(dumper(type(value)).dump(_scalar(value)))


def _binary_array(values: list, element: PgType) -> bytes:
    body = b"".join(struct.pack("!i", -1) if v is None else _framed(_binary(v, element)) for v in values)
    has_null = any(v is None for v in values)
    if not values:
        return struct.pack("!iiI", 0, 0, element.oid)
    return struct.pack("!iiIii", 1, int(has_null), element.oid, len(values), 1) + body


def _framed(data: bytes) -> bytes:
    return struct.pack("!i", len(data)) + data


def encode(value, pg_type: PgType, binary: bool) -> bytes | None:
    """A value in the text or binary format of its column's type (None for SQL NULL)."""
    if value is None:
        return None
    return _binary(value, pg_type) if binary else _text(value, pg_type)


def decode_parameter(data: bytes, oid: int, binary: bool):
    """A bound parameter as a Python value: binary ones by their declared type, text ones kept as
    text for the statement's own context to type (as PostgreSQL types an untyped literal)."""
    if not binary:
        text = data.decode()
        if oid in (0, TEXT.oid, VARCHAR.oid, NAME.oid, CHAR.oid):
            return text
        if oid in (DATE.oid, TIMESTAMP.oid, TIMESTAMPTZ.oid):
            return _moment(text, oid)
        loader = _ADAPTERS.get_loader(oid, Format.TEXT)
        try:
            return loader(oid).load(data) if loader is not None else text
        except Exception as exc:
            raise ParameterError(f"invalid input syntax for type {_type_name(oid)}: {text!r} ({exc})") from None
    if oid == OID.oid:
        return struct.unpack("!I", data)[0]
    if oid in (TEXT.oid, VARCHAR.oid, NAME.oid, CHAR.oid, JSON.oid):
        return data.decode()
    loader = _ADAPTERS.get_loader(oid, Format.BINARY)
    if loader is None:
        raise ParameterError(f"binary parameters of type {_type_name(oid)} are not supported: send them as text")
    try:
        return loader(oid).load(data)
    except Exception as exc:
        raise ParameterError(f"invalid binary value for type {_type_name(oid)} ({exc})") from None


def _moment(text: str, oid: int) -> date | datetime:
    """A date or timestamp as PostgreSQL reads one (pgjdbc sends setDate as '2026-10-01 +00')."""
    match = re.match(r"^\s*(\d{4}-\d{2}-\d{2})(?:[ T](\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?))?\s*"
                     r"([+-]\d{2}(?::?\d{2})?|Z)?\s*$", text)
    if match is None:
        raise ParameterError(f"invalid input syntax for type {_type_name(oid)}: {text!r}")
    day, clock, zone = match.groups()
    if oid == DATE.oid:
        return date.fromisoformat(day)
    offset = "" if zone is None else "+00:00" if zone == "Z" else zone[:3] + ":" + (zone[3:].lstrip(":") or "00")
    moment = datetime.fromisoformat(f"{day}T{clock or '00:00:00'}{offset}")
    return moment if oid == TIMESTAMPTZ.oid or moment.tzinfo is None else moment.replace(tzinfo=None)


def _type_name(oid: int) -> str:
    known = BY_OID.get(oid)
    return known.sql_name if known else f"with OID {oid}"
