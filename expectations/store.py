"""The warehouse tables that keep quality results and quarantined rows.

`quality.quality_results` has one row per expectation per validation (reports read it).
`quality.quarantined_rows` holds the keys of rows that failed a row-level expectation: the rows
themselves stay in their raw table (nothing is deleted) and the staging models leave held keys
out. A key is released, not deleted, when a later validation finds the row fixed.
`quality.validated_through` remembers, per check of an incremental frame, the newest load it
has read and the definition it was read with (see `expectations.spec.Incremental`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import duckdb

SCHEMA = "quality"
RESULTS = f"{SCHEMA}.quality_results"
QUARANTINE = f"{SCHEMA}.quarantined_rows"
VALIDATED_THROUGH = f"{SCHEMA}.validated_through"

DDL = (
    f"create schema if not exists {SCHEMA}",
    f"""create table if not exists {RESULTS} (
        run_id varchar not null,
        suite varchar not null,
        expectation varchar not null,
        asset varchar not null,
        severity varchar not null,
        success boolean not null,
        observed_value varchar,
        expected varchar,
        unexpected_count bigint,
        held_rows bigint,
        validated_at timestamptz not null
    )""",
    f"""create table if not exists {QUARANTINE} (
        source_table varchar not null,
        row_key varchar not null,
        suite varchar not null,
        expectation varchar not null,
        reason varchar not null,
        run_id varchar not null,
        quarantined_at timestamptz not null,
        released_at timestamptz,
        released_run_id varchar
    )""",
    f"""create table if not exists {VALIDATED_THROUGH} (
        suite varchar not null,
        expectation varchar not null,
        definition varchar not null,
        loaded_through timestamptz not null,
        run_id varchar not null,
        validated_at timestamptz not null,
        primary key (suite, expectation)
    )""",
)


def ensure_tables(conn: duckdb.DuckDBPyConnection) -> None:
    for statement in DDL:
        conn.execute(statement)


def record_results(conn: duckdb.DuckDBPyConnection, rows: Iterable[tuple]) -> None:
    """Rows in the column order of `quality_results`."""
    conn.executemany(f"insert into {RESULTS} values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", list(rows))


def held_keys(conn: duckdb.DuckDBPyConnection, suite: str, expectation: str) -> set[str]:
    """Keys this expectation holds now (quarantined and not released)."""
    rows = conn.execute(
        f"select row_key from {QUARANTINE} where suite = ? and expectation = ? and released_at is null",
        [suite, expectation]).fetchall()
    return {key for (key,) in rows}


def hold(conn: duckdb.DuckDBPyConnection, source_table: str, suite: str, expectation: str,
         reasons: dict[str, str], run_id: str, at: datetime) -> None:
    conn.executemany(
        f"insert into {QUARANTINE} (source_table, row_key, suite, expectation, reason, run_id, quarantined_at) "
        "values (?, ?, ?, ?, ?, ?, ?)",
        [(source_table, key, suite, expectation, reason, run_id, at) for key, reason in reasons.items()])


def release(conn: duckdb.DuckDBPyConnection, suite: str, expectation: str, keys: Iterable[str],
            run_id: str, at: datetime) -> None:
    conn.executemany(
        f"update {QUARANTINE} set released_at = ?, released_run_id = ? "
        "where suite = ? and expectation = ? and row_key = ? and released_at is null",
        [(at, run_id, suite, expectation, key) for key in keys])


def validated_through(conn: duckdb.DuckDBPyConnection, suite: str,
                      definitions: dict[str, str]) -> dict[str, datetime | None]:
    """Per check, the newest load it has read; None where it never ran or ran with another definition."""
    rows = conn.execute(f"select expectation, definition, loaded_through from {VALIDATED_THROUGH} "
                        "where suite = ?", [suite]).fetchall()
    found = {name: through for name, definition, through in rows if definitions.get(name) == definition}
    return {name: found.get(name) for name in definitions}


def advance(conn: duckdb.DuckDBPyConnection, suite: str, expectation: str, definition: str,
            loaded_through: datetime, run_id: str, at: datetime) -> None:
    conn.execute(
        f"insert or replace into {VALIDATED_THROUGH} values (?, ?, ?, ?, ?, ?)",
        [suite, expectation, definition, loaded_through, run_id, at])
