"""The reports suites read the session's `main_run` (tests/conftest.py): the main job run once, as
users run it."""

from __future__ import annotations

import pytest

from tests.reports.receivers import WebhookReceiver


@pytest.fixture(scope="session")
def alert_receiver():
    with WebhookReceiver() as receiver:
        yield receiver
