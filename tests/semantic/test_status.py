"""The status page of the metrics server (`/status`, `/status.json`) probing real parts: a collector, the
SQL endpoint's health port, and a Dagster webserver that is not running; read as JSON and looked at in
headless Chromium."""

from __future__ import annotations

import contextlib
import time

import httpx
import pytest

from ingestion.paths import DataLayout
from reports import browser
from semantic.settings import ServingSettings, SettingsError
from tests.ingestion.collector_process import collector
from tests.semantic.conftest import SECRET, free_port, start_server


def parts(state: dict) -> dict[str, dict]:
    return {part["name"]: part for part in state["parts"]}


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def platform(published, tmp_path_factory):
    """The metrics server with SEMANTIC_STATUS_PARTS naming a collector, the SQL endpoint's health port and
    a Dagster webserver nobody started; its freshness limit (a second) makes the published data stale."""
    root = tmp_path_factory.mktemp("status")
    health_port, nobody = free_port(), free_port()
    run = contextlib.contextmanager(start_server)
    with contextlib.ExitStack() as stack:
        running = stack.enter_context(collector(DataLayout(root / "collector")))
        stack.enter_context(run(published, root / "sql.log", module="semantic.pgwire",
                                extra_env={"SEMANTIC_SQL_METRICS_PORT": str(health_port)}))
        probes = {"collector": f"{running.url}/health", "sql endpoint": f"http://127.0.0.1:{health_port}/healthz",
                  "dagster": f"http://127.0.0.1:{nobody}/server_info"}
        server = stack.enter_context(run(published, root / "rest.log", extra_env={
            "SEMANTIC_STATUS_PARTS": ",".join(f"{name}={url}" for name, url in probes.items()),
            "PLATFORM_FRESHNESS_MAX_HOURS": str(1 / 3600)}))
        deadline = time.monotonic() + 60  # the SQL endpoint's health port starts beside its SQL port
        while not _answers(probes["sql endpoint"]):
            assert time.monotonic() < deadline, "the SQL endpoint's health port did not start"
            time.sleep(0.2)
        yield server, probes


def test_the_status_page_shows_every_part_with_its_health(platform):
    server, probes = platform
    state = httpx.get(f"{server.url}/status.json", timeout=30).json()
    got = parts(state)
    assert state["status"] == "down"  # the worst part's
    assert got["metrics server"]["status"] == "ok"
    assert got["published data"]["status"] == "degraded"
    assert got["published data"]["detail"].startswith("stale: version ")
    assert got["collector"] == {"name": "collector", "status": "ok", "detail": "HTTP 200: status ok",
                                "url": probes["collector"]}
    assert got["sql endpoint"]["status"] == "ok" and "dataVersion" in got["sql endpoint"]["detail"]
    assert got["dagster"]["status"] == "down" and got["dagster"]["detail"].startswith("not reachable: ConnectError")


def test_with_fresh_data_and_nothing_else_configured_the_status_is_ok(server):
    state = httpx.get(f"{server.url}/status.json", timeout=30).json()
    assert state["status"] == "ok"
    assert [(p["name"], p["status"]) for p in state["parts"]] == [("metrics server", "ok"), ("published data", "ok")]


def test_the_status_page_in_a_browser(platform):
    server, _ = platform
    with browser.chromium() as chromium:
        page = chromium.new_page()
        page.goto(f"{server.url}/status")
        assert page.title() == "Platform status: down"
        rows = page.locator("tbody tr")
        assert rows.count() == 5
        shown = {rows.nth(i).locator("th").inner_text(): rows.nth(i).locator(".badge").inner_text()
                 for i in range(rows.count())}
        assert shown == {"metrics server": "ok", "published data": "degraded", "collector": "ok",
                         "sql endpoint": "ok", "dagster": "down"}
        down = page.locator("tr.down .badge").evaluate("badge => getComputedStyle(badge).backgroundColor")
        assert down == "rgb(197, 48, 48)"


@pytest.mark.parametrize(("env", "message"), [
    ({"SEMANTIC_STATUS_PARTS": "collector"}, "SEMANTIC_STATUS_PARTS: 'collector' is not name=http(s)://"),
    ({"SEMANTIC_STATUS_PARTS": "sql=localhost:15433"}, "SEMANTIC_STATUS_PARTS: 'sql=localhost:15433' is not"),
    ({"SEMANTIC_STATUS_PARTS": "a=http://h/x,a=http://h/y"}, "SEMANTIC_STATUS_PARTS: 'a' is named twice"),
    ({"PLATFORM_FRESHNESS_MAX_HOURS": "a day"}, "PLATFORM_FRESHNESS_MAX_HOURS must be a number of hours above 0"),
])
def test_bad_status_settings_are_refused_naming_them(tmp_path, env, message):
    with pytest.raises(SettingsError) as refused:
        ServingSettings.from_environment({"PLATFORM_DATA_DIR": str(tmp_path), "SEMANTIC_API_SECRET": SECRET, **env})
    assert message in str(refused.value)
