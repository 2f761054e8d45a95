"""The scheduled report and the insight alerts, delivered for real to servers on loopback.

The report job runs as users run it (`python -m orchestration.main --job report_distribution_job`)
on the main job's data, against an SMTP server (aiosmtpd) and a webhook receiver that each fail
their first attempt; the PDF it attaches is read back as text and its headline numbers compared
with the warehouse's marts. A second run meets a server that always refuses and a webhook that
always answers 500: the run succeeds and reports both. The bad inputs (an invalid recipient,
a refused recipient, unreachable hosts, wrong settings) are checked against the sending code itself.
"""

from __future__ import annotations

from datetime import date

import dagster as dg
import duckdb
import pandas as pd
import pytest
from pypdf import PdfReader

from orchestration.assets.distribution import (
    ALERT_RETRY_SECONDS,
    ALL_DELIVERED,
    DISTRIBUTION_KEY,
    decide_alerts,
    insight_alerts_sensor,
)
from orchestration.assets.ml import INSIGHTS_KEYS
from orchestration.environment import environment_from
from reports import alerts, distribution, exports, messages
from reports.delivery import Retry, Settings, Smtp, post_webhook, send_email
from tests.conftest import copy_of, sample_day
from tests.orchestration.helpers import platform_environment, run_in_process, run_main_job
from tests.reports.receivers import SmtpReceiver, WebhookReceiver, free_port

FAST = Retry(attempts=3, backoff_seconds=0.01, timeout_seconds=5)
CHOSEN = ("/", "/forecasts", "/insights")


FAST_SETTINGS = {"REPORTS_DELIVERY_BACKOFF_SECONDS": "0.05", "REPORTS_DELIVERY_ATTEMPTS": "3"}


def run_job(data_dir, job: str, extra_env: dict[str, str]) -> str:
    """A job in the test's process, retrying fast; its summary."""
    return run_in_process(data_dir, {**FAST_SETTINGS, **extra_env}, job=job)


@pytest.fixture(scope="module")
def reports_data(main_run, tmp_path_factory):
    """A copy of the main job's data that the distribution jobs of this module may change."""
    return copy_of(main_run[0], tmp_path_factory.mktemp("distribution"))


@pytest.fixture(scope="module")
def distributed(reports_data):
    """The report job once, as users run it (`python -m orchestration.main --job ...`), with a mail
    server and a webhook that each fail their first attempt."""
    data_dir = reports_data
    with SmtpReceiver(fail_first=1) as smtp, WebhookReceiver([500]) as webhook:
        out = run_main_job(data_dir, {**FAST_SETTINGS,
            "REPORTS_SMTP_HOST": "127.0.0.1", "REPORTS_SMTP_PORT": str(smtp.port),
            "REPORTS_EMAIL_TO": "ceo@example.com, not-an-address, cfo@example.com",
            "REPORTS_WEBHOOK_URL": webhook.url, "REPORTS_SITE_URL": "http://reports.example.com",
            "REPORTS_PDF_PAGES": ",".join(CHOSEN)}, job="report_distribution_job")
    return data_dir, out, smtp, webhook


def warehouse_headline(data_dir) -> dict[str, float]:
    """The last 7 days with sessions, all tenants, straight from the warehouse's `metrics_daily` mart."""
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as conn:
        row = conn.execute("""
            with days as (
                select date_day, sum(revenue) as revenue, sum(orders) as orders, sum(active_users) as active_users,
                       sum(mrr) as mrr, sum(active_subscriptions) as active_subscriptions,
                       sum(churned_subscriptions) as churned
                from marts.metrics_daily group by date_day having sum(sessions) is not null
            ), last_week as (
                select * from days where date_day > (select max(date_day) from days) - interval 7 day
            )
            select sum(revenue), sum(orders), avg(active_users), arg_max(mrr, date_day),
                   sum(churned) / arg_max(active_subscriptions, date_day)
            from last_week""").fetchone()
    return dict(zip(("revenue", "orders", "active_users", "mrr", "churn_rate"), map(float, row), strict=True))


