"""schemathesis against the OpenAPI description the collector serves (`tests/openapi_conformance.py`):
every route, with generated events and bodies, answers as documented (400 naming the field, never 5xx)."""

from __future__ import annotations

import httpx
import pytest

from ingestion.paths import DataLayout
from tests.ingestion.collector_process import KEYS, collector
from tests.openapi_conformance import check_conformance

WRITE_KEY = next(iter(KEYS))


@pytest.fixture(scope="module")
def conformance_collector(tmp_path_factory):
    """A collector of its own: the generated events that are valid get stored."""
    with collector(DataLayout(tmp_path_factory.mktemp("conformance-collector") / "data")) as running:
        yield running


def test_the_collector_answers_as_its_openapi_description_says(conformance_collector):
    checked = check_conformance(conformance_collector.url, auth=(WRITE_KEY, ""))
    assert {"POST /v1/batch", "POST /v1/track", "POST /v1/events", "GET /health", "GET /metrics"} <= set(checked)


def test_the_description_served_is_the_one_in_the_repository(conformance_collector):
    served = httpx.get(f"{conformance_collector.url}/openapi.json").json()
    assert served["info"]["title"] == "Event collector" and "/v1/batch" in served["paths"]
