"""The warehouse tables the ML assets write (forecasts in schema `ml`, the experiment analysis in its own),
replaced whole each time.

Readers (the published snapshot, reports, the forecast mart) see a table either before or after
a run, never half of it: DuckDB replaces it in one statement, Postgres in one transaction.
"""

from __future__ import annotations

import pandas as pd

SCHEMA = "ml"


def replace_table(env, name: str, frame: pd.DataFrame, schema: str = SCHEMA) -> int:
    if env.dbt_target == "duckdb":
        import duckdb

        with duckdb.connect(str(env.layout.warehouse)) as conn:
            conn.execute(f"create schema if not exists {schema}")
            conn.register("incoming", frame)
            conn.execute(f"create or replace table {schema}.{name} as select * from incoming")
            conn.unregister("incoming")
        return len(frame)
    import sqlalchemy

    engine = sqlalchemy.create_engine(env.postgres_dsn.replace("postgresql://", "postgresql+psycopg2://"))
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text(f"create schema if not exists {schema}"))
        frame.to_sql(name, conn, schema=schema, if_exists="replace", index=False)
    return len(frame)
