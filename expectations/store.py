"""The warehouse tables that keep quality results and quarantined rows.

`quality.quality_results` has one row per expectation per validation (reports read it).
`quality.quarantined_rows` holds the keys of rows that failed a row-level expectation: the rows
themselves stay in their raw table (nothing is deleted) and the staging models leave held keys
out. A key is released, not deleted, when a later validation finds the row fixed.
`quality.validated_through` remembers, per check of an incremental frame, the newest load it
has read and the definition it was read with (see `expectations.spec.Incremental`).

The statements are DuckDB's SQL, run through the warehouse connection of the target
(`semantic.warehouse.Warehouse`), which translates them for another engine.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

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


def ensure_tables(warehouse) -> None:
    for statement in DDL:
        warehouse.execute(statement)


def record_results(warehouse, rows: Iterable[tuple]) -> None:
    """Rows in the column order of `quality_results`."""
    warehouse.executemany(f"insert into {RESULTS} values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", list(rows))


def held_keys(warehouse, suite: str, expectation: str) -> set[str]:
    """Keys this expectation holds now (quarantined and not released)."""
    rows = warehouse.rows(
        f"select row_key from {QUARANTINE} where suite = ? and expectation = ? and released_at is null",
        [suite, expectation])
    return {key for (key,) in rows}


def hold(warehouse, source_table: str, suite: str, expectation: str,
         reasons: dict[str, str], run_id: str, at: datetime) -> None:
    warehouse.executemany(
        f"insert into {QUARANTINE} (source_table, row_key, suite, expectation, reason, run_id, quarantined_at) "
        "values (?, ?, ?, ?, ?, ?, ?)",
        [(source_table, key, suite, expectation, reason, run_id, at) for key, reason in reasons.items()])


def release(warehouse, suite: str, expectation: str, keys: Iterable[str], run_id: str, at: datetime) -> None:
    warehouse.executemany(
        f"update {QUARANTINE} set released_at = ?, released_run_id = ? "
        "where suite = ? and expectation = ? and row_key = ? and released_at is null",
        [(at, run_id, suite, expectation, key) for key in keys])


def validated_through(warehouse, suite: str, definitions: dict[str, str]) -> dict[str, datetime | None]:
    """Per check, the newest load it has read; None where it never ran or ran with another definition."""
    rows = warehouse.rows(f"select expectation, definition, loaded_through from {VALIDATED_THROUGH} "
                          "where suite = ?", [suite])
    found = {name: through for name, definition, through in rows if definitions.get(name) == definition}
    return {name: found.get(name) for name in definitions}


def advance(warehouse, suite: str, expectation: str, definition: str, loaded_through: datetime, run_id: str,
            at: datetime) -> None:
    warehouse.execute(
        f"insert into {VALIDATED_THROUGH} values (?, ?, ?, ?, ?, ?) on conflict (suite, expectation) do update set "
        "definition = excluded.definition, loaded_through = excluded.loaded_through, run_id = excluded.run_id, "
        "validated_at = excluded.validated_at",
        [suite, expectation, definition, loaded_through, run_id, at])
