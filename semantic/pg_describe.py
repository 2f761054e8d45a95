"""psql's describe commands (`\\d`, `\\dv`, `\\d metrics`) on the SQL endpoint.

psql answers them by querying the system catalogs (pg_class, pg_namespace, pg_attribute). There
are no catalogs here, only the one virtual table `metrics`, so the queries psql sends are
recognised by the columns they ask for and answered from the member catalog: `metrics` is a view
in schema `public`, its columns are the metrics (numeric), dimensions (text) and times (date).
Any other catalog query gets no rows, as before: none of those objects exist.
"""

from __future__ import annotations

import re

from semantic.members import GRANULARITIES, TIME_DIMENSION, Catalog
from semantic.sql_api import TABLE

OID = "16384"  # the view's object id in the answers; psql passes it back in its next queries
_NAME_PATTERN = re.compile(r"relname\s+OPERATOR\(pg_catalog\.~\)\s+'((?:[^']|'')*)'", re.I)
_RELATION_FLAGS = {"relchecks": "0", "relkind": "v", "relhasindex": "f", "relhasrules": "f", "relhastriggers": "f",
                   "relrowsecurity": "f", "relforcerowsecurity": "f", "relhasoids": "f", "relispartition": "f",
                   "reltablespace": "0", "relpersistence": "p", "relreplident": "d", "amname": None}


def columns(catalog: Catalog) -> list[tuple[str, str]]:
    """The view's columns as (name, PostgreSQL type), in the order `\\d metrics` lists them."""
    view = catalog.legacy
    found = [(m.metric, "numeric") for m in view.measures.values()]
    found += [(d.group_by, "text") for d in view.dimensions.values() if d.type != "time"]
    found += [(TIME_DIMENSION, "date")]
    found += [(f"{TIME_DIMENSION}__{g}", "date") for g in GRANULARITIES if g != "day"]
    return found


def _named(sql: str) -> bool:
    """Whether the relation-name pattern psql sent (if any) matches the view's name."""
    match = _NAME_PATTERN.search(sql)
    if match is None:
        return True
    try:
        return re.fullmatch(match.group(1).replace("''", "'"), TABLE) is not None
    except re.error:
        return False


def answer(sql: str, names: list[str], catalog: Catalog) -> list[list[str | None]]:
    """The rows for a catalog query psql sent, whose output columns are `names`."""
    if names[:4] == ["Schema", "Name", "Type", "Owner"]:  # \d, \dv: list relations
        lists_views = re.search(r"relkind\s+IN\s*\([^)]*'v'", sql, re.I) is not None
        return [["public", TABLE, "view", "governed"][:len(names)] + [None] * (len(names) - 4)] \
            if lists_views and _named(sql) else []
    if names[:3] == ["oid", "nspname", "relname"]:  # \d <name>: which relation
        return [[OID, "public", TABLE]] if _named(sql) else []
    if names[:1] == ["relchecks"] and f"'{OID}'" in sql:  # its kind and flags
        return [[_RELATION_FLAGS.get(name, "") for name in names]]
    if names[:1] == ["attname"] and f"'{OID}'" in sql:  # its columns
        values = {"attnotnull": "f", "attidentity": "", "attgenerated": ""}
        return [[column if name == "attname" else pg_type if name == "format_type" else values.get(name)
                 for name in names] for column, pg_type in columns(catalog)]
    return []
