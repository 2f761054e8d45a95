"""Report distribution as Dagster assets: the scheduled report (PDFs, datasets, email, webhook) and
the alerts for high-severity insights, sent by a sensor as soon as the insights step queues them.

Both are in their own group and jobs, never in the batch: they wait on mail servers and webhooks,
which must not hold up or fail the data pipeline. A delivery that fails after its retries is
reported by the asset check `all_delivered` (severity WARN) and in the run's log and metadata;
the run itself succeeds.
"""

import json
import time

import dagster as dg

from orchestration.assets.ml import INSIGHTS_KEY
from orchestration.assets.reports import REPORTS_KEY
from orchestration.environment import current_environment
from orchestration.microbatch import runs_in_flight
from reports import alerts, browser, distribution, exports, pages, site
from reports.delivery import Delivery

GROUP = "distribution"
DISTRIBUTION_KEY = dg.AssetKey(["reports", "distribution"])
ALERTS_KEY = dg.AssetKey(["reports", "insight_alerts"])
ALL_DELIVERED = "all_delivered"
# A pending alert whose delivery failed is tried again after this long (new alerts go at once).
ALERT_RETRY_SECONDS = 600


def _delivery_check(asset: dg.AssetKey, results: list[Delivery]) -> dg.AssetCheckResult:
    failed = [result for result in results if not result.ok]
    return dg.AssetCheckResult(
        asset_key=asset, check_name=ALL_DELIVERED, passed=not failed, severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(result.line() for result in failed) or None,
        metadata={"delivered": sum(result.ok for result in results), "failed": len(failed)})


def _deliveries_metadata(results: list[Delivery]) -> dict:
    return {"deliveries": dg.MetadataValue.md("\n".join(f"- {result.line()}" for result in results) or "none")}


@dg.asset(
    key=DISTRIBUTION_KEY, deps=[REPORTS_KEY], group_name=GROUP, kinds={"chromium", "email"},
    check_specs=[dg.AssetCheckSpec(ALL_DELIVERED, asset=DISTRIBUTION_KEY,
                                   description="Every email and webhook of the report was delivered.")],
    description="The chosen pages (REPORTS_PDF_PAGES) as PDF, every page's datasets as CSV, XLSX and Parquet, "
    "emailed with the PDFs attached (REPORTS_SMTP_*, REPORTS_EMAIL_TO) and posted to a webhook with the headline "
    "numbers (REPORTS_WEBHOOK_URL).",
)
def report_distribution(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    env = current_environment()
    settings = env.delivery
    try:
        exported = exports.export(env.reports_site_dir, env.reports_exports_dir,
                                  distribution.pdf_routes(env.report_pdf_pages))
    except (site.ReportError, pages.PageError, browser.BrowserError) as error:
        raise dg.Failure(str(error)) from error
    context.log.info(f"exported data version {exported.data_version} to {exported.directory}: "
                     f"{len(exported.pdfs)} PDFs, datasets of {len(exported.pages)} pages")
    results = distribution.deliver_report(exported, settings, context.log.warning)
    for result in results:
        (context.log.info if result.ok else context.log.warning)(result.line())
    if not results:
        context.log.info("no delivery configured (REPORTS_SMTP_HOST, REPORTS_WEBHOOK_URL): exported only")
    return dg.MaterializeResult(
        metadata={"data_version": exported.data_version, "path": dg.MetadataValue.path(str(exported.directory)),
                  "pdfs": ", ".join(pdf.name for pdf in exported.pdfs),
                  "headline": "; ".join(number.sentence() for number in exported.headlines),
                  **_deliveries_metadata(results)},
        check_results=[_delivery_check(DISTRIBUTION_KEY, results)])


@dg.asset(
    key=ALERTS_KEY, deps=[INSIGHTS_KEY], group_name=GROUP, kinds={"webhook"},
    check_specs=[dg.AssetCheckSpec(ALL_DELIVERED, asset=ALERTS_KEY,
                                   description="Every queued high-severity insight was alerted.")],
    description="Posts the high-severity insights the insights step queued to the alert webhook "
    "(REPORTS_ALERT_WEBHOOK_URL), once each; failed ones stay queued for the next try.",
)
def insight_alerts(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    env = current_environment()
    outbox = alerts.Outbox(env.alerts_dir)
    results = distribution.deliver_alerts(outbox, env.delivery, context.log.warning)
    for result in results:
        (context.log.info if result.ok else context.log.warning)(result.line())
    return dg.MaterializeResult(
        metadata={"still_pending": len(outbox.pending()), **_deliveries_metadata(results)},
        check_results=[_delivery_check(ALERTS_KEY, results)])


report_distribution_job = dg.define_asset_job(
    "report_distribution_job", selection=dg.AssetSelection.assets(DISTRIBUTION_KEY),
    description="Render the chosen report pages to PDF, export every page's datasets, and deliver them.")

insight_alerts_job = dg.define_asset_job(
    "insight_alerts_job", selection=dg.AssetSelection.assets(ALERTS_KEY),
    description="Post the queued high-severity insights to the alert webhook.")

# After the daily batch (02:00 UTC) has rebuilt the site.
daily_report_schedule = dg.ScheduleDefinition(
    name="daily_report", job=report_distribution_job, cron_schedule="0 7 * * *", execution_timezone="UTC")


@dg.sensor(job=insight_alerts_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Sends queued high-severity insight alerts as soon as the insights step queues them; "
           f"alerts whose delivery failed are tried again every {ALERT_RETRY_SECONDS // 60} minutes.")
def insight_alerts_sensor(context: dg.SensorEvaluationContext):
    pending = [path.name for path in alerts.Outbox(current_environment().alerts_dir).pending()]
    request, cursor = decide_alerts(pending, json.loads(context.cursor or "{}"), time.time(),
                                    runs_in_flight(context.instance, insight_alerts_job.name))
    context.update_cursor(json.dumps(cursor))
    return request


def decide_alerts(pending: list[str], cursor: dict, now: float,
                  in_flight: list[str]) -> tuple[dg.RunRequest | dg.SkipReason, dict]:
    """Launch a run for new pending files at once, for old ones after the retry interval."""
    if not pending:
        return dg.SkipReason("no alerts queued"), {}
    if in_flight:
        return dg.SkipReason(f"{len(pending)} alert files wait for run {in_flight[0]}"), cursor
    tried = set(cursor.get("tried", []))
    if set(pending) <= tried and now - cursor.get("at", 0) < ALERT_RETRY_SECONDS:
        return dg.SkipReason(f"{len(pending)} alert files failed to send; next try after "
                             f"{ALERT_RETRY_SECONDS} s"), cursor
    return dg.RunRequest(tags={"alert_files": str(len(pending))}), {"tried": pending, "at": now}
