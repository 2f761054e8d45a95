"""Forecasting as Dagster assets: train and register, forecast, find insights; retraining on a
schedule and when the champion drifts.

All three read `marts.metrics_daily` only, and sit downstream of it, so its blocking quality
gates stop them on bad data. The tables land in schema `ml` of the warehouse and are published
with the marts.

The events calendar (the dbt seed `events_calendar`) is read beside the metrics: a bad row fails
the asset with the row, field and value. The modelling libraries (mlforecast, statsforecast,
MLflow) are imported inside the assets: every
run process imports this code location, and a micro-batch run that never forecasts should not
spend seconds loading them.
"""

import json
import time

import dagster as dg
import pandas as pd

from ml.series import FAMILIES, metrics_daily_frame, metrics_daily_sql
from orchestration.assets.ingestion import WAREHOUSE_POOL
from orchestration.environment import SEMANTIC_MANIFEST, current_environment

METRICS_DAILY = dg.AssetKey(["marts", "metrics_daily"])
EVENTS_CALENDAR = dg.AssetKey(["marts", "events_calendar"])
TENANTS = dg.AssetKey(["marts", "dim_tenants"])  # the names the insights' sentences use
MODELS_KEY = dg.AssetKey(["ml", "forecast_models"])
FORECAST_KEY = dg.AssetKey(["ml", "forecast_daily"])
INSIGHTS_KEY = dg.AssetKey(["ml", "insights"])
DRIVERS_KEY = dg.AssetKey(["ml", "insight_drivers"])
CORRELATIONS_KEY = dg.AssetKey(["ml", "insight_correlations"])
INSIGHTS_KEYS = (INSIGHTS_KEY, DRIVERS_KEY, CORRELATIONS_KEY)  # one step writes them together
INSIGHTS_DESCRIPTION = (
    "Anomalies (each day against a forecast made without it; robust z-score for short series), days of the events "
    "calendar that moved a metric (named, never anomalies), trends and change points, each with severity, "
    "confidence, a sentence with the numbers, the sentence naming its drivers, a recommendation, its impact in "
    "the metric's unit and its priority (ml.insights).")
DRIFT_TOLERANCE = 1.5  # recent sMAPE above this multiple of the backtest's is drift


def _metrics_daily(env) -> pd.DataFrame:
    with env.warehouse() as warehouse:
        return metrics_daily_frame(*warehouse.query(metrics_daily_sql()))


def _calendar(env, wide: pd.DataFrame) -> pd.DataFrame:
    """The validated events calendar; a bad row is the run's failure, named."""
    from ml import events

    with env.warehouse() as warehouse:
        calendar = events.read(warehouse.query)
    try:
        return events.validate(calendar, set(wide["tenant_id"].unique()),
                               source=f"events calendar ({events.SEED.relative_to(events.SEED.parents[2])})")
    except events.CalendarError as err:
        raise dg.Failure(description=str(err)) from err


def _store(env):
    from ml.tracking import Store

    return Store.under(env.data_dir, env.mlflow_tracking_uri)


@dg.asset(key=MODELS_KEY, deps=[METRICS_DAILY, EVENTS_CALENDAR], group_name="ml", kinds={"lightgbm", "mlflow"},
          pool=WAREHOUSE_POOL,
          description="One global LightGBM model per metric family (mlforecast) combined with AutoETS, AutoTheta or "
          "AutoARIMA (statsforecast), backtested from rolling origins against AutoETS, AutoTheta and AutoARIMA, "
          "logged to MLflow and registered; promoted to champion only if it beats the best of them.")
