"""The live page (`GET /live` on the metrics server) in Debian's Chromium, as a person leaves it open:
new data is published (or events are sent to the collector and a micro-batch runs) and the page
shows it by itself, pushed over its WebSocket (the page sends no request after it loaded). How
soon is a figure for a benchmark (`make bench-live`), not for a test on a shared machine: the test
records it (`publish_to_page_ms` in the JUnit report) and allows five seconds. A screenshot is kept
in `tests/artifacts/live/` (git-ignored)."""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from datetime import UTC, datetime

import httpx
import orjson

from ingestion.paths import DataLayout
from orchestration.microbatch import closed_files, microbatch_job
from reports.browser import VIEWPORT
from tests.conftest import REPO_ROOT, copy_of
from tests.ingestion.collector_process import collector
from tests.ingestion.helpers import query as sql
from tests.orchestration.helpers import run_in_process
from tests.semantic.conftest import publish_minute, start_server

ARTIFACTS = REPO_ROOT / "tests" / "artifacts" / "live"
EVENTS_TILE = "document.getElementById('live.live_events')"
REVENUE_TILE = "document.getElementById('live.live_gross_revenue')"


def _wait(page, expression: str, timeout: float = 10) -> None:
    """Wait until a JavaScript expression is true in the page. (Playwright's wait_for_function evaluates
    its predicate with eval, which the page's Content-Security-Policy forbids, as it should.)"""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"not within {timeout} s: {expression}"
        time.sleep(0.02)


def _number(text: str) -> float:
    return float(re.sub(r"[^\d.]", "", text))


def _today_events(server, token: str) -> int:
    query = '{"measures": ["live.live_events"], "timeDimensions": [{"dimension": "live.metric_time", ' \
            '"dateRange": "today"}]}'
    reply = httpx.get(f"{server.url}/cubejs-api/v1/load", params={"query": query},
                      headers={"Authorization": token}).json()
    return int(reply["data"][0]["live.live_events"] or 0)


def test_the_live_page_shows_a_publish_by_itself(live_server, chromium, record_property):
    token = live_server.token("t003", ttl_seconds=3500)
    page = chromium.new_page(viewport=VIEWPORT)
    errors: list[str] = []
    requests: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("request", lambda request: requests.append(request.url))
    try:
        page.goto(f"{live_server.url}/live#token={token}")
        _wait(page, "document.getElementById('status').dataset.state === 'live'"
                    " && document.getElementById('chart').dataset.events !== undefined"
                    f" && {EVENTS_TILE}.textContent !== '–'", timeout=15)
        assert "token" not in page.url  # taken out of the address bar
        assert page.inner_text("#who") == "tenant t003"
        shown_text = page.evaluate(f"{EVENTS_TILE}.textContent")
        assert _number(shown_text) == _today_events(live_server, token)
        last_hour = int(page.evaluate("document.getElementById('chart').dataset.events"))
        revenue = _number(page.evaluate(f"{REVENUE_TILE}.textContent"))
        loaded = len(requests)

        minute = datetime.now(UTC).replace(second=0, microsecond=0, tzinfo=None)
        before = sql(live_server.layout, "select coalesce(sum(events), 0) from marts.metrics_per_minute "
                                         "where tenant_id = 't003' and minute_at = ?", minute)[0][0]
        publish_minute(live_server.layout, "t003", events=before + 9, revenue=25.0, minute=minute)
        published = time.time() * 1000
        _wait(page, f"{EVENTS_TILE}.textContent !== '{shown_text}'", timeout=5)
        record_property("publish_to_page_ms", round(float(page.evaluate(f"{EVENTS_TILE}.dataset.updatedAt"))
                                                    - published))
        assert _number(page.evaluate(f"{EVENTS_TILE}.textContent")) == _number(shown_text) + 9
        assert _number(page.evaluate(f"{REVENUE_TILE}.textContent")) == revenue + 25
        _wait(page, f"document.getElementById('chart').dataset.events === '{last_hour + 9}'", timeout=5)
        assert requests[loaded:] == []  # pushed: the page asked for nothing
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "live.png"), full_page=True)
        assert errors == []
    finally:
        page.close()


def test_the_live_page_asks_for_a_token_when_it_has_none_or_a_refused_one(live_server, chromium):
    page = chromium.new_page(viewport=VIEWPORT)
    try:
        page.goto(f"{live_server.url}/live")
        page.wait_for_selector("#token-form:not([hidden])", timeout=10000)
        assert "no token" in page.inner_text("#status")

        page.goto("about:blank")  # a new document: a change of fragment alone does not reload it
        page.goto(f"{live_server.url}/live#token={live_server.token('t001')[:-4]}AAAA")
        _wait(page, "document.getElementById('status').dataset.state === 'error'")
        assert page.inner_text("#status") == "token refused: Invalid token: wrong signature"
        assert page.is_visible("#token-form")
    finally:
        page.close()


def test_events_sent_to_the_collector_show_on_the_open_live_page(published, tmp_path, chromium):
    """The whole path a person watches: events posted to the collector, the micro-batch the sensor
    would start (run in this process, on the clock's time rather than the suite's pinned one, as the
    events are today's), its publish, and the page changing by itself."""
    layout = DataLayout(copy_of(published.root, tmp_path))
    with contextlib.contextmanager(start_server)(layout, tmp_path / "server.log") as server:
        page = chromium.new_page(viewport=VIEWPORT)
        try:
            page.goto(f"{server.url}/live#token={server.token('t001')}")
            _wait(page, f"document.getElementById('status').dataset.state === 'live' && {EVENTS_TILE}.textContent"
                        " !== '–'", timeout=15)
            shown = int(_number(page.evaluate(f"{EVENTS_TILE}.textContent")))

            now, marker = datetime.now(UTC), uuid.uuid4().hex
            sent = [{"event_id": f"{marker}-{i}", "event_type": "page_view",
                     "timestamp": now.isoformat().replace("+00:00", "Z"), "tenant_id": "t001",
                     "user_id": f"t001-u{i}", "session_id": f"{marker}-s", "properties": {"path": "/live"},
                     "context": {"device": "desktop"}} for i in range(12)]
            with collector(layout) as running:
                reply = httpx.post(f"{running.url}/v1/batch", content=orjson.dumps({"batch": sent}),
                                   headers={"Authorization": "Bearer key-t001"}, timeout=30)
                assert reply.status_code == 200, reply.text
                deadline = time.monotonic() + 15
                while not any(marker.encode() in (layout.events_dir / f.name).read_bytes()
                              for f in closed_files(layout.events_dir)):
                    assert time.monotonic() < deadline, "the collector closed no file with the events"
                    time.sleep(0.1)
            run_in_process(layout.root, extra_env={"PLATFORM_NOW": now.isoformat()}, job=microbatch_job.name)
            _wait(page, f"{EVENTS_TILE}.textContent.replace(/[^0-9]/g, '') === '{shown + 12}'", timeout=10)
        finally:
            page.close()
