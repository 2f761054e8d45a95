"""Who gets what: the scheduled report (PDFs by email, headline numbers by webhook) and the alerts.

The Dagster assets in `orchestration/assets/distribution.py` call these; they return one `Delivery`
per recipient or webhook and never raise for a failed one (see `reports.delivery`).
"""

from __future__ import annotations

from reports import alerts, messages, pages
from reports.delivery import Delivery, Log, Settings, post_webhook, send_email
from reports.exports import Exported

DEFAULT_PDF_PAGES = "/,/forecasts,/insights"


def pdf_routes(value: str | None) -> list[str]:
    """REPORTS_PDF_PAGES (`value`, as the environment read it; None: the default): the routes rendered to
    PDF and attached, comma-separated."""
    routes = [route.strip() for route in (value or DEFAULT_PDF_PAGES).split(",") if route.strip()]
    for route in routes:
        try:
            pages.by_route(route)
        except pages.PageError as error:
            raise pages.PageError(f"REPORTS_PDF_PAGES: {error}") from None
    return routes


def deliver_report(exported: Exported, settings: Settings, log: Log) -> list[Delivery]:
    results = send_email(settings, messages.report_subject(exported), messages.report_text(exported, settings.site_url),
                         exported.pdfs, log)
    if "webhook" in settings.problems:
        results.append(Delivery("webhook", "REPORTS_WEBHOOK_URL", False, 0, settings.problems["webhook"]))
    elif settings.webhook_url:
        results.append(post_webhook(settings.webhook_url, messages.report_webhook(exported, settings.site_url),
                                    settings.retry, log))
    return results


def deliver_alerts(outbox: alerts.Outbox, settings: Settings, log: Log) -> list[Delivery]:
    """Send every pending alert; without a usable alert webhook the alerts stay pending."""
    if not settings.alert_webhook_url or "alert" in settings.problems:
        why = settings.problems.get("alert", "REPORTS_ALERT_WEBHOOK_URL is not set")
        return [Delivery("alert", "REPORTS_ALERT_WEBHOOK_URL", False, 0, why)] if outbox.pending() else []
    return outbox.deliver(lambda rows: post_webhook(
        settings.alert_webhook_url, messages.alert_webhook(rows, settings.site_url), settings.retry, log, "alert"))
