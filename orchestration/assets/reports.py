"""The Evidence reports site as a Dagster asset, built after the snapshot it shows is published.

It reads the published snapshot, never the warehouse, so it needs no slot in the warehouse pool
and a micro-batch may write while it builds. The micro-batch job does not rebuild it: a site
build takes a minute or more, longer than a micro-batch.
"""

import dagster as dg

from orchestration.assets.publish import PUBLISHED_KEY
from orchestration.environment import current_environment
from reports import site
from semantic import snapshots

REPORTS_KEY = dg.AssetKey(["reports", "site"])


@dg.asset(
    key=REPORTS_KEY,
    deps=[PUBLISHED_KEY],
    group_name="serving",
    kinds={"evidence"},
    description="The Evidence reports (executive KPIs, engagement, forecasts, insights, data quality) built to a "
    "static site from the published snapshot.",
)
def reports_site(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    env = current_environment()
    snapshot = snapshots.current(env.published_dir)
    if snapshot is None:
        if env.dbt_target != "duckdb":
            context.log.info(f"target {env.dbt_target} publishes no snapshot; the reports read DuckDB snapshots only")
            return dg.MaterializeResult(metadata={"built": False})
        raise dg.Failure(f"no published snapshot in {env.published_dir}: the reports read only published data")
    try:
        built = site.build(snapshot.path, env.reports_site_dir)
    except site.ReportError as error:
        raise dg.Failure(str(error)) from error
    context.log.info(f"built {len(built.pages)} pages from data version {snapshot.version} into {built.path} "
                     f"(sources {built.sources_seconds:.1f} s, pages {built.build_seconds:.1f} s)")
    return dg.MaterializeResult(metadata={
        "built": True, "data_version": snapshot.version, "pages": ", ".join(built.pages),
        "path": dg.MetadataValue.path(str(built.index)),
        "sources_seconds": round(built.sources_seconds, 1), "build_seconds": round(built.build_seconds, 1),
    })
