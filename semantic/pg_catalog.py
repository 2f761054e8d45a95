"""PostgreSQL's system catalog for the SQL endpoint: `pg_catalog` and `information_schema`, emulated in
an in-memory DuckDB database that describes the served tables.

BI tools and drivers learn what a database holds by querying its catalog, each in its own way:
psql's `\\d` family, pgjdbc's DatabaseMetaData, SQLAlchemy's inspector, Metabase's and DBeaver's own
joins of pg_class, pg_attribute, pg_type, pg_description and information_schema. Rather than
recognising each query (Cube's SQL API emulates the catalog table by table on DataFusion), the
catalog here is data: every relation of PostgreSQL 15's `pg_catalog` and `information_schema`, with
PostgreSQL's own columns (`pg15_catalog.json`, dumped from a PostgreSQL 15 server), holding rows that
describe the served tables with PostgreSQL's OIDs and type names; PostgreSQL's catalog functions are
DuckDB macros over them. A client's query, rewritten by `pg_sql.py`, then runs as it is, joins,
filters, window functions and all, so queries no tool here sends work too.

Why not DuckDB's own pg_catalog over a "shell" database of empty tables shaped like the served ones
(the issue's suggestion): measured with DuckDB 1.4.4, its pg_type/pg_attribute carry DuckDB's type
OIDs (a date column has atttypid 15, not 1082), its schema is `main`, many of PostgreSQL's columns
are missing (pg_class.relhasoids, relispartition, pg_attribute.attidentity...) and pg_description,
pg_index or pg_am are absent; and a user schema named pg_catalog cannot be created beside the built-in
one ("Schema with name pg_catalog already exists", in the main and in attached databases), so it
cannot be overridden in place either. Mapping OIDs and names in its results would have to follow
every join a client writes. The emulated catalog lives instead in two attached in-memory databases
(`pgc` for pg_catalog, `isc` for information_schema) that references are rewritten to; DuckDB is
still the engine that runs the queries. Per-session values (the database and user names, `SET`
settings) live in each session's DuckDB connection: variables and temp tables.
"""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow

from semantic.pg_sql import CATALOG_DB, INFORMATION_DB, SESSION_RELATIONS
from semantic.sql_tables import Table

SHAPES_FILE = Path(__file__).with_name("pg15_catalog.json")
SERVER_VERSION = "15.0"
VERSION_STRING = f"PostgreSQL {SERVER_VERSION} (governed metrics over DuckDB) on x86_64-pc-linux-gnu"
OWNER_OID, OWNER = 10, "governed"
NAMESPACES = {"pg_catalog": 11, "pg_toast": 99, "public": 2200, "information_schema": 13207}
DATABASE_OID = 16384
FIRST_TABLE_OID = 16400
PG_CLASS_OID = 1259
UTF8 = 6
DEFAULT_COLLATION, C_COLLATION = 100, 950

# PostgreSQL catalog column types -> DuckDB's (oids as UINTEGER, so results come back typed oid)
_COLUMN_TYPES = {
    "oid": "UINTEGER", "regtype": "UINTEGER", "xid": "UINTEGER", "cid": "UINTEGER", "regproc": "VARCHAR",
    "name": "VARCHAR", "text": "VARCHAR", "char": "VARCHAR", "pg_node_tree": "VARCHAR", "pg_lsn": "VARCHAR",
    "inet": "VARCHAR", "pg_ndistinct": "VARCHAR", "pg_dependencies": "VARCHAR", "pg_mcv_list": "VARCHAR",
    "bool": "BOOLEAN", "int2": "SMALLINT", "int4": "INTEGER", "int8": "BIGINT", "float4": "FLOAT",
    "float8": "DOUBLE", "numeric": "DECIMAL(38,10)", "bytea": "BLOB", "interval": "INTERVAL",
    "timestamptz": "TIMESTAMPTZ", "int2vector": "SMALLINT[]", "oidvector": "UINTEGER[]", "_oid": "UINTEGER[]",
    "_regtype": "UINTEGER[]", "_int2": "SMALLINT[]", "_float4": "FLOAT[]", "_float8": "DOUBLE[]",
    "_bool": "BOOLEAN[]", "_text": "VARCHAR[]", "_name": "VARCHAR[]", "_char": "VARCHAR[]", "_aclitem": "VARCHAR[]",
    "anyarray": "VARCHAR[]", "_pg_statistic": "VARCHAR[]",
    # information_schema's domains
    "sql_identifier": "VARCHAR", "character_data": "VARCHAR", "yes_or_no": "VARCHAR",
    "cardinal_number": "INTEGER", "time_stamp": "TIMESTAMPTZ",
}
_INFORMATION_TYPES = {"sql_identifier": "name", "character_data": "varchar", "yes_or_no": "varchar",
                      "cardinal_number": "int4", "time_stamp": "timestamptz"}
