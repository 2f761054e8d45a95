"""What the deliveries say: the report's email and webhook message, and the insight alert.

Webhook messages are Slack's incoming-webhook JSON (`text` for notifications and clients without
blocks, `blocks` for the layout), which Mattermost, Teams' Slack-compatible connectors and most
chat tools accept too. Numbers are the exports' headline numbers, formatted as the pages show them.
"""

from __future__ import annotations

from collections.abc import Sequence

from reports.alerts import WITHDRAWN
from reports.exports import Exported

SLACK_FIELDS_PER_SECTION = 10
ALERTS_PER_MESSAGE = 20  # Slack takes at most 50 blocks


def report_subject(exported: Exported) -> str:
    return f"Analytics report, data version {exported.data_version}"


def report_text(exported: Exported, site_url: str) -> str:
    """The email body: the headline numbers, the link, what is attached and where the datasets are."""
    lines = [report_subject(exported), ""]
    lines += [f"- {number.sentence()}" for number in exported.headlines]
    lines += ["", f"Open the reports: {site_url}/",
              f"Attached: {', '.join(pdf.name for pdf in exported.pdfs) or 'no PDF (none chosen)'}.",
              f"Every page's datasets (CSV, XLSX, Parquet): {exported.directory}"]
    return "\n".join(lines)


def report_webhook(exported: Exported, site_url: str) -> dict:
    numbers = exported.headlines
    fields = [{"type": "mrkdwn", "text": f"*{n.title}*\n{n.value}" + (f" ({n.change_text})" if n.change_text else "")}
              for n in numbers]
    blocks: list[dict] = [{"type": "header", "text": {"type": "plain_text", "text": report_subject(exported)}}]
    for start in range(0, len(fields), SLACK_FIELDS_PER_SECTION):
        blocks.append({"type": "section", "fields": fields[start:start + SLACK_FIELDS_PER_SECTION]})
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"<{site_url}/|Open the reports>"}})
    summary = "; ".join(number.sentence() for number in numbers)
    return {"text": f"{report_subject(exported)}: {summary}. Open the reports: {site_url}/", "blocks": blocks}


def insight_text(insight: dict, separator: str) -> str:
    """An insight's explanation, its drivers and its recommendation (those it has), as one text."""
    parts = [insight["explanation"], insight.get("drivers") or "",
             f"Recommended: {insight['recommendation']}" if insight.get("recommendation") else ""]
    return separator.join(part for part in parts if part)


def alert_webhook(insights: Sequence[dict], site_url: str) -> dict:
    """One message for a batch of high-severity insights (and withdrawn anomalies: `reports.alerts`),
    each with its one-sentence explanation."""
    count = len(insights)
    withdrawn = sum(insight["insight_type"] == WITHDRAWN for insight in insights)
    parts = [f"{count - withdrawn} high-severity insight{'s' * (count - withdrawn != 1)}"] if count > withdrawn else []
    parts += [f"{withdrawn} anomal{'ies' if withdrawn != 1 else 'y'} withdrawn"] if withdrawn else []
    title = ", ".join(parts)
    blocks: list[dict] = [{"type": "header", "text": {"type": "plain_text", "text": title}}]
    for insight in insights[:ALERTS_PER_MESSAGE]:
        # the explanation names the metric, the tenant and the day in words: no codes or ids beside it;
        # then what drove it and what to check (ml/drivers.py, ml/priorities.py), where there are
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": insight_text(insight, "\n")}})
    if count > ALERTS_PER_MESSAGE:
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"and {count - ALERTS_PER_MESSAGE} more on the insights page"}]})
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"<{site_url}/insights|Open the insights>"}})
    explanations = " ".join(insight_text(insight, " ") for insight in insights[:ALERTS_PER_MESSAGE])
    return {"text": f"{title}: {explanations} {site_url}/insights", "blocks": blocks}
