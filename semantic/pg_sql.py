"""PostgreSQL's SQL as the endpoint reads it: statements split and parsed (sqlglot), output columns
named as PostgreSQL names them, and queries rewritten for the DuckDB database that answers them.

Clients send PostgreSQL's dialect, with its system catalogs and functions (`pg_catalog.format_type`,
`'pg_class'::regclass`, `OPERATOR(pg_catalog.~)`, `= ANY(array)`, `format('%I.%I', ...)`). The
endpoint answers catalog queries, and the last steps of metric queries, with DuckDB over the
emulated catalog of `pg_catalog.py`, so each statement is parsed once into sqlglot's tree,
rewritten here where PostgreSQL and DuckDB differ, and generated as DuckDB SQL. sqlglot already
translates most of the dialect (regular expressions, `to_timestamp`, casts); what is PostgreSQL's
own (system tables and functions, object identifier types, LIKE's default escape, column naming)
is done here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType

# The DuckDB databases the emulated catalog lives in (see pg_catalog.py)
CATALOG_DB, INFORMATION_DB = "pgc", "isc"
SESSION_RELATIONS = frozenset({"pg_settings", "pg_database"})  # per-session tables, in DuckDB's temp database


class SqlError(Exception):
    """A statement the endpoint refuses: PostgreSQL's SQLSTATE and a message naming the part at fault."""

    def __init__(self, message: str, code: str = "42601", hint: str | None = None):
        super().__init__(message)
        self.code, self.hint = code, hint


@dataclass(frozen=True)
class Statement:
    text: str
    keyword: str  # the first word, lowercased: select, set, show, begin, declare, fetch...


def split(sql: str) -> list[Statement]:
    """The statements of a query string, split at semicolons outside quotes and comments."""
    try:
        tokens = sqlglot.tokenize(sql, read="postgres")
    except TokenError as exc:
        raise SqlError(_token_error(str(exc), sql)) from None
    statements, start = [], 0
    for token in [*tokens, None]:
        if token is None or token.token_type == TokenType.SEMICOLON:
            end = len(sql) if token is None else token.start
            text = sql[start:end].strip()
            if text:
                word = re.match(r"[A-Za-z_]+", text)
                statements.append(Statement(text, word.group(0).lower() if word else ""))
            if token is not None:
                start = token.end + 1
    return statements


def _token_error(message: str, sql: str) -> str:
    """PostgreSQL's message for what the tokenizer could not read: mostly an unterminated quote."""
    opened = _unterminated(sql)
    if opened is not None:
        kind = {"'": "quoted string", '"': "quoted identifier", "$": "dollar-quoted string"}[sql[opened]]
        return f'unterminated {kind} at or near "{sql[opened:opened + 40]}"'
    return f"could not read the statement: {message.splitlines()[0][:200]}"


def _unterminated(sql: str) -> int | None:
    """Where a quote opens that never closes (outside comments), if one does."""
    i, n = 0, len(sql)
    while i < n:
        if sql.startswith("--", i):
            i = sql.find("\n", i)
            i = n if i < 0 else i
        elif sql.startswith("/*", i):
            i = sql.find("*/", i)
            if i < 0:
                return None
            i += 2
            continue
        elif sql[i] in "'\"":
            end = sql.find(sql[i], i + 1)
            while end >= 0 and sql[i] == "'" and sql.startswith("''", end):
                end = sql.find("'", end + 2)
            if end < 0:
                return i
            i = end
        elif sql[i] == "$":
            tag = re.match(r"\$[A-Za-z_]*\$", sql[i:])
            if tag:
                end = sql.find(tag.group(0), i + len(tag.group(0)))
                if end < 0:
                    return i
                i = end + len(tag.group(0)) - 1
        i += 1
    return None


def parse(sql: str) -> exp.Expression:
    """One statement as sqlglot's tree, in PostgreSQL's dialect; syntax errors as SQLSTATE 42601."""
    try:
        try:
            trees = [t for t in sqlglot.parse(sql, read="postgres") if t is not None]
        except ParseError:
            labelled = _quote_keyword_labels(sql)
            if labelled == sql:
                raise
            trees = [t for t in sqlglot.parse(labelled, read="postgres") if t is not None]
    except TokenError as exc:
        raise SqlError(_token_error(str(exc), sql)) from None
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        near = first.get("highlight") or ""
        message = str(first.get("description") or exc).splitlines()[0]
        raise SqlError(f"syntax error at or near {near!r}: {message}" if near else f"syntax error: {message}") \
            from None
    except RecursionError:
        raise SqlError("statement too complex: nested too deeply", "54001") from None
    if len(trees) != 1:
        raise SqlError("send one statement at a time")
    return trees[0]