def test_the_report_is_emailed_with_its_pdfs_after_a_retry(distributed):
    _, out, smtp, _ = distributed
    assert smtp.attempts == 2  # the first refused with 451, the retry taken
    assert len(smtp.messages) == 1
    recipients, message = smtp.messages[0]
    assert recipients == ["ceo@example.com", "cfo@example.com"]
    assert message["Subject"].startswith("Analytics report, data version ")
    attachments = {part.get_filename(): part.get_content() for part in message.iter_attachments()}
    assert list(attachments) == ["index.pdf", "forecasts.pdf", "insights.pdf"]
    assert all(content.startswith(b"%PDF") for content in attachments.values())
    body = message.get_body(("plain",)).get_content()
    assert "Revenue: $" in body and "http://reports.example.com/" in body
    assert "email via 127.0.0.1" in out and "attempt 1 of 3 failed: the server answered 451" in out
    assert "email to ceo@example.com: delivered (2 attempts)" in out
    # the invalid address is reported by the setting that holds it, and the others still got the mail
    assert "email to not-an-address: FAILED: REPORTS_EMAIL_TO: 'not-an-address' is not an email address" in out


def test_the_webhook_gets_a_slack_message_with_the_link_and_headline_numbers(distributed):
    _, out, _, webhook = distributed
    assert webhook.requests == 2 and len(webhook.bodies) == 1  # a 500, then delivered
    payload = webhook.bodies[0]
    assert "Open the reports: http://reports.example.com/" in payload["text"]
    fields = [field["text"] for block in payload["blocks"] if "fields" in block for field in block["fields"]]
    assert any(text.startswith("*Revenue*\n$") for text in fields), fields
    assert {"header", "section"} <= {block["type"] for block in payload["blocks"]}
    assert "<http://reports.example.com/|Open the reports>" in str(payload["blocks"])
    assert "secret-token" not in out  # the webhook's secret path is never logged
    assert "webhook to http://127.0.0.1:" in out and "delivered (2 attempts)" in out


def test_the_pdf_headline_numbers_equal_the_warehouse(distributed):
    data_dir, out, smtp, _ = distributed
    _, message = smtp.messages[0]
    pdf = next(part for part in message.iter_attachments() if part.get_filename() == "index.pdf")
    path = data_dir / "index-from-email.pdf"
    path.write_bytes(pdf.get_content())
    reader = PdfReader(path)
    text = " ".join(page.extract_text() for page in reader.pages)
    assert sum(len(page.images) for page in reader.pages) == 3  # the page's three charts, drawn
    truth = warehouse_headline(data_dir)
    expected = {
        "Revenue": exports.format_value(truth["revenue"], "usd2"),
        "Orders": exports.format_value(truth["orders"], "num0"),
        "Active users": exports.format_value(truth["active_users"], "num1"),
        "MRR": exports.format_value(truth["mrr"], "usd2"),
        "Churn rate": exports.format_value(truth["churn_rate"], "pct2"),
    }
    for title, number in expected.items():
        assert number in text, (title, number, text)
        assert f"{title}: {number}" in out or f"{title} (daily average): {number}" in out  # the run says the same


def test_every_page_dataset_is_exported_as_csv_xlsx_and_parquet(distributed):
    data_dir, _, _, _ = distributed
    [directory] = (data_dir / "reports" / "exports").iterdir()
    for page in exports.pages.all_pages():
        sheets = pd.read_excel(directory / f"{page.name}.xlsx", sheet_name=None)
        assert list(sheets) == list(page.own_queries), page.route
        for query in page.own_queries:
            csv = pd.read_csv(directory / page.name / f"{query}.csv")
            parquet = pd.read_parquet(directory / page.name / f"{query}.parquet")
            assert len(csv) == len(parquet) == len(sheets[query]), (page.route, query)
    periods = pd.read_parquet(directory / "index" / "periods.parquet")
    assert periods.iloc[0]["revenue"] == pytest.approx(warehouse_headline(data_dir)["revenue"])


