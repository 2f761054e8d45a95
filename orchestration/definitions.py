"""The code location: every asset, check, job and schedule of the platform."""

from __future__ import annotations

import dagster as dg
from dagster_dlt import DagsterDltResource

from orchestration.alerting import freshness_alerts, run_failure_alerts
from orchestration.assets.dbt import dbt_forecast_marts, dbt_models, dbt_resource
from orchestration.assets.distribution import GROUP as DISTRIBUTION_GROUP
from orchestration.assets.distribution import (
    daily_report_schedule,
    insight_alerts,
    insight_alerts_job,
    insight_alerts_sensor,
    report_distribution,
    report_distribution_job,
)
from orchestration.assets.experiments import experiment_analysis
from orchestration.assets.ingestion import app_db_assets, events_assets, marketing_assets
from orchestration.assets.lifecycle import GROUP as LIFECYCLE_GROUP
from orchestration.assets.lifecycle import (
    backup,
    backup_job,
    daily_backup_schedule,
    daily_retention_schedule,
    erasure_job,
    erasure_requests_sensor,
    retention,
    retention_job,
)
from orchestration.assets.ml import (
    forecast_daily,
    forecast_drift_sensor,
    forecast_models,
    insights,
    retrain_job,
    weekly_retrain_schedule,
)
from orchestration.assets.publish import published_warehouse
from orchestration.assets.quality import quality_checks
from orchestration.assets.reports import reports_site
from orchestration.assets.sample_data import sample_data
from orchestration.environment import current_environment
from orchestration.microbatch import landing_files_sensor, microbatch_job
from semantic.warehouse import SPARK_UNSUPPORTED

# Distribution waits on mail servers and webhooks, and the lifecycle (retention, backups) runs on its
# own schedules: each has its own jobs, never the data pipeline's.
PIPELINE = dg.AssetSelection.all() - dg.AssetSelection.groups(DISTRIBUTION_GROUP, LIFECYCLE_GROUP)

# The steps a target does not run, by name, with why. On spark the data is loaded (dlt, Parquet) and
# built and tested (dbt); the steps that need a connection to the warehouse between builds are not run:
# the quality gates are left out, and each asset of the others is a stand-in that says why, so what
# depends on them still runs after what they depend on. The run's summary names them (main.py).
_NOT_ON_SPARK = {
    "forecasts and insights (ml/)": [forecast_models, forecast_daily, insights],
    "experiment analysis": [experiment_analysis],
    "published read snapshot (metrics server)": [published_warehouse],
    "reports (Evidence)": [reports_site],
}
UNSUPPORTED_STEPS: dict[str, str] = {}
if current_environment().dbt_target == "spark":
    UNSUPPORTED_STEPS = dict.fromkeys(["quality gates (Great Expectations)", *_NOT_ON_SPARK], SPARK_UNSUPPORTED)


def _not_run(assets: dg.AssetsDefinition, why: str) -> dg.AssetsDefinition:
    """A stand-in with the same assets and dependencies, which records why it did nothing."""

    @dg.multi_asset(specs=list(assets.specs), name=f"{assets.node_def.name}_not_run")
    def _stand_in(context):
        context.log.warning(why)
        for key in context.selected_asset_keys:
            yield dg.MaterializeResult(asset_key=key, metadata={"not run": why})

    return _stand_in


def _on_this_target(assets: list[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    stand_ins = {id(a): _not_run(a, UNSUPPORTED_STEPS[step])
                 for step, defined in _NOT_ON_SPARK.items() if step in UNSUPPORTED_STEPS for a in defined}
    return [stand_ins.get(id(a), a) for a in assets]


batch_job = dg.define_asset_job(
    "batch_job",
    selection=PIPELINE,
    description="Everything, in dependency order: sample data, dlt loads, quality gates on raw data, dbt build "
    "with its tests, quality gates on marts, forecasting models, forecasts and insights, the experiment analysis, "
    "the forecast and experiment results marts, the published read snapshot, the Evidence reports site.",
)

# The daily run forecasts with the registered champions; retraining is weekly or on drift.
daily_job = dg.define_asset_job(
    "daily_job", selection=PIPELINE - dg.AssetSelection.assets(forecast_models),
    description="The batch without retraining: forecasts and insights come from the current champions.",
)

daily_batch_schedule = dg.ScheduleDefinition(
    name="daily_batch", job=daily_job, cron_schedule="0 2 * * *", execution_timezone="UTC",
)

defs = dg.Definitions(
    assets=_on_this_target([sample_data, app_db_assets, events_assets, marketing_assets, dbt_models, forecast_models,
                            dbt_forecast_marts, forecast_daily, insights, experiment_analysis, published_warehouse,
                            reports_site, report_distribution, insight_alerts, retention, backup]),
    asset_checks=[] if "quality gates (Great Expectations)" in UNSUPPORTED_STEPS else quality_checks,
    jobs=[batch_job, daily_job, retrain_job, microbatch_job, report_distribution_job, insight_alerts_job,
          retention_job, backup_job, erasure_job],
    schedules=[daily_batch_schedule, weekly_retrain_schedule, daily_report_schedule, daily_retention_schedule,
               daily_backup_schedule],
    sensors=[forecast_drift_sensor, landing_files_sensor, insight_alerts_sensor, erasure_requests_sensor,
             run_failure_alerts, freshness_alerts],
    resources={"dlt": DagsterDltResource(), "dbt": dbt_resource()},
    # One step at a time in one process: every step writes the same DuckDB file.
    executor=dg.in_process_executor,
)
