"""The published read snapshot: the last asset of a batch, after every mart and its gates.

Readers (metrics server, reports) only ever see data that passed the quality gates: when a
blocking check on a mart fails, this asset does not run and the previous snapshot stays current.
A run that changed only dbt models (a micro-batch) publishes just those, and the quality results.
"""


import json

import dagster as dg

from orchestration.assets.dbt import dbt_forecast_marts, dbt_models, dbt_project
from orchestration.assets.ml import FORECAST_KEY, INSIGHTS_KEY
from orchestration.environment import SEMANTIC_MANIFEST, current_environment
from semantic import snapshots

PUBLISHED_KEY = dg.AssetKey("published_warehouse")
MART_KEYS = sorted((key for dbt_step in (dbt_models, dbt_forecast_marts) for key in dbt_step.keys
                    if key.path[0] == "marts"), key=lambda k: k.to_user_string())
# dbt models declare how the snapshot takes their new rows: `meta: {publish_cursor: <column>}`
# beside an incremental `unique_key` (see snapshots.Cursor).
CURSOR_META = "publish_cursor"


def dbt_tables(manifest: dict) -> dict[str, snapshots.Cursor | None]:
    """Every dbt model's table ("schema.alias"), with its publish cursor where it declares one."""
    tables = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] != "model":
            continue
        config = node["config"]
        column, key = (config.get("meta") or {}).get(CURSOR_META), config.get("unique_key")
        if column is not None and not isinstance(key, str):
            raise ValueError(f"dbt model {node['name']}: meta.{CURSOR_META} needs a single-column unique_key, "
                             f"got {key!r}")
        tables[f"{node['schema']}.{node['alias']}"] = None if column is None else snapshots.Cursor(key, column)
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
    deps=[*MART_KEYS, FORECAST_KEY, INSIGHTS_KEY],
    group_name="serving",
    kinds={"duckdb"},
    description="An immutable copy of the marts, forecasts, insights and quality results that readers open, "
    "with the metrics server's rollups built from them; swapped in atomically.",
)
def published_warehouse(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    from semantic import rollups  # MetricFlow: imported by the runs that publish, not by every run

    env = current_environment()
    if env.dbt_target != "duckdb":
        context.log.info(f"target {env.dbt_target} serves readers itself; nothing to publish")
        return dg.MaterializeResult(metadata={"published": False})
    changes = run_changes(_materialized_in_run(context), dbt_tables(json.loads(dbt_project.manifest_path.read_text())))
    snapshot = snapshots.publish(env.layout.warehouse, env.published_dir, build=rollups.builder(SEMANTIC_MANIFEST),
                                 changes=changes)
    scope = "everything" if changes is None else "changed: " + ", ".join([*changes.tables, *changes.schemas])
    context.log.info(f"published data version {snapshot.version} ({snapshot.tables} tables; {scope}) "
                     f"at {snapshot.path}")
    return dg.MaterializeResult(
        metadata={"published": True, "data_version": snapshot.version, "tables": snapshot.tables, "scope": scope,
                  "path": dg.MetadataValue.path(str(snapshot.path))},
        data_version=dg.DataVersion(snapshot.version),
    )
