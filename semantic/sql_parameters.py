"""Bound parameters of the SQL endpoint: the type of each `$n`, and values turned into typed literals.

A client that prepares a statement (asyncpg always, pgjdbc, psycopg 3) learns its parameters' types
from the server (ParameterDescription) and encodes its values by them, so each `$n` gets the type
PostgreSQL would infer: the client's own, else that of the column it is compared with (a served
table's dimension), bigint for LIMIT and OFFSET, text otherwise. Bound values enter the statement's
tree as literals of their type, never as text spliced into SQL.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from sqlglot import exp

from semantic import pg_types
from semantic.pg_sql import SqlError
from semantic.sql_tables import Table


def parameter_index(node: exp.Expression) -> int | None:
    if isinstance(node, exp.Parameter):
        inner = node.this
        text = inner.this if isinstance(inner, exp.Literal) else str(inner.this if hasattr(inner, "this") else inner)
        return int(text) if str(text).isdigit() else None
    return None


def infer_parameter_types(tree: exp.Expression, tables: dict[str, Table], declared: tuple[int, ...]) -> list[int]:
    """Each `$n`'s type: as the client declared it, else from what it is compared with (a served
    table's column, LIMIT's bigint), else text, as PostgreSQL infers an untyped parameter."""
    columns = {c.name: c.pg_type for t in tables.values() for c in t.columns}
    found: dict[int, int] = {}
    for node in tree.find_all(exp.Parameter):
        index = parameter_index(node)
        if index is None:
            continue
        parent = node.parent
        while isinstance(parent, exp.Paren | exp.Tuple):
            parent = parent.parent
        oid = pg_types.TEXT.oid
        if isinstance(parent, exp.Limit | exp.Offset | exp.Fetch):
            oid = pg_types.INT8.oid
        elif isinstance(parent, exp.Binary | exp.In | exp.Between):
            others = [parent.this] if not isinstance(parent, exp.Binary) else [parent.this, parent.expression]
            for other in others:
                if isinstance(other, exp.Column) and other.name in columns:
                    oid = columns[other.name].oid
        elif isinstance(parent, exp.Cast):
            key = parent.to.sql("postgres").lower()
            oid = next((t.oid for t in pg_types.BY_OID.values() if key in (t.name, t.sql_name)), oid)
        found[index] = oid
    count = max([len(declared), *found.keys()]) if found or declared else 0
    return [declared[i] if i < len(declared) and declared[i] else found.get(i + 1, pg_types.TEXT.oid)
            for i in range(count)]


def stand_in(oid: int):
    return {pg_types.INT8.oid: 1, pg_types.INT4.oid: 1, pg_types.INT2.oid: 1, pg_types.NUMERIC.oid: 1,
            pg_types.FLOAT8.oid: 1.0, pg_types.BOOL.oid: True, pg_types.DATE.oid: date(2000, 1, 1),
            pg_types.TIMESTAMP.oid: datetime(2000, 1, 1)}.get(oid, "x")


def literal(value, oid: int) -> exp.Expression:
    """A bound value as a SQL literal of its type (never as text spliced into SQL)."""
    if value is None:
        return exp.Null()
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, int | float | Decimal):
        return exp.Literal.number(str(value))
    if isinstance(value, datetime):
        kind = "TIMESTAMPTZ" if value.tzinfo else "TIMESTAMP"
        return exp.Cast(this=exp.Literal.string(value.isoformat(sep=" ")), to=exp.DataType.build(kind))
    if isinstance(value, date):
        return exp.Cast(this=exp.Literal.string(value.isoformat()), to=exp.DataType.build("DATE"))
    if isinstance(value, time | timedelta | uuid.UUID):
        return exp.Literal.string(str(value))
    if isinstance(value, list):
        return exp.Array(expressions=[literal(v, pg_types.TEXT.oid) for v in value])
    text = value if isinstance(value, str) else str(value)
    if oid in (pg_types.INT8.oid, pg_types.INT4.oid, pg_types.INT2.oid, pg_types.NUMERIC.oid, pg_types.FLOAT8.oid,
               pg_types.FLOAT4.oid, pg_types.OID.oid):
        try:
            float(text)
        except ValueError:
            raise SqlError(f'invalid input syntax for type {pg_types.BY_OID[oid].sql_name}: "{text}"', "22P02") \
                from None
        return exp.Literal.number(text.strip())
    if oid == pg_types.DATE.oid:
        return exp.Cast(this=exp.Literal.string(text), to=exp.DataType.build("DATE"))
    if oid == pg_types.BOOL.oid:
        return exp.Literal.string(text)
    return exp.Literal.string(text)