# relations whose rows are built below; the others are empty, with PostgreSQL's columns
_VIEWS_OVER_TABLES = {
    "pg_catalog.pg_tables": """
        select n.nspname as schemaname, c.relname as tablename, a.rolname as tableowner, null as tablespace,
               c.relhasindex as hasindexes, c.relhasrules as hasrules, c.relhastriggers as hastriggers,
               c.relrowsecurity as rowsecurity
        from {c}.pg_class c join {c}.pg_namespace n on n.oid = c.relnamespace
        left join {c}.pg_authid a on a.oid = c.relowner where c.relkind in ('r', 'p')""",
    "pg_catalog.pg_views": """
        select n.nspname as schemaname, c.relname as viewname, a.rolname as viewowner, null as definition
        from {c}.pg_class c join {c}.pg_namespace n on n.oid = c.relnamespace
        left join {c}.pg_authid a on a.oid = c.relowner where c.relkind = 'v'""",
    "pg_catalog.pg_roles": """
        select rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication,
               rolconnlimit, '********' as rolpassword, rolvaliduntil, rolbypassrls, null::varchar[] as rolconfig, oid
        from {c}.pg_authid""",
    "pg_catalog.pg_user": """
        select rolname as usename, oid as usesysid, rolcreatedb as usecreatedb, rolsuper as usesuper,
               rolreplication as userepl, rolbypassrls as usebypassrls, '********' as passwd,
               rolvaliduntil as valuntil, null::varchar[] as useconfig
        from {c}.pg_authid where rolcanlogin""",
    "pg_catalog.pg_stat_user_tables": """
        select c.oid as relid, n.nspname as schemaname, c.relname, {zeros}
        from {c}.pg_class c join {c}.pg_namespace n on n.oid = c.relnamespace
        where c.relkind in ('r', 'p') and n.nspname not in ('pg_catalog', 'information_schema')""",
}


@dataclass(frozen=True)
class Shapes:
    relations: dict[str, dict]  # "schema.name" -> {"oid", "kind", "columns": [[name, typname]]}
    types: list[list]  # pg_type rows of the built-in types (see dump())
    access_methods: list[list]

    @classmethod
    def load(cls, path: Path = SHAPES_FILE) -> Shapes:
        data = json.loads(path.read_text())
        return cls(data["relations"], data["types"], data["access_methods"])

    def duckdb_columns(self, relation: str) -> list[tuple[str, str]]:
        return [(name, _COLUMN_TYPES.get(typname, "VARCHAR")) for name, typname in self.relations[relation]["columns"]]


_SHAPES: list[Shapes] = []


def shapes() -> Shapes:
    if not _SHAPES:
        _SHAPES.append(Shapes.load())
    return _SHAPES[0]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _default(duck_type: str):
    if duck_type == "BOOLEAN":
        return False
    if duck_type in ("UINTEGER", "SMALLINT", "INTEGER", "BIGINT", "FLOAT", "DOUBLE"):
        return 0
    return None


