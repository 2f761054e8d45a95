"""The data's lifecycle in Dagster: retention and backups on schedules, erasure requests by a sensor.

They are in their own group and jobs, never in the batch, and write the warehouse from the
`warehouse` pool, so they never run beside a load or a build. What they do is in
`orchestration/lifecycle/` (and `make retention`, `make backup`, `make restore`, `make erase`).
"""

from datetime import UTC, datetime

import dagster as dg

from orchestration.assets.ingestion import WAREHOUSE_POOL
from orchestration.environment import current_environment

GROUP = "lifecycle"
RETENTION_KEY = dg.AssetKey(["lifecycle", "retention"])
BACKUP_KEY = dg.AssetKey(["lifecycle", "backup"])


@dg.asset(key=RETENTION_KEY, group_name=GROUP, pool=WAREHOUSE_POOL, kinds={"parquet", "duckdb"},
          description="The retention policy (orchestration/retention.yml) applied to every layer: loaded landing "
          "files archived to Parquet and removed with their ledger entries, the archive, raw events the marts have "
          "taken, event facts and backups pruned by age.")
def retention(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    from orchestration.lifecycle import retention as policy

    env = current_environment()
    try:
        loaded = policy.load_policy(env.retention_config)
    except policy.RetentionConfigError as err:
        raise dg.Failure(description=str(err)) from err
    applied = policy.apply(loaded, env.layout, env.warehouse_destination(), lambda: env.warehouse(read_only=False),
                           env.backups_dir, now=datetime.now(UTC), event_now=env.now())
    for line in applied.skipped:
        context.log.warning(line)
    return dg.MaterializeResult(metadata=applied.metadata())


@dg.asset(key=BACKUP_KEY, group_name=GROUP, pool=WAREHOUSE_POOL, kinds={"duckdb", "parquet", "mlflow"},
          description="A backup of the warehouse (DuckDB's EXPORT DATABASE to Parquet) and the MLflow store, with a "
          "manifest of checksums, under data/backups/; `make restore AT=...` rebuilds the warehouse from it.")
def backup(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    from orchestration.lifecycle import backup as backups

    env = current_environment()
    try:
        taken = backups.take(backups.Sources(env.layout, env.dbt_target, env.mlflow_dir), env.backups_dir)
    except backups.BackupError as err:
        raise dg.Failure(description=str(err)) from err
    files = taken.manifest["files"]
    for note in (taken.manifest["warehouse"].get("note"), taken.manifest["mlflow"].get("note")):
        if note:
            context.log.info(note)
    return dg.MaterializeResult(metadata={
        "path": str(taken.path), "taken_at": taken.taken_at.isoformat(),
        "tables": len(taken.manifest["warehouse"].get("tables", {})), "files": len(files),
        "bytes": sum(f["bytes"] for f in files.values()), "mlflow": taken.manifest["mlflow"]["backed_up"]})


retention_job = dg.define_asset_job("retention_job", selection=[RETENTION_KEY],
                                    description="Apply the retention policy to every layer.")
backup_job = dg.define_asset_job("backup_job", selection=[BACKUP_KEY],
                                 description="Back up the warehouse and the MLflow store.")
# retention before the daily batch (02:00), the backup after it
daily_retention_schedule = dg.ScheduleDefinition(name="daily_retention", job=retention_job,
                                                 cron_schedule="30 1 * * *", execution_timezone="UTC")
daily_backup_schedule = dg.ScheduleDefinition(name="daily_backup", job=backup_job, cron_schedule="0 3 * * *",
                                              execution_timezone="UTC")


class ErasureConfig(dg.Config):
    request_id: str


@dg.op(pool=WAREHOUSE_POOL, description="Erase one person everywhere, as a queued request asks, and record it.")
def erase_person(context: dg.OpExecutionContext, config: ErasureConfig) -> None:
    from ingestion.privacy import ErasureLog
    from orchestration.lifecycle import erasure

    env = current_environment()
    log = ErasureLog(env.layout.privacy_dir)
    request = erasure.queued_request(env.layout, config.request_id)
    try:
        result = erasure.erase(erasure.places_of(env), request)
    except erasure.ErasureError as err:  # recorded, so that the API says why; the admin asks again
        log.append(erasure.Erasure(request, "refused", notes=[str(err)]).record([]))
        log.done(config.request_id)
        raise dg.Failure(description=str(err)) from err
    log.done(config.request_id)
    for line in result.lines():
        context.log.info(line)


@dg.job(description="Run one erasure request queued by the admin API (POST /v1/admin/erasures).")
def erasure_job():
    erase_person()


@dg.sensor(job=erasure_job, minimum_interval_seconds=10, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Runs each erasure request the admin API queued in data/privacy/requests/, once.")
def erasure_requests_sensor(context: dg.SensorEvaluationContext):
    from ingestion.privacy import ErasureLog

    queued = ErasureLog(current_environment().layout.privacy_dir).queued()
    if not queued:
        return dg.SkipReason("no erasure requests queued")
    return [dg.RunRequest(run_key=f"erasure-{request_id}",
                          run_config={"ops": {"erase_person": {"config": {"request_id": request_id}}}})
            for request_id in queued]