def test_refusing_servers_are_retried_reported_and_the_run_still_succeeds(reports_data):
    data_dir = reports_data
    with SmtpReceiver(fail_first=100, fail_code=451) as smtp, WebhookReceiver([500] * 100) as webhook:
        out = run_job(data_dir, "report_distribution_job", {  # exits 0: deliveries never fail a run
            "REPORTS_SMTP_HOST": "127.0.0.1", "REPORTS_SMTP_PORT": str(smtp.port),
            "REPORTS_EMAIL_TO": "ceo@example.com", "REPORTS_WEBHOOK_URL": webhook.url, "REPORTS_PDF_PAGES": "/"})
    assert smtp.attempts == 3 and webhook.requests == 3
    assert "email to ceo@example.com: FAILED: via 127.0.0.1" in out and "451 try again later (3 attempts)" in out
    assert "HTTP 500 Internal Server Error: server error (3 attempts)" in out
    # the run records the failures as a warning on the asset, where the UI shows them
    with dg.DagsterInstance.from_config(str(data_dir / "dagster")) as instance:
        [record] = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(DISTRIBUTION_KEY, ALL_DELIVERED), limit=1)
    evaluation = record.event.dagster_event.event_specific_data
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert "email to ceo@example.com: FAILED" in evaluation.description


def test_high_severity_insights_are_alerted_once_by_the_alerts_job(reports_data, alert_receiver):
    """With an alert webhook configured, the insights step queues its high-severity insights (it
    sends nothing itself); the alerts job posts them once."""
    data_dir = reports_data
    spike_day = sample_day(3)
    with duckdb.connect(str(data_dir / "warehouse.duckdb")) as conn:  # an unmistakable day: 20 times the orders
        conn.execute("update marts.metrics_daily set orders = 20 * orders + 20, revenue = 20 * revenue + 2000 "
                     "where tenant_id = 't002' and date_day = ?", [spike_day])
    run_in_process(data_dir, {"REPORTS_ALERT_WEBHOOK_URL": alert_receiver.url}, assets=list(INSIGHTS_KEYS))
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as conn:
        high = conn.execute("select insight_type, metric, tenant_id, date_day from ml.insights "
                            "where severity = 'high'").fetchall()
    assert ("anomaly_spike", "orders", "t002", spike_day) in high
    outbox = alerts.Outbox(data_dir / "reports" / "alerts")
    assert len(outbox.pending()) == 1 and alert_receiver.bodies == []  # queued by the insights step, not sent
    run_job(data_dir, "insight_alerts_job", {"REPORTS_ALERT_WEBHOOK_URL": alert_receiver.url})
    assert len(alert_receiver.bodies) == 1
    payload = alert_receiver.bodies[0]
    assert payload["text"].startswith(f"{len(high)} high-severity insight")
    assert {"|".join(map(str, row)) for row in high} == outbox.alerted()
    assert outbox.pending() == []
    # the same insights found again are not alerted again
    assert outbox.enqueue(pd.DataFrame([dict(zip(
        ("insight_type", "metric", "tenant_id", "date_day"), row, strict=True), severity="high", confidence=1.0,
        value=0.0, expected=1.0, explanation="again") for row in high])) == 0


def insight(day: str, metric: str = "revenue", severity: str = "high") -> dict:
    return {"insight_type": "anomaly_drop", "metric": metric, "tenant_id": "t001", "date_day": pd.Timestamp(day),
            "severity": severity, "confidence": 0.99, "value": 0.0, "expected": 25.5,
            "explanation": f"Revenue for tenant t001 on {day} were 0.0, 0.00x the expected 25.5."}