class CatalogDatabase:
    """The emulated catalog for one set of served tables; sessions get their own connections."""

    def __init__(self, tables: dict[str, Table], started_at: datetime | None = None):
        self.tables = tables
        self.shapes = shapes()
        self.started_at = started_at or datetime.now(UTC)
        self.types = {row[0]: row for row in self.shapes.types}
        self.type_oids = {row[1]: row[0] for row in self.shapes.types}
        self.db = duckdb.connect(":memory:", config={"threads": 1, "memory_limit": "512MB"})
        self.relations: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        self._build()
        # only SELECTs generated from parsed trees reach DuckDB; none may read files or the network
        self.db.execute("SET enable_external_access = false")

    # -- building ---------------------------------------------------------------------------
    def _build(self) -> None:
        db = self.db
        db.execute(f"ATTACH ':memory:' AS {CATALOG_DB}")
        db.execute(f"ATTACH ':memory:' AS {INFORMATION_DB}")
        self.class_rows, self.attribute_rows, self.description_rows = [], [], []
        self._describe_catalog_relations()
        self._describe_served_tables()
        rows = {
            "pg_catalog.pg_namespace": [{"oid": oid, "nspname": name, "nspowner": OWNER_OID}
                                        for name, oid in NAMESPACES.items()],
            "pg_catalog.pg_authid": [{"oid": OWNER_OID, "rolname": OWNER, "rolinherit": True, "rolcanlogin": True,
                                      "rolconnlimit": -1}],
            "pg_catalog.pg_am": [{"oid": oid, "amname": name, "amhandler": f"{name}handler", "amtype": kind}
                                 for oid, name, kind in self.shapes.access_methods],
            "pg_catalog.pg_type": [self._type_row(row) for row in self.shapes.types],
            "pg_catalog.pg_class": self.class_rows,
            "pg_catalog.pg_attribute": self.attribute_rows,
            "pg_catalog.pg_description": self.description_rows,
            "pg_catalog.pg_tablespace": [{"oid": 1663, "spcname": "pg_default", "spcowner": OWNER_OID},
                                         {"oid": 1664, "spcname": "pg_global", "spcowner": OWNER_OID}],
            "pg_catalog.pg_collation": [
                {"oid": oid, "collname": name, "collnamespace": NAMESPACES["pg_catalog"], "collowner": OWNER_OID,
                 "collprovider": provider, "collisdeterministic": True, "collencoding": -1,
                 "collcollate": None if provider == "d" else name, "collctype": None if provider == "d" else name}
                for oid, name, provider in ((DEFAULT_COLLATION, "default", "d"), (C_COLLATION, "C", "c"),
                                            (951, "POSIX", "c"))],
            "information_schema._tables": self._information_tables(),
            "information_schema._columns": self._information_columns(),
            "information_schema._schemata": [{"schema_name": name, "schema_owner": OWNER}
                                             for name in NAMESPACES if name != "pg_toast"],
        }
        for relation in self.shapes.relations:
            schema, name = relation.split(".")
            if relation in _VIEWS_OVER_TABLES or name in SESSION_RELATIONS \
                    or relation in ("information_schema.tables", "information_schema.columns",
                                    "information_schema.schemata"):
                continue
            self._create(relation, self.shapes.duckdb_columns(relation), rows.get(relation, []))
        for name in SESSION_RELATIONS:  # each session has its own; the macros are bound against these
            self._create_session_table(self.db, name)
        self._create_macros()
        for relation in ("information_schema._tables", "information_schema._columns", "information_schema._schemata"):
            public = relation.replace("._", ".")
            self._create(relation, self.shapes.duckdb_columns(public), rows[relation], register=False)
            columns = [name for name, _ in self.shapes.relations[public]["columns"]]
            catalog_column = "catalog_name" if public.endswith("schemata") else "table_catalog"
            select = ", ".join(f"{CATALOG_DB}.main.current_database() as {catalog_column}" if c == catalog_column
                               else _quote(c) for c in columns)
            db.execute(f"create view {INFORMATION_DB}.main.{public.split('.')[1]} as "
                       f"select {select} from {INFORMATION_DB}.main.{relation.split('.')[1]}")
            self.relations[("information_schema", public.split(".")[1])] = \
                f"{INFORMATION_DB}.main.{public.split('.')[1]}"
        for relation, body in _VIEWS_OVER_TABLES.items():
            zeros = ", ".join(f"0::BIGINT as {c}" if t == "int8" else f"null::TIMESTAMPTZ as {c}"
                              for c, t in self.shapes.relations[relation]["columns"][3:])
            name = relation.split(".")[1]
            db.execute(f"create view {CATALOG_DB}.main.{name} as "
                       + body.format(c=f"{CATALOG_DB}.main", zeros=zeros))
            self.relations[("pg_catalog", name)] = f"{CATALOG_DB}.main.{name}"
        for name in SESSION_RELATIONS:
            self.relations[("pg_catalog", name)] = f"temp.main.{name}"

    def _create(self, relation: str, columns: list[tuple[str, str]], rows: list[dict], register: bool = True) -> None:
        schema, name = relation.split(".")
        db_name = INFORMATION_DB if schema == "information_schema" else CATALOG_DB
        target = f"{db_name}.main.{_quote(name)}"
        self.db.execute(f"create table {target} ({', '.join(f'{_quote(c)} {t}' for c, t in columns)})")
        if rows:  # in one statement, from Arrow: row by row takes seconds for pg_attribute
            data = pyarrow.table({f"c{i}": [row.get(c, _default(t)) for row in rows]
                                  for i, (c, t) in enumerate(columns)})
            self.db.register("_rows", data)
            self.db.execute(f"insert into {target} select * from _rows")
            self.db.unregister("_rows")
        if register:
            self.relations[(schema, name)] = f"{db_name}.main.{name}"

    def _type_row(self, row: list) -> dict:
        (oid, name, length, byval, kind, category, preferred, delimiter, element, array, typin, typout, typrecv,
         typsend, align, storage, collation, _sql_name) = row
        return {"oid": oid, "typname": name, "typnamespace": NAMESPACES["pg_catalog"], "typowner": OWNER_OID,
                "typlen": length, "typbyval": byval, "typtype": kind, "typcategory": category,
                "typispreferred": preferred, "typisdefined": True, "typdelim": delimiter, "typrelid": 0,
                "typsubscript": "array_subscript_handler" if category == "A" else "-", "typelem": element,
                "typarray": array, "typinput": typin, "typoutput": typout, "typreceive": typrecv, "typsend": typsend,
                "typmodin": "-", "typmodout": "-", "typanalyze": "-", "typalign": align, "typstorage": storage,
                "typnotnull": False, "typbasetype": 0, "typtypmod": -1, "typndims": 0, "typcollation": collation}

    def _attribute(self, relid: int, position: int, name: str, type_oid: int) -> dict:
        row = self.types[type_oid]
        collation = row[16]
        return {"attrelid": relid, "attname": name, "atttypid": type_oid, "attstattarget": -1, "attlen": row[2],
                "attnum": position, "attndims": 1 if row[5] == "A" else 0, "attcacheoff": -1, "atttypmod": -1,
                "attbyval": row[3], "attalign": row[14], "attstorage": row[15], "attcompression": "",
                "attnotnull": False, "atthasdef": False, "atthasmissing": False, "attidentity": "",
                "attgenerated": "", "attisdropped": False, "attislocal": True, "attinhcount": 0,
                "attcollation": collation}

    def _class(self, oid: int, name: str, namespace: int, kind: str, columns: int) -> dict:
        return {"oid": oid, "relname": name, "relnamespace": namespace, "relowner": OWNER_OID,
                "relam": 2 if kind == "r" else 0, "relfilenode": oid if kind == "r" else 0, "reltuples": -1.0,
                "relpersistence": "p", "relkind": kind, "relnatts": columns, "relispopulated": True,
                "relreplident": "d" if kind == "r" else "n"}

    def _describe_catalog_relations(self) -> None:
        for relation, spec in self.shapes.relations.items():
            schema, name = relation.split(".")
            self.class_rows.append(self._class(spec["oid"], name, NAMESPACES[schema], spec["kind"],
                                               len(spec["columns"])))
            for i, (column, typname) in enumerate(spec["columns"], start=1):
                type_oid = self.type_oids.get(_INFORMATION_TYPES.get(typname, typname), self.type_oids["text"])
                self.attribute_rows.append(self._attribute(spec["oid"], i, column, type_oid))

    def _describe_served_tables(self) -> None:
        self.table_oids: dict[str, int] = {}
        for i, table in enumerate(self.tables.values()):
            oid = FIRST_TABLE_OID + i
            self.table_oids[table.name] = oid
            self.class_rows.append(self._class(oid, table.name, NAMESPACES["public"], "r", len(table.columns)))
            self.description_rows.append({"objoid": oid, "classoid": PG_CLASS_OID, "objsubid": 0,
                                          "description": table.description})
            for position, column in enumerate(table.columns, start=1):
                self.attribute_rows.append(self._attribute(oid, position, column.name, column.pg_type.oid))
                if column.description:
                    self.description_rows.append({"objoid": oid, "classoid": PG_CLASS_OID, "objsubid": position,
                                                  "description": column.description})

    def _information_tables(self) -> list[dict]:
        rows = [{"table_schema": r.split(".")[0], "table_name": r.split(".")[1],
                 "table_type": "VIEW" if spec["kind"] == "v" else "BASE TABLE", "is_insertable_into": "NO",
                 "is_typed": "NO"} for r, spec in self.shapes.relations.items()]
        rows += [{"table_schema": "public", "table_name": t.name, "table_type": "BASE TABLE",
                  "is_insertable_into": "NO", "is_typed": "NO"} for t in self.tables.values()]
        return rows

    def _information_columns(self) -> list[dict]:
        rows = []
        for table in self.tables.values():
            for position, column in enumerate(table.columns, start=1):
                rows.append(self._information_column("public", table.name, position, column.name,
                                                     column.pg_type.oid))
        for relation, spec in self.shapes.relations.items():
            schema, name = relation.split(".")
            for position, (column, typname) in enumerate(spec["columns"], start=1):
                type_oid = self.type_oids.get(_INFORMATION_TYPES.get(typname, typname), self.type_oids["text"])
                rows.append(self._information_column(schema, name, position, column, type_oid))
        return rows

    def _information_column(self, schema: str, table: str, position: int, name: str, type_oid: int) -> dict:
        row = self.types[type_oid]
        typname, category, sql_name = row[1], row[5], row[17]
        numeric = {"int2": (16, 2, 0), "int4": (32, 2, 0), "int8": (64, 2, 0), "float4": (24, 2, None),
                   "float8": (53, 2, None), "numeric": (None, 10, None)}.get(typname)
        return {"table_schema": schema, "table_name": table, "column_name": name, "ordinal_position": position,
                "is_nullable": "YES", "data_type": "ARRAY" if category == "A" else sql_name,
                "numeric_precision": numeric[0] if numeric else None,
                "numeric_precision_radix": numeric[1] if numeric else None,
                "numeric_scale": numeric[2] if numeric else None,
                "datetime_precision": 0 if typname == "date" else 6 if category == "D" else None,
                "udt_catalog": None, "udt_schema": "pg_catalog", "udt_name": typname, "dtd_identifier": str(position),
                "is_self_referencing": "NO", "is_identity": "NO", "identity_cycle": "NO", "is_generated": "NEVER",
                "is_updatable": "NO"}

    def _create_macros(self) -> None:
        c = f"{CATALOG_DB}.main"
        privilege = "regexp_matches(lower(p), '{}')"
        statements = [
            "current_database() as getvariable('pg_database')::VARCHAR",
            "current_schema() as 'public'",
            "current_schemas(implicit) as case when implicit then ['pg_catalog', 'public'] else ['public'] end",
            "pg_current_user() as getvariable('pg_user')::VARCHAR",
            f"version() as '{VERSION_STRING}'",
            "pg_backend_pid() as getvariable('pg_backend_pid')::INTEGER",
            # macros are expanded into the calling query: their own tables get aliases no query uses (_m)
            "current_setting(n) as (select _m.setting from temp.main.pg_settings _m where lower(_m.name) = lower(n)), "
            "(n, missing_ok) as (select _m.setting from temp.main.pg_settings _m where lower(_m.name) = lower(n))",
            "set_config(n, v, is_local) as v",
            f"format_type(t, m) as case when t is null then null else coalesce("
            f"(select _m.format from {c}._type_names _m where _m.oid = t), '???') end",
            f"pg_get_userbyid(o) as coalesce((select _m.rolname from {c}.pg_authid _m where _m.oid = o), "
            f"'unknown (OID=' || o || ')')",
            f"pg_table_is_visible(o) as exists (select 1 from {c}.pg_class _m where _m.oid = o and _m.relnamespace in "
            f"({NAMESPACES['pg_catalog']}, {NAMESPACES['public']}))",
            "pg_type_is_visible(o) as true", "pg_function_is_visible(o) as true",
            "pg_get_expr(e, r) as null::varchar, (e, r, p) as null::varchar",
            "pg_get_indexdef(o) as null::varchar, (o, c, p) as null::varchar",
            "pg_get_constraintdef(o) as null::varchar, (o, p) as null::varchar",
            "pg_get_viewdef(o) as null::varchar, (o, p) as null::varchar",
            "pg_get_function_result(o) as null::varchar", "pg_get_function_arguments(o) as null::varchar",
            "pg_get_function_identity_arguments(o) as null::varchar", "pg_get_function_sqlbody(o) as null::varchar",
            "pg_get_triggerdef(o) as null::varchar, (o, p) as null::varchar",
            "pg_get_ruledef(o) as null::varchar, (o, p) as null::varchar",
            "pg_get_partkeydef(o) as null::varchar", "pg_get_statisticsobjdef_columns(o) as null::varchar",
            "pg_get_serial_sequence(t, c) as null::varchar", "pg_tablespace_location(o) as ''",
            f"obj_description(o) as (select _m.description from {c}.pg_description _m where _m.objoid = o "
            f"and _m.objsubid = 0 limit 1), (o, cat) as (select _m.description from {c}.pg_description _m "
            f"where _m.objoid = o and _m.objsubid = 0 and _m.classoid = (select _n.oid from {c}.pg_class _n "
            f"where _n.relname = cat and _n.relnamespace = "
            f"{NAMESPACES['pg_catalog']}) limit 1)",
            f"col_description(o, n) as (select _m.description from {c}.pg_description _m where _m.objoid = o "
            f"and _m.objsubid = n and _m.classoid = {PG_CLASS_OID} limit 1)",
            "shobj_description(o, cat) as null::varchar",
            f"pg_encoding_to_char(e) as case when e = {UTF8} then 'UTF8' when e = 0 then 'SQL_ASCII' else '' end",
            f"pg_char_to_encoding(s) as case when upper(s) in ('UTF8', 'UTF-8', 'UNICODE') then {UTF8} else -1 end",
            f"has_table_privilege(t, p) as {privilege.format('select')}, "
            f"(u, t, p) as {privilege.format('select')}",
            f"has_any_column_privilege(t, p) as {privilege.format('select')}, "
            f"(u, t, p) as {privilege.format('select')}",
            f"has_column_privilege(t, col, p) as {privilege.format('select')}, "
            f"(u, t, col, p) as {privilege.format('select')}",
            f"has_schema_privilege(s, p) as {privilege.format('usage')}, (u, s, p) as {privilege.format('usage')}",
            f"has_database_privilege(d, p) as {privilege.format('connect|temp')}, "
            f"(u, d, p) as {privilege.format('connect|temp')}",
            "has_function_privilege(f, p) as true, (u, f, p) as true",
            "has_sequence_privilege(s, p) as false, (u, s, p) as false",
            "has_type_privilege(t, p) as true, (u, t, p) as true",
            "has_tablespace_privilege(t, p) as true, (u, t, p) as true",
            "pg_has_role(r, p) as true, (u, r, p) as true",
            "pg_is_in_recovery() as false", "pg_relation_is_publishable(o) as false", "pg_jit_available() as false",
            f"pg_postmaster_start_time() as TIMESTAMPTZ '{self.started_at.isoformat()}'",
            "pg_relation_size(o) as 0::BIGINT, (o, f) as 0::BIGINT", "pg_total_relation_size(o) as 0::BIGINT",
            "pg_table_size(o) as 0::BIGINT", "pg_indexes_size(o) as 0::BIGINT",
            "pg_size_pretty(n) as n || ' bytes'",
            "array_upper(a, d) as case when len(a) = 0 then null else len(a) end",
            "array_lower(a, d) as case when len(a) = 0 then null else 1 end",
            "_pg_expandarray(a) as unnest(list_transform(generate_series(1, len(a)), i -> {'x': a[i], 'n': i}))",
            f"regclass_oid(name) as (select _m.oid from {c}.pg_class _m where _m.relname = "
            "replace(string_split(name, '.')[-1], '\"', '') order by _m.relnamespace desc limit 1)",
            f"to_regclass(name) as {c}.regclass_oid(name)",
            f"regclass_name(o) as coalesce((select _m.relname from {c}.pg_class _m where _m.oid = o), o::varchar)",
            f"regtype_oid(name) as (select _m.oid from {c}._type_names _m where _m.typname = lower(name) "
            "or _m.format = lower(name) limit 1)",
            f"to_regtype(name) as {c}.regtype_oid(name)",
            f"regtype_name(o) as {c}.format_type(o, null)",
            f"regnamespace_oid(name) as (select _m.oid from {c}.pg_namespace _m "
            "where _m.nspname = replace(name, '\"', ''))",
            f"regnamespace_name(o) as (select _m.nspname from {c}.pg_namespace _m where _m.oid = o)",
            f"regrole_oid(name) as (select _m.oid from {c}.pg_authid _m where _m.rolname = replace(name, '\"', ''))",
            "txid_current() as 1::BIGINT",
            "pg_now() as coalesce(getvariable('pg_now')::TIMESTAMPTZ, get_current_timestamp())",
            "quote_ident(s) as case when regexp_full_match(s, '[a-z_][a-z0-9_$]*') then s "
            "else '\"' || replace(s, '\"', '\"\"') || '\"' end",
            "quote_literal(s) as '''' || replace(s::varchar, '''', '''''') || ''''",
            "pg_typeof(x) as lower(typeof(x))",
            "inet_server_addr() as null::varchar", "inet_server_port() as null::integer",
            "inet_client_addr() as null::varchar",
            "pg_cancel_backend(p) as false", "pg_terminate_backend(p) as false",
        ]
        db = self.db
        db.execute(f"create table {c}._type_names as select oid::UINTEGER as oid, typname, format "
                   f"from (values {', '.join(self._type_name_values())}) t(oid, typname, format)")
        for body in statements:
            db.execute(f"create macro {c}.{body}")
        db.execute(f"create macro {c}.pg_get_keywords() as table "
                   "select null::varchar as word, null::varchar as catcode, null::varchar as catdesc where false")

    def _type_name_values(self) -> list[str]:
        def lit(text: str) -> str:
            return "'" + text.replace("'", "''") + "'"
        return [f"({row[0]}, {lit(row[1])}, {lit(row[17])})" for row in self.shapes.types]

    # -- sessions -----------------------------------------------------------------------------
    def connect(self, database: str, user: str, backend_pid: int, settings: dict[str, str],
                now: datetime | None) -> duckdb.DuckDBPyConnection:
        """A connection for one client session, with its own database name, user and settings."""
        with self._lock:
            conn = self.db.cursor()
        conn.execute(f"SET search_path = 'memory.main,{CATALOG_DB}.main'")
        conn.execute("SET VARIABLE pg_database = ?", [database])
        conn.execute("SET VARIABLE pg_user = ?", [user])
        conn.execute("SET VARIABLE pg_backend_pid = ?", [backend_pid])
        if now is not None:
            conn.execute("SET VARIABLE pg_now = ?", [now.isoformat()])
        for name in SESSION_RELATIONS:
            self._create_session_table(conn, name)
        columns = self.shapes.duckdb_columns("pg_catalog.pg_database")
        row = {"oid": DATABASE_OID, "datname": database, "datdba": OWNER_OID, "encoding": UTF8, "datlocprovider": "c",
               "datallowconn": True, "datconnlimit": -1, "dattablespace": 1663, "datcollate": "C.UTF-8",
               "datctype": "C.UTF-8"}
        conn.execute(f"insert into temp.main.pg_database values ({', '.join('?' for _ in columns)})",
                     [row.get(c, _default(t)) for c, t in columns])
        for name, value in settings.items():
            self.set(conn, name, value)
        return conn

    def _create_session_table(self, conn: duckdb.DuckDBPyConnection, name: str) -> None:
        columns = self.shapes.duckdb_columns(f"pg_catalog.{name}")
        conn.execute(f"create temp table {name} ({', '.join(f'{_quote(c)} {t}' for c, t in columns)})")

    @staticmethod
    def set(conn: duckdb.DuckDBPyConnection, name: str, value: str) -> None:
        """A session setting, as pg_settings and current_setting() show it."""
        conn.execute("delete from temp.main.pg_settings where lower(name) = lower(?)", [name])
        conn.execute("insert into temp.main.pg_settings (name, setting, context, vartype, source) "
                     "values (?, ?, 'user', 'string', 'session')", [name, value])