def _quote_keyword_labels(sql: str) -> str:
    """PostgreSQL takes any keyword as an output column label after AS (Metabase's privilege query
    names columns `select`, `update`, `table`); sqlglot does not, so such labels are quoted."""
    tokens = sqlglot.tokenize(sql, read="postgres")
    out, last = [], 0
    for previous, token in zip(tokens, tokens[1:], strict=False):
        if previous.token_type == TokenType.ALIAS and token.token_type not in (
                TokenType.VAR, TokenType.IDENTIFIER, TokenType.STRING, TokenType.NUMBER) and token.text.isidentifier():
            out.append(sql[last:token.start])
            out.append(f'"{token.text.lower()}"')
            last = token.end + 1
    out.append(sql[last:])
    return "".join(out)


# -- output column names, as PostgreSQL's FigureColname gives them ------------------------------
_NAMED_NODES = {exp.Case: "case", exp.Coalesce: "coalesce", exp.Nullif: "nullif", exp.Greatest: "greatest",
                exp.Least: "least", exp.Array: "array", exp.Exists: "exists", exp.CurrentDate: "current_date",
                exp.CurrentTimestamp: "now", exp.CurrentTime: "current_time", exp.CurrentUser: "current_user",
                exp.CurrentSchema: "current_schema", exp.Count: "count", exp.CurrentVersion: "version"}


def column_name(node: exp.Expression) -> str:
    """The name PostgreSQL gives an unaliased output column."""
    if isinstance(node, exp.Alias):
        return node.alias
    if isinstance(node, exp.Column):
        return node.name
    if isinstance(node, exp.Cast | exp.TryCast):
        inner = column_name(node.this)
        if inner != "?column?":
            return inner
        kind = node.to.sql("postgres").lower().split("(")[0].split(".")[-1].strip('"')
        return {"int": "int4", "integer": "int4", "bigint": "int8", "smallint": "int2", "boolean": "bool",
                "double precision": "float8", "real": "float4", "character varying": "varchar"}.get(kind, kind)
    if isinstance(node, exp.Paren):
        return column_name(node.this)
    if isinstance(node, exp.Bracket):
        return column_name(node.this)
    if isinstance(node, exp.Dot) and isinstance(node.expression, exp.Func):
        return column_name(node.expression)
    if isinstance(node, exp.Dot):
        return node.expression.name if isinstance(node.expression, exp.Identifier) else "?column?"
    if isinstance(node, exp.Subquery) and isinstance(node.this, exp.Select) and len(node.this.expressions) == 1:
        return column_name(node.this.expressions[0])
    for kind, name in _NAMED_NODES.items():
        if isinstance(node, kind):
            return name
    if isinstance(node, exp.Anonymous):
        return str(node.this).lower()
    if isinstance(node, exp.Func):
        return node.sql_name().lower()
    return "?column?"


def name_outputs(select: exp.Expression) -> None:
    """Alias every output column of a SELECT (of a set operation: its first) with PostgreSQL's name."""
    while isinstance(select, exp.SetOperation | exp.Subquery):
        select = select.this
    if not isinstance(select, exp.Select):
        return
    for i, projection in enumerate(select.expressions):
        if isinstance(projection, exp.Star | exp.Alias) or (
                isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star)):
            continue
        select.expressions[i] = exp.alias_(projection, column_name(projection), quoted=True)


# -- PostgreSQL -> DuckDB ----------------------------------------------------------------------
# type names (as PostgreSQL spells them, schema dropped) -> DuckDB's
_TYPES = {"name": "VARCHAR", '"char"': "VARCHAR", "char": "VARCHAR", "bpchar": "VARCHAR", "text": "VARCHAR",
          "oid": "UINTEGER", "xid": "UINTEGER", "cid": "UINTEGER", "regproc": "VARCHAR", "regprocedure": "VARCHAR",
          "int2vector": "SMALLINT[]", "oidvector": "UINTEGER[]", "pg_node_tree": "VARCHAR", "aclitem": "VARCHAR",
          "regconfig": "UINTEGER", "regoper": "VARCHAR", "information_schema.sql_identifier": "VARCHAR",
          "sql_identifier": "VARCHAR", "character_data": "VARCHAR", "cardinal_number": "INTEGER",
          "yes_or_no": "VARCHAR", "text[]": "VARCHAR[]", "name[]": "VARCHAR[]", "oid[]": "UINTEGER[]",
          '"char"[]': "VARCHAR[]", "int4": "INTEGER", "int8": "BIGINT", "int2": "SMALLINT", "float8": "DOUBLE",
          "float4": "FLOAT", "bool": "BOOLEAN", "timestamptz": "TIMESTAMPTZ", "jsonb": "JSON"}
