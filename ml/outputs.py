"""The warehouse tables the ML assets write (forecasts in schema `ml`, the experiment analysis in its own),
replaced whole each time.

Readers (the published data, reports, the forecast mart) see a table either before or after a
run, never half of it (`Warehouse.replace_table`, whatever the engine).
"""

from __future__ import annotations

import pandas as pd

SCHEMA = "ml"


def replace_table(env, name: str, frame: pd.DataFrame, schema: str = SCHEMA) -> int:
    with env.warehouse(read_only=False) as warehouse:
        return warehouse.replace_table(schema, name, frame)