class Catalogs:
    """The emulated catalog of the current catalog of members (rebuilt when the members change)."""

    def __init__(self, service, tables_of):
        self.service, self.tables_of = service, tables_of
        self._lock = threading.Lock()
        self._current: tuple[object, CatalogDatabase] | None = None

    def get(self) -> CatalogDatabase:
        members = self.service.catalog
        current = self._current
        if current is not None and current[0] is members:
            return current[1]
        with self._lock:
            served = self.tables_of(members)
            if self._current is None or self._current[1].tables != served:
                self._current = (members, CatalogDatabase(served))
            else:  # a new version with the same tables: keep the catalog
                self._current = (members, self._current[1])
            return self._current[1]


def dump(conninfo: str) -> str:
    """The shapes file's content, read from a PostgreSQL 15 server (`--dump <conninfo>`)."""
    import psycopg

    with psycopg.connect(conninfo) as conn:
        relations = conn.execute("""
            select n.nspname || '.' || c.relname, c.oid::int8, c.relkind::text,
                   json_agg(json_build_array(a.attname::text, t.typname::text) order by a.attnum)
            from pg_class c join pg_namespace n on n.oid = c.relnamespace
            join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
            join pg_type t on t.oid = a.atttypid
            where n.nspname in ('pg_catalog', 'information_schema') and c.relkind in ('r', 'v')
            group by 1, 2, 3 order by 1""").fetchall()
        types = conn.execute("""
            select t.oid::int8, t.typname::text, t.typlen, t.typbyval, t.typtype::text, t.typcategory::text,
                   t.typispreferred, t.typdelim::text, t.typelem::int8, t.typarray::int8, t.typinput::text,
                   t.typoutput::text, t.typreceive::text, t.typsend::text, t.typalign::text, t.typstorage::text,
                   t.typcollation::int8, format_type(t.oid, null)
            from pg_type t join pg_namespace n on n.oid = t.typnamespace
            where n.nspname = 'pg_catalog' and t.typrelid = 0 order by t.oid""").fetchall()
        methods = conn.execute("select oid::int8, amname::text, amtype::text from pg_am order by oid").fetchall()
    lines = ['{"_": "PostgreSQL 15 system catalog shapes and built-in rows, written by '
             '`python -m semantic.pg_catalog --dump <conninfo>` against a PostgreSQL 15 server",', ' "relations": {']
    compact = {"separators": (",", ":")}
    lines += [f"  {json.dumps(name)}: {json.dumps({'oid': oid, 'kind': kind, 'columns': columns}, **compact)}"
              + ("," if i < len(relations) - 1 else "") for i, (name, oid, kind, columns) in enumerate(relations)]
    lines += [" },", ' "types": [']
    lines += [f"  {json.dumps(list(t), separators=(',', ':'))}" + ("," if i < len(types) - 1 else "")
              for i, t in enumerate(types)]
    lines += [" ],", f' "access_methods": {json.dumps([list(m) for m in methods], separators=(",", ":"))}', "}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "--dump":
        sys.exit("usage: python -m semantic.pg_catalog --dump '<libpq conninfo of a PostgreSQL 15 server>'")
    sys.stdout.write(dump(sys.argv[2]))