# object identifier types: a literal names an object, and is looked up
_REG_LOOKUPS = {"regclass": "regclass_oid", "regtype": "regtype_oid", "regnamespace": "regnamespace_oid",
                "regrole": "regrole_oid"}
_REG_NAMES = {"regclass": "regclass_name", "regtype": "regtype_name", "regnamespace": "regnamespace_name",
              "regrole": "pg_get_userbyid"}
# functions the emulated catalog defines as macros (pg_catalog.py), called by their qualified names
MACROS = frozenset({
    "current_database", "current_schema", "current_schemas", "pg_current_user", "version", "pg_backend_pid",
    "current_setting", "set_config", "format_type", "pg_get_userbyid", "pg_table_is_visible", "pg_type_is_visible",
    "pg_function_is_visible", "pg_get_expr", "pg_get_indexdef", "pg_get_constraintdef", "pg_get_viewdef",
    "pg_get_function_result", "pg_get_function_arguments", "pg_get_function_identity_arguments",
    "pg_get_triggerdef", "pg_get_ruledef", "pg_get_partkeydef", "pg_get_statisticsobjdef_columns",
    "pg_get_serial_sequence", "obj_description", "col_description", "shobj_description", "pg_encoding_to_char",
    "pg_char_to_encoding", "has_table_privilege", "has_any_column_privilege", "has_column_privilege",
    "has_schema_privilege", "has_database_privilege", "has_function_privilege", "has_sequence_privilege",
    "has_type_privilege", "has_tablespace_privilege", "pg_has_role", "pg_is_in_recovery",
    "pg_postmaster_start_time", "pg_relation_size", "pg_total_relation_size", "pg_table_size", "pg_indexes_size",
    "pg_size_pretty", "array_upper", "array_lower", "_pg_expandarray", "regclass_oid", "regclass_name",
    "regtype_oid", "regtype_name", "regnamespace_oid", "regnamespace_name", "regrole_oid", "txid_current",
    "pg_now", "quote_ident", "quote_literal", "pg_typeof", "inet_server_addr", "inet_server_port",
    "inet_client_addr", "pg_get_keywords", "pg_tablespace_location", "to_regclass", "to_regtype",
    "pg_jit_available", "pg_get_function_sqlbody", "pg_relation_is_publishable", "pg_cancel_backend",
    "pg_terminate_backend",
})
_NOW_FUNCTIONS = {"now", "transaction_timestamp", "statement_timestamp", "clock_timestamp"}


def macro(name: str, *args: exp.Expression) -> exp.Expression:
    """A call of one of the emulated catalog's functions."""
    return exp.Dot.build([exp.to_identifier(CATALOG_DB), exp.to_identifier("main"),
                          exp.Anonymous(this=name, expressions=list(args))])


def _type_key(to: exp.DataType) -> str:
    return to.sql("postgres").lower().replace('"pg_catalog".', "").replace("pg_catalog.", "")


def _cast(node: exp.Cast) -> exp.Expression:
    key = _type_key(node.to)
    inner = node.this
    if isinstance(node.to, exp.ObjectIdentifier) or key in _REG_LOOKUPS or key in ("regproc", "regprocedure"):
        key = str(node.to.this).lower() if isinstance(node.to, exp.ObjectIdentifier) else key
        if isinstance(inner, exp.Literal) and inner.is_string and key in ("regproc", "regprocedure"):
            return exp.Literal.string(inner.this.split(".")[-1].split("(")[0].strip('"'))
        if _is_text(inner) and key in _REG_LOOKUPS:
            return macro(_REG_LOOKUPS[key], inner)  # a name: looked up
        return inner  # an object identifier is its oid (procedures: their name)
    if key in ("text", "varchar", "name", "character varying") and isinstance(inner, exp.Cast):
        inner_key = str(inner.to.this).lower() if isinstance(inner.to, exp.ObjectIdentifier) else _type_key(inner.to)
        if inner_key in _REG_NAMES:
            return macro(_REG_NAMES[inner_key], inner.this)
    array = key.endswith("[]")
    base = key.removesuffix("[]")
    if base in _TYPES:
        return exp.Cast(this=inner, to=exp.DataType.build(_TYPES[base] + ("[]" if array else ""), dialect="duckdb"))
    if "pg_catalog" in node.to.sql("postgres").lower():
        return exp.Cast(this=inner, to=exp.DataType.build(key, dialect="postgres"))
    return node


