"""The published read snapshot: the last asset of a batch, after every mart and its gates.

Readers (metrics server, reports) only ever see data that passed the quality gates: when a
blocking check on a mart fails, this asset does not run and the previous snapshot stays current.
"""


import dagster as dg

from orchestration.assets.dbt import dbt_forecast_marts, dbt_models
from orchestration.assets.ml import FORECAST_KEY, INSIGHTS_KEY
from orchestration.environment import SEMANTIC_MANIFEST, current_environment
from semantic import snapshots

PUBLISHED_KEY = dg.AssetKey("published_warehouse")
MART_KEYS = sorted((key for dbt_step in (dbt_models, dbt_forecast_marts) for key in dbt_step.keys
                    if key.path[0] == "marts"), key=lambda k: k.to_user_string())


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
    snapshot = snapshots.publish(env.layout.warehouse, env.published_dir, build=rollups.builder(SEMANTIC_MANIFEST))
    context.log.info(f"published data version {snapshot.version} ({snapshot.tables} tables) at {snapshot.path}")
    return dg.MaterializeResult(
        metadata={"published": True, "data_version": snapshot.version, "tables": snapshot.tables,
                  "path": dg.MetadataValue.path(str(snapshot.path))},
        data_version=dg.DataVersion(snapshot.version),
    )
