"""The warehouse tables the forecasting assets write, in schema `ml`, replaced whole each time.

Readers (the published snapshot, reports, the forecast mart) see a table either before or after
a run, never half of it: DuckDB replaces it in one statement, Postgres in one transaction.
"""

from __future__ import annotations

import pandas as pd

SCHEMA = "ml"


def replace_table(env, name: str, frame: pd.DataFrame) -> int:
    if env.dbt_target == "duckdb":
        import duckdb

        with duckdb.connect(str(env.layout.warehouse)) as conn:
            conn.execute(f"create schema if not exists {SCHEMA}")
            conn.register("incoming", frame)
            conn.execute(f"create or replace table {SCHEMA}.{name} as select * from incoming")
            conn.unregister("incoming")
        return len(frame)
    import sqlalchemy

    engine = sqlalchemy.create_engine(env.postgres_dsn.replace("postgresql://", "postgresql+psycopg2://"))
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text(f"create schema if not exists {SCHEMA}"))
        frame.to_sql(name, conn, schema=SCHEMA, if_exists="replace", index=False)
    return len(frame)
