"""The published data: the last asset of a batch, after every mart and its gates.

Readers (metrics server, reports) only ever see data that passed the quality gates: when a
blocking check on a mart fails, this asset does not run and the previous version stays current.
A run that changed only dbt models (a micro-batch) publishes just those, and the quality results.
Where it goes depends on the target (`semantic/publication.py`: snapshots of a DuckLake, or
PostgreSQL's published schemas).
"""


import json

import dagster as dg

from orchestration.assets.dbt import dbt_forecast_marts, dbt_models, dbt_project
from orchestration.assets.ml import FORECAST_KEY, INSIGHTS_KEYS
from orchestration.environment import SEMANTIC_MANIFEST, current_environment
from semantic import snapshots

PUBLISHED_KEY = dg.AssetKey("published_warehouse")
MART_KEYS = sorted((key for dbt_step in (dbt_models, dbt_forecast_marts) for key in dbt_step.keys
                    if key.path[0] == "marts"), key=lambda k: k.to_user_string())
# dbt models declare how the snapshot takes their new rows: `meta: {publish_cursor: <column>}`
# beside an incremental `unique_key`, and `publish_row_time: <column>` where a replaced row keeps
# that time (see snapshots.Cursor).
CURSOR_META, ROW_TIME_META = "publish_cursor", "publish_row_time"


def dbt_tables(manifest: dict) -> dict[str, snapshots.Cursor | None]:
    """Every dbt model's table ("schema.alias"), with its publish cursor where it declares one."""
    tables = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] != "model":
            continue
        config = node["config"]
        meta = config.get("meta") or {}
        column, key, row_time = meta.get(CURSOR_META), config.get("unique_key"), meta.get(ROW_TIME_META)
        if column is not None and not isinstance(key, str):
            raise ValueError(f"dbt model {node['name']}: meta.{CURSOR_META} needs a single-column unique_key, "
                             f"got {key!r}")
        if row_time is not None and column is None:
            raise ValueError(f"dbt model {node['name']}: meta.{ROW_TIME_META} needs meta.{CURSOR_META}")
        tables[f"{node['schema']}.{node['alias']}"] = None if column is None else \
            snapshots.Cursor(key, column, row_time)
    return tables


def run_changes(materialized: set[dg.AssetKey], tables: dict[str, snapshots.Cursor | None]) -> snapshots.Changes | None:
    """What a run changed for readers, when that is only dbt models; None to publish everything.

    Quality results change in every run that validated anything, so they are always taken whole.
    """
    published = {".".join(key.path) for key in materialized
                 if len(key.path) == 2 and key.path[0] in snapshots.PUBLISHED_SCHEMAS}
    if not published or not published <= tables.keys():
        return None
    return snapshots.Changes(tables={t: tables[t] for t in sorted(published)}, schemas=("quality",))


def _materialized_in_run(context: dg.AssetExecutionContext) -> set[dg.AssetKey]:
    records = context.instance.get_records_for_run(
        run_id=context.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    return {record.event_log_entry.dagster_event.asset_key for record in records}


@dg.asset(
    key=PUBLISHED_KEY,
    deps=[*MART_KEYS, FORECAST_KEY, *INSIGHTS_KEYS],
    group_name="serving",
    kinds={"duckdb", "postgres"},
    description="A consistent copy of the marts, forecasts, insights and quality results that readers read, "
    "with the metrics server's rollups built from them, swapped in atomically.",
)
def published_warehouse(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    from semantic import rollups  # MetricFlow: imported by the runs that publish, not by every run

    env = current_environment()
    changes = run_changes(_materialized_in_run(context), dbt_tables(json.loads(dbt_project.manifest_path.read_text())))
    version = env.publication().publish(changes=changes, build=rollups.builder(SEMANTIC_MANIFEST))
    scope = "everything" if changes is None else "changed: " + ", ".join([*changes.tables, *changes.schemas])
    context.log.info(f"published data version {version.version} ({version.tables} tables; {scope}) "
                     f"at {version.location}")
    return dg.MaterializeResult(
        metadata={"published": True, "data_version": version.version, "tables": version.tables, "scope": scope,
                  "location": version.location},
        data_version=dg.DataVersion(version.version),
    )