def forecast_models(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    from ml.tracking import TrackingStoreError
    from ml.training import train_family

    env = current_environment()
    wide = _metrics_daily(env)
    calendar = _calendar(env, wide)
    store = _store(env)
    metadata: dict = {"tracking_uri": store.uri}
    for family in FAMILIES:
        try:
            report = train_family(family, wide, store, calendar)
        except TrackingStoreError as err:
            raise dg.Failure(description=str(err), metadata={"tracking_uri": store.uri}) from err
        context.log.info(f"{family}: {report.reason} (version {report.version}, {report.seconds:.1f} s)")
        for line in report.skipped + report.repairs:
            context.log.warning(f"{family}: {line}")
        metadata[f"{family}_version"] = report.version or "none"
        metadata[f"{family}_promotion"] = report.reason
        metadata[f"{family}_backtest_relative_mase"] = report.model_mase
        metadata[f"{family}_best_baseline"] = "{} {:.4f}".format(*report.best_baseline)
        if not report.summary.empty:
            metadata[f"{family}_scores"] = dg.MetadataValue.md(report.summary.round(4).to_markdown())
    return dg.MaterializeResult(metadata=metadata)


def _load_models(context, env) -> dict:
    from ml import forecasting
    from ml.tracking import TrackingStoreError

    store = _store(env)
    try:
        models = {family: forecasting.load(store, family) for family in FAMILIES}
    except TrackingStoreError as err:
        raise dg.Failure(description=str(err)) from err
    for family, loaded in models.items():
        if loaded is None:
            context.log.warning(f"{family}: no registered model yet; materialize ml/forecast_models first")
        elif not loaded.champion:
            context.log.warning(f"{family}: no champion; using the newest version {loaded.version}")
    return models


@dg.asset(key=FORECAST_KEY, deps=[MODELS_KEY, METRICS_DAILY, EVENTS_CALENDAR], group_name="ml", kinds={"duckdb"},
          pool=WAREHOUSE_POOL,
          description="Forecasts of each metric, tenant and the total to the metric's horizon (28 days), with 80 % "
          "and 95 % intervals and the calendar's events, from each family's champion (ml.forecast_daily).")
def forecast_daily(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    from ml import forecasting
    from ml.outputs import replace_table

    env = current_environment()
    wide = _metrics_daily(env)
    calendar = _calendar(env, wide)
    models = _load_models(context, env)
    frames = [forecasting.forecast(loaded, wide, calendar) for loaded in models.values() if loaded is not None]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=forecasting.FORECAST_COLUMNS)
    table = table.astype({"prediction": float, "lower_80": float, "upper_80": float, "lower_95": float,
                          "upper_95": float, "horizon": int})
    rows = replace_table(env, "forecast_daily", table)
    return dg.MaterializeResult(metadata={
        "rows": rows, **{f"{f}_model": (m.name + " " + m.label) if m else "none" for f, m in models.items()}})


@dg.multi_asset(
    specs=[dg.AssetSpec(INSIGHTS_KEY, deps=[FORECAST_KEY, METRICS_DAILY, EVENTS_CALENDAR, TENANTS], group_name="ml",
                        kinds={"duckdb"}, description=INSIGHTS_DESCRIPTION),
           dg.AssetSpec(DRIVERS_KEY, deps=[METRICS_DAILY], group_name="ml", kinds={"duckdb"},
                        description="What drove each insight: the segments of a governed dimension and the metric's "
                        "components, with their share of the change (ml/drivers.py, through the semantic layer)."),
           dg.AssetSpec(CORRELATIONS_KEY, deps=[METRICS_DAILY], group_name="ml", kinds={"duckdb"},
                        description="Lead/lag relationships between governed metrics per tenant that survive a "
                        "Benjamini-Hochberg correction and hold out of sample (ml/correlations.py).")],
    name="ml__insights", pool=WAREHOUSE_POOL, can_subset=False)
def insights(context: dg.AssetExecutionContext):
    from ml import forecasting, scoring
    from ml.outputs import replace_table

    env = current_environment()
    wide = _metrics_daily(env)
    with env.warehouse() as warehouse:
        names = dict(warehouse.rows("select tenant_id, tenant_name from marts.dim_tenants"))
    started = time.perf_counter()
    table = forecasting.find_insights(wide, _calendar(env, wide), tenant_names=names)
    found_seconds = time.perf_counter() - started
    table, drivers, related, queries = _explained(env, table, names, wide["date_day"].nunique())
    rows = replace_table(env, "insights", table)
    replace_table(env, "insight_drivers", drivers)
    replace_table(env, "insight_correlations", related)
    metadata: dict = {"rows": rows, **{f"{kind}": int(n) for kind, n in table["insight_type"].value_counts().items()},
                      "driver_rows": len(drivers), "correlations": len(related), "semantic_queries": queries,
                      "seconds_finding": round(found_seconds, 2),
                      "seconds_explaining": round(time.perf_counter() - started - found_seconds, 2)}
    for line in table[table["severity"] == "high"]["explanation"].head(10):
        context.log.warning(line)
    metadata["alerts_queued"] = _queue_alerts(context, env, table)
    if env.layout.ground_truth.exists():  # sample data: score against the anomalies it injected
        result = scoring.score(table, json.loads(env.layout.ground_truth.read_text())["anomalies"])
        context.log.info(f"anomaly detection against the sample's ground truth: {result}")
        metadata.update({f"ground_truth_{k}": v for k, v in result.items() if not isinstance(v, list)})
    yield dg.MaterializeResult(asset_key=INSIGHTS_KEY, metadata=metadata)
    yield dg.MaterializeResult(asset_key=DRIVERS_KEY, metadata={"rows": len(drivers)})
    yield dg.MaterializeResult(asset_key=CORRELATIONS_KEY, metadata={"rows": len(related)})


def _explained(env, table: pd.DataFrame, names: dict, days: int
               ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, int]:
    """The insights with their drivers (through the governed metrics, on this run's warehouse),
    recommendations and priorities; the driver rows; the lead/lag relationships between metrics;
    the semantic queries it took."""
    from ml import correlations, drivers, priorities

    opened: list = []  # the engine, built only when something needs it (loading it takes a second)

    def source():
        if not opened:
            from semantic.metricflow_engine import engine_on_warehouse

            opened.append(drivers.GovernedMetrics(engine_on_warehouse(warehouse, SEMANTIC_MANIFEST)))
        return opened[0]

    with env.warehouse() as warehouse:
        rows, found = drivers.explain_all(table, source)
        related = (correlations.correlations(source(), names) if days >= correlations.MIN_DAYS
                   else pd.DataFrame(columns=correlations.COLUMNS))  # too few days to fit and confirm any
    return priorities.prioritized(table, found, names), rows, related, opened[0].queries if opened else 0


def _queue_alerts(context: dg.AssetExecutionContext, env, table: pd.DataFrame) -> int:
    """Queue new high-severity insights for the alert webhook; `insight_alerts_sensor` sends them.
    Only a file is written here, so a slow webhook cannot hold up the pipeline."""
    from reports.alerts import Outbox

    if not env.delivery.alert_webhook_url:
        context.log.info("REPORTS_ALERT_WEBHOOK_URL is not set: no alerts queued for high-severity insights")
        return 0
    queued = Outbox(env.alerts_dir).enqueue(table)
    context.log.info(f"queued {queued} new high-severity insights for the alert webhook")
    return queued


retrain_job = dg.define_asset_job(
    "retrain_job", selection=dg.AssetSelection.assets(MODELS_KEY, FORECAST_KEY, *INSIGHTS_KEYS),
    description="Retrain and re-register the forecasting models, then refresh forecasts and insights.")

weekly_retrain_schedule = dg.ScheduleDefinition(
    name="weekly_retrain", job=retrain_job, cron_schedule="0 4 * * 1", execution_timezone="UTC")


def drift(env) -> list[str]:
    """Families whose champion's error over the last week exceeds its backtest error by the tolerance.

    Reads the published data, never the warehouse a run may be writing.
    """
    from ml import events, forecasting

    publication = env.publication()
    reader, _ = publication.open()
    try:
        names, rows = reader.run(metrics_daily_sql(publication.qualified("marts", "metrics_daily")))
        calendar = events.read(reader.run, publication.qualified(*events.RELATION.split(".")))
    finally:
        reader.close()
    wide = metrics_daily_frame(names, rows)
    calendar = events.validate(calendar, set(wide["tenant_id"].unique()))
    store = _store(env)
    drifted = []
    for family in FAMILIES:
        champion = store.champion(family)
        loaded = forecasting.load(store, family) if champion is not None else None
        if loaded is None:
            continue
        recent, points = forecasting.recent_error(loaded, wide, calendar)
        backtest_smape = store.client.get_run(champion.run_id).data.metrics.get("backtest.forecast.smape")
        if points and backtest_smape and recent > DRIFT_TOLERANCE * backtest_smape:
            drifted.append(f"{family} v{champion.version}: recent sMAPE {recent:.3f} > {DRIFT_TOLERANCE} x "
                           f"backtest {backtest_smape:.3f}")
    return drifted


@dg.sensor(job=retrain_job, minimum_interval_seconds=3600, default_status=dg.DefaultSensorStatus.STOPPED,
           description="Retrains when a champion's error over the last week drifts beyond its backtest error.")
def forecast_drift_sensor(context: dg.SensorEvaluationContext):
    from ml.events import CalendarError
    from ml.tracking import TrackingStoreError

    env = current_environment()
    try:
        drifted = drift(env)
    except (FileNotFoundError, TrackingStoreError, CalendarError) as err:
        return dg.SkipReason(f"cannot check drift yet: {err}")
    if not drifted:
        return dg.SkipReason("no champion has drifted")
    version = env.publication().current()
    return dg.RunRequest(run_key=f"drift-{version.version if version else 'none'}",
                         tags={"retrain_reason": "; ".join(drifted)[:1000]})
