"""Operational alerts to the alert webhook (`REPORTS_ALERT_WEBHOOK_URL`, the one high-severity insights
go to; Slack-compatible `text` + `blocks`): a Dagster run that failed, and a freshness breach, the
published data (what the metrics server, the SQL endpoint and the reports serve) older than
`PLATFORM_FRESHNESS_MAX_HOURS` (`environment.py`).

A run failure is posted once by Dagster's run-failure sensor: a post that fails after its retries
fails the sensor's tick, and Dagster evaluates the run again on the next tick. A freshness breach is
posted once per published version that breaches (the sensor's cursor remembers it), and again only
after newer data was published and went stale in its turn.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import dagster as dg

from orchestration.environment import current_environment
from reports.delivery import Delivery, post_webhook
from semantic.publication import Version

FRESHNESS_INTERVAL_SECONDS = 300


class AlertNotSent(Exception):
    """The webhook did not take the alert after its retries: Dagster retries the evaluation."""


def run_failure_message(job: str, run_id: str, error: str, failed_steps: list[str]) -> dict:
    steps = ", ".join(failed_steps) or "no step (the run failed before or between steps)"
    text = f"Dagster run of {job} failed ({run_id}): {error} Failed steps: {steps}."
    return {"text": text, "blocks": [
        {"type": "header", "text": {"type": "plain_text", "text": f"Run failed: {job}"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*Run* `{run_id}`\n*Failed steps* {steps}\n{error}"}}]}


def freshness_message(version: Version, age: timedelta, limit: timedelta) -> dict:
    hours = age.total_seconds() / 3600
    text = (f"Published data is {hours:.1f} hours old (limit {limit.total_seconds() / 3600:g} h, "
            f"PLATFORM_FRESHNESS_MAX_HOURS): version {version.version}, published "
            f"{version.published_at.isoformat(timespec='seconds')}. The metrics server, the SQL endpoint and the "
            "reports serve it until a run publishes newer data.")
    return {"text": text, "blocks": [
        {"type": "header", "text": {"type": "plain_text", "text": "Freshness breach: published data is stale"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


def freshness_breach(version: Version | None, now: datetime, limit: timedelta, alerted: str | None) -> bool:
    """Whether to post a breach now: the data is older than the limit, and this version was not posted."""
    return version is not None and now - version.published_at > limit and version.version != alerted


def post_alert(payload: dict, log) -> Delivery | None:
    """POST to the alert webhook; None when none is configured. AlertNotSent when it is not taken."""
    settings = current_environment().delivery
    if not settings.alert_webhook_url:
        return None
    if "alert" in settings.problems or "retry" in settings.problems:
        raise AlertNotSent(settings.problems.get("alert") or settings.problems["retry"])
    result = post_webhook(settings.alert_webhook_url, payload, settings.retry, log, "alert")
    if not result.ok:
        raise AlertNotSent(result.line())
    return result


@dg.run_failure_sensor(name="run_failure_alerts", default_status=dg.DefaultSensorStatus.RUNNING,
                       description="Posts each failed run (its job, run id, error and failed steps) to the alert "
                       "webhook (REPORTS_ALERT_WEBHOOK_URL).")
def run_failure_alerts(context: dg.RunFailureSensorContext) -> None:
    run = context.dagster_run
    failed = [event.step_key for event in context.get_step_failure_events() if event.step_key]
    message = run_failure_message(run.job_name, run.run_id, context.failure_event.message or "", failed)
    result = post_alert(message, context.log.warning)
    context.log.info(result.line() if result else f"REPORTS_ALERT_WEBHOOK_URL is not set: {message['text']}")


@dg.sensor(name="freshness_alerts", minimum_interval_seconds=FRESHNESS_INTERVAL_SECONDS,
           default_status=dg.DefaultSensorStatus.RUNNING,
           description="Posts a freshness breach to the alert webhook when the published data is older than "
           "PLATFORM_FRESHNESS_MAX_HOURS, once per stale version.")
def freshness_alerts(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    environment = current_environment()
    version = environment.publication().current()
    limit = environment.freshness_limit
    if not freshness_breach(version, environment.now(), limit, context.cursor):
        state = "nothing is published yet" if version is None else f"version {version.version}"
        return dg.SkipReason(f"no new breach ({state}; limit {limit})")
    result = post_alert(freshness_message(version, environment.now() - version.published_at, limit),
                        context.log.warning)
    context.update_cursor(version.version)
    return dg.SkipReason(f"freshness breach posted: {result.line()}" if result
                         else "freshness breach; REPORTS_ALERT_WEBHOOK_URL is not set")