def _is_text(node: exp.Expression) -> bool:
    """Whether an expression is text (a name to look up), not an oid, as far as its form tells."""
    if isinstance(node, exp.Literal):
        return node.is_string
    if isinstance(node, exp.DPipe | exp.Concat | exp.Format):
        return True
    if isinstance(node, exp.Cast):
        return _type_key(node.to) in ("text", "varchar", "name", "character varying")
    if isinstance(node, exp.Dot) and isinstance(node.expression, exp.Anonymous):
        return str(node.expression.this).lower() in ("printf", "quote_ident", "concat")
    return isinstance(node, exp.Anonymous) and str(node.this).lower() in ("printf", "format", "quote_ident")


def _function_name(node: exp.Expression) -> str | None:
    if isinstance(node, exp.Anonymous):
        return str(node.this).lower()
    return None


def _format(args: list[exp.Expression]) -> exp.Expression:
    """PostgreSQL's format(): %s, %I (identifier) and %L (literal) onto DuckDB's printf."""
    template, values = args[0], list(args[1:])
    if not (isinstance(template, exp.Literal) and template.is_string):
        return exp.Anonymous(this="printf", expressions=args)
    out, converted, i = [], [], 0
    for piece in re.split(r"(%%|%[sIL])", template.this):
        if piece in ("%s", "%I", "%L") and i < len(values):
            value = values[i]
            i += 1
            converted.append(macro("quote_ident", value) if piece == "%I"
                             else macro("quote_literal", value) if piece == "%L" else value)
            out.append("%s")
        else:
            out.append(piece)
    return exp.Anonymous(this="printf", expressions=[exp.Literal.string("".join(out)), *converted])


def _add_escape(node: exp.Like | exp.ILike) -> exp.Expression:
    if isinstance(node.parent, exp.Escape):
        return node
    return exp.Escape(this=node.copy(), expression=exp.Literal.string("\\"))


def _operator(node: exp.Operator) -> exp.Expression:
    op = str(node.args.get("operator", "")).split(".")[-1].strip()
    right = node.expression.this if isinstance(node.expression, exp.Collate) else node.expression
    left = node.this
    table = {"~": lambda: exp.RegexpLike(this=left, expression=right),
             "!~": lambda: exp.Not(this=exp.RegexpLike(this=left, expression=right)),
             "~*": lambda: exp.RegexpILike(this=left, expression=right),
             "!~*": lambda: exp.Not(this=exp.RegexpILike(this=left, expression=right)),
             "=": lambda: exp.EQ(this=left, expression=right), "<>": lambda: exp.NEQ(this=left, expression=right),
             "~~": lambda: exp.Like(this=left, expression=right)}
    if op not in table:
        raise SqlError(f"operator OPERATOR({op}) is not supported", "42883")
    return table[op]()


def to_duckdb(tree: exp.Expression, relations: dict[tuple[str, str], str], session_db: str) -> exp.Expression:
    """The statement rewritten for the catalog's DuckDB database.

    `relations` maps (schema, table) of the emulated catalog to their DuckDB names; an unknown one
    raises SQLSTATE 42P01 as PostgreSQL would. CTE names are left alone.
    """
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}

    def rewrite(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Table) and isinstance(node.this, exp.Identifier):
            return _table(node, relations, ctes, session_db)
        if isinstance(node, exp.Cast):
            return _cast(node)
        if isinstance(node, exp.Collate):
            return node.this
        if isinstance(node, exp.Operator):
            return _operator(node)
        if isinstance(node, exp.Like | exp.ILike):
            return _add_escape(node)
        if isinstance(node, exp.Dot) and not isinstance(node.expression, exp.Identifier) \
                and isinstance(node.this, exp.Identifier) \
                and node.this.name.lower() in ("pg_catalog", "information_schema"):
            return node.expression  # a qualified function call, already rewritten
        if isinstance(node, exp.Column) and node.args.get("db"):
            return exp.Column(this=node.this, table=node.args.get("table"))
        if isinstance(node, exp.Table) and isinstance(node.this, exp.Func | exp.Dot):
            return _table_function(node)
        if isinstance(node, exp.CurrentUser) or (isinstance(node, exp.Column) and not node.table
                                                 and node.name.lower() in ("session_user", "user", "current_role")
                                                 and not node.this.quoted):
            return macro("pg_current_user")
        if isinstance(node, exp.SessionUser):
            return macro("pg_current_user")
        if isinstance(node, exp.CurrentCatalog):
            return macro("current_database")
        if isinstance(node, exp.CurrentSchema):
            return macro("current_schema")
        if isinstance(node, exp.CurrentTimestamp):
            return macro("pg_now")
        if isinstance(node, exp.CurrentDate):
            return exp.Cast(this=macro("pg_now"), to=exp.DataType.build("DATE"))
        if isinstance(node, exp.Format):
            return _format([node.this, *node.expressions])
        name = _function_name(node)
        if name is not None:
            if name in _NOW_FUNCTIONS:
                return macro("pg_now")
            if name == "format":
                return _format(list(node.expressions))
            if name in ("user", "session_user", "current_user"):
                return macro("pg_current_user")
            if name == "json_build_object":
                return exp.Anonymous(this="json_object", expressions=list(node.expressions))
            if name in MACROS:
                return macro(name, *node.expressions)
        if isinstance(node, exp.CurrentVersion):
            return macro("version")
        return node

    return _post_order(tree.copy(), rewrite)