def test_an_alert_the_webhook_refuses_stays_queued_until_it_is_delivered(tmp_path):
    outbox = alerts.Outbox(tmp_path)
    assert outbox.enqueue(pd.DataFrame([insight("2026-09-18"), insight("2026-09-19", severity="low")])) == 1
    with WebhookReceiver([500] * 3) as down:
        settings = Settings(alert_webhook_url=down.url, retry=FAST)
        [failed] = distribution.deliver_alerts(outbox, settings, print)
    assert not failed.ok and failed.attempts == 3 and "HTTP 500" in failed.error
    assert len(outbox.pending()) == 1 and outbox.alerted() == set()
    assert outbox.enqueue(pd.DataFrame([insight("2026-09-18"), insight("2026-09-20")])) == 1  # only the new one
    with WebhookReceiver() as up:
        results = distribution.deliver_alerts(outbox, Settings(alert_webhook_url=up.url, retry=FAST), print)
    assert [result.ok for result in results] == [True, True]
    assert [body["text"].split(":")[0] for body in up.bodies] == ["1 high-severity insight"] * 2
    assert outbox.pending() == [] and len(outbox.alerted()) == 2


def test_an_alerted_anomaly_that_the_confirmed_verdict_withdraws_is_alerted_as_withdrawn(tmp_path):
    """A withdrawal is alerted (low severity as it is) only where its anomaly was alerted or is queued,
    and once."""
    outbox = alerts.Outbox(tmp_path)
    assert outbox.enqueue(pd.DataFrame([insight("2026-09-18")])) == 1
    with WebhookReceiver() as up:
        distribution.deliver_alerts(outbox, Settings(alert_webhook_url=up.url, retry=FAST), print)
        assert outbox.enqueue(pd.DataFrame([insight("2026-09-20")])) == 1  # queued, not yet sent
        withdrawn = [{**insight(day, severity="low"), "insight_type": alerts.WITHDRAWN,
                      "explanation": f"Revenue for tenant t001 on {day}: withdrawn."}
                     for day in ("2026-09-18", "2026-09-19", "2026-09-20")]  # the 19th was never alerted
        assert outbox.enqueue(pd.DataFrame(withdrawn)) == 2
        assert outbox.enqueue(pd.DataFrame(withdrawn)) == 0
        distribution.deliver_alerts(outbox, Settings(alert_webhook_url=up.url, retry=FAST), print)
    assert [body["text"].split(":")[0] for body in up.bodies] == [
        "1 high-severity insight", "1 high-severity insight", "2 anomalies withdrawn"]
    assert "on 2026-09-18: withdrawn" in up.bodies[2]["text"] and "2026-09-19" not in up.bodies[2]["text"]


def test_the_alerts_sensor_sends_new_files_at_once_and_retries_failed_ones_later():
    request, cursor = decide_alerts(["a.json"], {}, now=1000.0, in_flight=[])
    assert request.__class__.__name__ == "RunRequest"
    skip, same = decide_alerts(["a.json"], cursor, now=1000.0 + ALERT_RETRY_SECONDS - 1, in_flight=[])
    assert "next try" in skip.skip_message and same == cursor
    request, _ = decide_alerts(["a.json", "b.json"], cursor, now=1001.0, in_flight=[])  # a new file: at once
    assert request.__class__.__name__ == "RunRequest"
    skip, _ = decide_alerts(["a.json"], {}, now=1000.0, in_flight=["run-1"])
    assert "wait for run run-1" in skip.skip_message
    skip, cursor = decide_alerts([], cursor, now=1000.0, in_flight=[])
    assert skip.skip_message == "no alerts queued" and cursor == {}


def test_the_alerts_sensor_itself_evaluates_on_an_instance(tmp_path):
    """The sensor, not only its decision: it asks the instance for its job's runs in flight (a changed
    signature once made every one of its ticks fail)."""
    with platform_environment(tmp_path / "data"), dg.instance_for_test() as instance:
        skip = insight_alerts_sensor(dg.build_sensor_context(instance=instance))
    assert skip.skip_message == "no alerts queued"


