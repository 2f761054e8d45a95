"""Operational alerts posted to a real webhook receiver on loopback: a Dagster run that failed (a real
failed run, evaluated by the run-failure sensor as the daemon evaluates it) and a freshness breach of
the published data (the sensor over the shared published sample, with the clock pinned)."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import pytest

from orchestration.alerting import AlertNotSent, freshness_alerts, run_failure_alerts
from orchestration.environment import environment_from
from tests.orchestration.helpers import platform_environment
from tests.reports.receivers import WebhookReceiver


@dg.op
def load_orders():
    return 3


@dg.op
def check_orders(orders):
    raise ValueError(f"{orders} orders have no customer")


@dg.job
def orders_job():
    check_orders(load_orders())


def failed_run_context(instance: dg.DagsterInstance) -> dg.RunFailureSensorContext:
    result = orders_job.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    return dg.build_run_status_sensor_context(
        sensor_name=run_failure_alerts.name, dagster_instance=instance, dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event()).for_run_failure()


def test_a_failed_run_is_posted_to_the_alert_webhook_with_its_job_step_and_error(tmp_path):
    with dg.instance_for_test() as instance, WebhookReceiver() as receiver, \
            platform_environment(tmp_path, {"REPORTS_ALERT_WEBHOOK_URL": receiver.url}):
        context = failed_run_context(instance)
        run_failure_alerts(context)
    [body] = receiver.bodies
    assert body["text"].startswith(f"Dagster run of orders_job failed ({context.dagster_run.run_id}):")
    assert "Failed steps: check_orders." in body["text"]
    assert body["blocks"][0]["text"]["text"] == "Run failed: orders_job"


def test_an_alert_the_webhook_does_not_take_fails_the_tick_so_dagster_evaluates_it_again(tmp_path):
    with dg.instance_for_test() as instance, WebhookReceiver(statuses=[503, 503]) as receiver, \
            platform_environment(tmp_path, {"REPORTS_ALERT_WEBHOOK_URL": receiver.url,
                                            "REPORTS_DELIVERY_ATTEMPTS": "2", "REPORTS_DELIVERY_BACKOFF_SECONDS": "0"}):
        context = failed_run_context(instance)
        with pytest.raises(AlertNotSent, match="HTTP 503"):
            run_failure_alerts(context)
        run_failure_alerts(context)  # the next evaluation
    assert receiver.requests == 3 and len(receiver.bodies) == 1


def test_without_an_alert_webhook_a_failed_run_is_only_logged(tmp_path, monkeypatch):
    monkeypatch.delenv("REPORTS_ALERT_WEBHOOK_URL", raising=False)
    with dg.instance_for_test() as instance, platform_environment(tmp_path) as env:
        assert not env.delivery.alert_webhook_url
        run_failure_alerts(failed_run_context(instance))  # no error: nothing to post to


def test_stale_published_data_is_posted_once_per_version(published):
    """The shared sample was published minutes ago: 'now' pinned a day and a half later breaches the
    default limit (26 h) once; a stricter limit is read from PLATFORM_FRESHNESS_MAX_HOURS."""
    version = environment_from({"PLATFORM_DATA_DIR": str(published.root)}).publication().current()
    later = (version.published_at + timedelta(hours=36)).isoformat()
    with WebhookReceiver() as receiver:
        with platform_environment(published.root, {"PLATFORM_NOW": later,
                                                   "REPORTS_ALERT_WEBHOOK_URL": receiver.url}), \
                dg.instance_for_test() as instance:
            context = dg.build_sensor_context(instance=instance)
            posted = freshness_alerts(context)
            assert "freshness breach posted" in posted.skip_message and context.cursor == version.version
            again = freshness_alerts(dg.build_sensor_context(instance=instance, cursor=context.cursor))
            assert again.skip_message.startswith(f"no new breach (version {version.version}")
        with platform_environment(published.root, {"PLATFORM_NOW": later, "PLATFORM_FRESHNESS_MAX_HOURS": "48",
                                                   "REPORTS_ALERT_WEBHOOK_URL": receiver.url}), \
                dg.instance_for_test() as instance:
            assert freshness_alerts(dg.build_sensor_context(instance=instance)).skip_message.startswith(
                "no new breach")
    [body] = receiver.bodies
    assert body["text"].startswith("Published data is 36.0 hours old (limit 26 h, PLATFORM_FRESHNESS_MAX_HOURS)")
    assert version.version in body["text"]


@pytest.mark.parametrize("value", ["soon", "0", "-3", "inf", ""])
def test_a_bad_freshness_limit_is_refused_naming_the_setting(tmp_path, value):
    with pytest.raises(ValueError, match=f"PLATFORM_FRESHNESS_MAX_HOURS must be a number of hours above 0, "
                                         f"not {value!r}"):
        environment_from({"PLATFORM_DATA_DIR": str(tmp_path), "PLATFORM_FRESHNESS_MAX_HOURS": value})
