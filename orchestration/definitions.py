"""The code location: every asset, check, job and schedule of the platform."""

from __future__ import annotations

import dagster as dg
from dagster_dlt import DagsterDltResource

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
from orchestration.microbatch import landing_files_sensor, microbatch_job

# Distribution waits on mail servers and webhooks: it has its own jobs, never the data pipeline's.
PIPELINE = dg.AssetSelection.all() - dg.AssetSelection.groups(DISTRIBUTION_GROUP)

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
    assets=[sample_data, app_db_assets, events_assets, marketing_assets, dbt_models, forecast_models,
            dbt_forecast_marts,
            forecast_daily, insights, experiment_analysis, published_warehouse, reports_site, report_distribution,
            insight_alerts],
    asset_checks=quality_checks,
    jobs=[batch_job, daily_job, retrain_job, microbatch_job, report_distribution_job, insight_alerts_job],
    schedules=[daily_batch_schedule, weekly_retrain_schedule, daily_report_schedule],
    sensors=[forecast_drift_sensor, landing_files_sensor, insight_alerts_sensor],
    resources={"dlt": DagsterDltResource(), "dbt": dbt_resource()},
    # One step at a time in one process: every step writes the same DuckDB file.
    executor=dg.in_process_executor,
)