def test_a_recipient_the_server_refuses_is_reported_without_retrying_and_the_others_get_the_mail(tmp_path):
    pdf = tmp_path / "index.pdf"
    pdf.write_bytes(b"%PDF-1.4 test")
    with SmtpReceiver(refuse={"gone@example.com"}) as smtp:
        settings = Settings(smtp=Smtp("127.0.0.1", smtp.port), recipients=("gone@example.com", "ok@example.com"),
                            retry=FAST)
        results = {r.target: r for r in send_email(settings, "subject", "body", [pdf], print)}
    assert results["ok@example.com"].ok
    refused = results["gone@example.com"]
    assert not refused.ok and refused.attempts == 1 and "550 5.1.1 no such user here" in refused.error
    assert smtp.messages[0][0] == ["ok@example.com"]


@pytest.mark.parametrize("host", ["127.0.0.1", "smtp.unreachable.invalid"])
def test_an_unreachable_smtp_host_is_retried_and_reported_with_its_address(host):
    port = free_port()
    settings = Settings(smtp=Smtp(host, port), recipients=("ceo@example.com",), retry=FAST)
    logged: list[str] = []
    [result] = send_email(settings, "subject", "body", [], logged.append)
    assert not result.ok and result.attempts == 3
    assert f"via {host}:{port}" in result.error
    assert len([line for line in logged if "retrying in" in line]) == 2 and "giving up" in logged[-1]


@pytest.mark.parametrize("url", ["http://127.0.0.1:{port}/hook", "http://hooks.unreachable.invalid/services/x"])
def test_an_unreachable_webhook_is_retried_and_reported_without_its_secret(url):
    url = url.format(port=free_port())
    result = post_webhook(url, {"text": "hello"}, FAST, print)
    assert not result.ok and result.attempts == 3 and "ConnectError" in result.error
    assert result.target == url.rsplit("/", 2 if "services" in url else 1)[0]  # scheme and host only


def test_a_webhook_that_rejects_the_message_is_not_retried():
    with WebhookReceiver([400]) as webhook:
        result = post_webhook(webhook.url, {"text": "hello"}, FAST, print)
    assert not result.ok and result.attempts == 1 and "HTTP 400" in result.error


def test_wrong_settings_name_the_variable_and_leave_the_other_channels_working(tmp_path):
    settings = Settings.from_env({"REPORTS_SMTP_HOST": "localhost", "REPORTS_SMTP_PORT": "twenty-five",
                                  "REPORTS_EMAIL_TO": "ceo@example.com", "REPORTS_WEBHOOK_URL": "hooks.example.com/x",
                                  "REPORTS_ALERT_WEBHOOK_URL": "https://alerts.example.com/x"})
    assert settings.problems["email"] == "REPORTS_SMTP_PORT must be a whole number, not 'twenty-five'"
    assert settings.problems["webhook"].startswith("REPORTS_WEBHOOK_URL must be an http(s) URL")
    assert "alert" not in settings.problems
    assert Settings.from_env({"REPORTS_SMTP_HOST": "localhost"}).problems["email"].startswith("REPORTS_EMAIL_TO is")
    [result] = send_email(settings, "s", "b", [], print)
    assert not result.ok and result.attempts == 0 and "REPORTS_SMTP_PORT" in result.error
    with pytest.raises(exports.pages.PageError, match="REPORTS_PDF_PAGES: no page has the route '/sales'"):
        distribution.pdf_routes(environment_from({"REPORTS_PDF_PAGES": "/,/sales"}).report_pdf_pages)


def test_headline_numbers_are_formatted_as_the_pages_show_them():
    assert exports.format_value(82116.484, "usd2") == "$82,116.48"
    assert exports.format_value(1176, "num0") == "1,176"
    assert exports.format_value(0.0065, "pct2") == "0.65%"
    assert exports.format_value(-0.019, "pct1") == "-1.9%"
    assert exports.format_value(None, "usd2") == "-"
    alert = messages.alert_webhook([{**insight("2026-09-18"), "date_day": date(2026, 9, 18)}], "http://x")
    assert alert["text"].startswith("1 high-severity insight: Revenue for tenant t001")
    assert "anomaly_drop" not in str(alert["blocks"])  # a reader's words, not the type's code
