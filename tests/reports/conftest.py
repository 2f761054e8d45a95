"""The main job run once for the reports suites, as users run it, with an alert webhook listening.

The alert webhook receiver is up before the run, so the run's insights step queues its
high-severity insights for it, exactly as a configured deployment would.
"""

from __future__ import annotations

import pytest

from reports import browser as chromium_browser
from tests.orchestration.helpers import run_main_job
from tests.reports.receivers import WebhookReceiver


@pytest.fixture(scope="session")
def alert_receiver():
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="session")
def main_run(tmp_path_factory, alert_receiver):
    data_dir = tmp_path_factory.mktemp("reports") / "data"
    return data_dir, run_main_job(data_dir, {"REPORTS_ALERT_WEBHOOK_URL": alert_receiver.url})


@pytest.fixture(scope="session")
def chromium():
    with chromium_browser.chromium() as chromium:
        yield chromium
