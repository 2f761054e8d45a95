"""dlt loads as assets: one asset per raw table, keyed `[raw schema, table]` like dbt's sources.

A fresh dlt source and pipeline are built for every run from the environment of that run (each
run has its own load time and duplicate tracking); the ones built at import only describe the
assets, and keep their dlt state in a directory of their own: dlt wipes a new pipeline's working
folder, so two processes importing the definitions at once (the code server and the daemon, or two
test workers) must not share it. All warehouse writers share the `warehouse` pool: DuckDB takes one
writing process per file.
"""

import atexit
import shutil
import tempfile
from pathlib import Path

import dagster as dg
from dagster_dlt import DagsterDltResource, DagsterDltTranslator, dlt_assets
from dagster_dlt.translator import DltResourceTranslatorData

from ingestion import pipelines
from orchestration.assets.sample_data import SAMPLE_DATA_KEY
from orchestration.environment import current_environment

WAREHOUSE_POOL = "warehouse"


class RawTableTranslator(DagsterDltTranslator):
    """Keys raw tables as dbt names its sources, so lineage joins without glue."""

    def get_asset_spec(self, data: DltResourceTranslatorData) -> dg.AssetSpec:
        spec = super().get_asset_spec(data)
        return spec.replace_attributes(
            key=dg.AssetKey([data.pipeline.dataset_name, data.resource.name]),
            deps=[SAMPLE_DATA_KEY],
            group_name="raw",
        )


_DESCRIBING_DIR = Path(tempfile.mkdtemp(prefix="platform-dlt-definitions-"))
atexit.register(shutil.rmtree, _DESCRIBING_DIR, True)


def _load_assets(target: pipelines.LoadTarget) -> dg.AssetsDefinition:
    def fresh_source():
        env = current_environment()
        return pipelines.source_for(target, env.layout, env.schema_contract)

    def fresh_pipeline():
        env = current_environment()
        return pipelines.make_pipeline(target, env.warehouse_destination(), env.layout.dlt_dir)

    @dlt_assets(
        dlt_source=fresh_source(),
        dlt_pipeline=pipelines.make_pipeline(
            target, current_environment().warehouse_destination(), _DESCRIBING_DIR
        ),
        name=f"load_{target.pipeline_name}",
        dagster_dlt_translator=RawTableTranslator(),
        pool=WAREHOUSE_POOL,
    )
    def _assets(context: dg.AssetExecutionContext, dlt: DagsterDltResource):
        context.log.info(f"loading {target.pipeline_name} into {target.dataset_name} with dlt")
        yield from dlt.run(context=context, dlt_source=fresh_source(), dlt_pipeline=fresh_pipeline())

    return _assets


app_db_assets = _load_assets(pipelines.APP_DB)
events_assets = _load_assets(pipelines.EVENTS)
marketing_assets = _load_assets(pipelines.MARKETING)
