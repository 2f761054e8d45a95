"""The app database through dlt's `sql_database` source: incremental on `updated_at`, merged on keys.

A second run reads only rows whose `updated_at` moved past the last load and updates them in
place. The schema contract decides what a new column does: `evolve` adds it to the raw table,
`freeze` stops the load with dlt's message naming the table and column. Rows of people who were
erased (`ingestion.privacy.Suppression`) are left out of the tables that name a user, should the
app database still hold them.
"""

from __future__ import annotations

from pathlib import Path

import dlt
import pyarrow as pa
from dlt.sources.sql_database import sql_database

from ingestion.privacy import Suppression
from ingestion.sample_data.app_db import PRIMARY_KEYS
from ingestion.sources.landing import Contract, check_contract


def _without(suppression: Suppression):
    """A map over the arrow tables of a resource that drops the rows of erased people."""
    def drop_erased(table: pa.Table) -> pa.Table:
        if "user_id" not in table.column_names or "tenant_id" not in table.column_names:
            return table
        keep = [not suppression.holds(tenant, user) for tenant, user in
                zip(table.column("tenant_id").to_pylist(), table.column("user_id").to_pylist(), strict=True)]
        return table if all(keep) else table.filter(pa.array(keep))
    return drop_erased


def app_db_source(db_path: str | Path, contract: Contract = "evolve", tables: dict[str, str] = PRIMARY_KEYS,
                  suppression: Suppression | None = None):
    check_contract(contract)
    source = sql_database(
        credentials=f"sqlite:///{Path(db_path).resolve()}",
        table_names=list(tables),
        backend="pyarrow",
        reflection_level="full",
        # reflect when the load runs, not when Dagster loads the code location
        defer_table_reflect=True,
    ).clone(with_name="app_db")
    for table, key in tables.items():
        source.resources[table].apply_hints(
            primary_key=key,
            write_disposition={"disposition": "merge", "strategy": "delete-insert"},
            incremental=dlt.sources.incremental("updated_at"),
        )
        if suppression:
            source.resources[table].add_map(_without(suppression))
    source.schema_contract = {"tables": "evolve", "columns": contract, "data_type": "freeze"}
    return source