def _post_order(node: exp.Expression, fn) -> exp.Expression:
    """`fn` applied to every node, children first (sqlglot's transform does not revisit the
    children of a node it replaced)."""
    for key, value in list(node.args.items()):
        if isinstance(value, exp.Expression):
            node.set(key, _post_order(value, fn))
        elif isinstance(value, list):
            node.set(key, [_post_order(v, fn) if isinstance(v, exp.Expression) else v for v in value])
    return fn(node)


_TABLE_FUNCTIONS = {"generate_series", "unnest", "pg_get_keywords", "_pg_expandarray", "json_each",
                    "jsonb_each", "json_array_elements", "regexp_split_to_table", "string_to_table"}


def _table_function(node: exp.Table) -> exp.Table:
    """`generate_series(1, 3) s`: in PostgreSQL `s` also names the function's one column. Only
    PostgreSQL's set-returning functions are known: DuckDB's own (duckdb_tables(), read_csv()...) are
    not there for clients."""
    function = node.this
    if isinstance(function, exp.Dot) and isinstance(function.expression, exp.Anonymous):  # a macro, rewritten
        name = str(function.expression.this).lower()
    elif isinstance(function, exp.Anonymous):
        name = str(function.this).lower()
    else:
        name = {"EXPLODING_GENERATE_SERIES": "generate_series", "GENERATE_SERIES": "generate_series",
                "EXPLODE": "unnest", "UNNEST": "unnest"}.get(function.sql_name(), function.sql_name().lower())
    if name not in _TABLE_FUNCTIONS:
        raise SqlError(f"function {name}() does not exist", "42883")
    alias = node.args.get("alias")
    if alias is not None and not alias.columns and isinstance(node.this, exp.Anonymous | exp.GenerateSeries
                                                                  | exp.Unnest | exp.Explode):
        alias = exp.TableAlias(this=alias.this.copy(), columns=[alias.this.copy()])
    return exp.Table(this=node.this, alias=alias)


def _table(node: exp.Table, relations: dict[tuple[str, str], str], ctes: set[str], session_db: str) -> exp.Table:
    name, schema, database = node.name.lower(), (node.db or "").lower(), (node.catalog or "").lower()
    if database and database != session_db.lower():
        raise SqlError(f"cross-database references are not implemented: {node.sql('postgres')}", "0A000")
    if not schema and name in ctes:
        return node
    candidates = [(schema, name)] if schema else [("pg_catalog", name), ("public", name)]
    for key in candidates:
        target = relations.get(key)
        if target is not None and "." not in target:  # a relation of the session's own (query results)
            return exp.Table(this=exp.to_identifier(target), alias=node.args.get("alias"))
        if target is not None:
            db, inner_schema, table = target.split(".")
            alias = node.args.get("alias") or (exp.TableAlias(this=exp.to_identifier(name))
                                                if not node.alias else None)
            return exp.Table(this=exp.to_identifier(table), db=exp.to_identifier(inner_schema),
                             catalog=exp.to_identifier(db), alias=alias)
    shown = f"{schema}.{name}" if schema else name
    raise SqlError(f'relation "{shown}" does not exist', "42P01")


def duckdb_sql(tree: exp.Expression) -> str:
    return tree.sql("duckdb")
