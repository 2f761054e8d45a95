"""Data Docs read offline: a validation builds them with local copies of their scripts and styles, and
headless Chromium, with every request off the machine refused, shows them styled with a filled index,
served as `make serve-quality-docs` serves them."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import duckdb
import pytest

from expectations import data_docs
from expectations.runner import Runner, data_docs_index
from expectations.suites.raw_events import SUITE
from reports.browser import chromium
from semantic.warehouse import Warehouse

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)
BODY_FONT = "getComputedStyle(document.body).fontFamily"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The Data Docs of one real validation (two page views, one breaking the property schema)."""
    root = tmp_path_factory.mktemp("data-docs")
    with duckdb.connect(str(root / "warehouse.duckdb")) as conn:
        conn.execute("create schema raw_events")
        conn.execute('create table raw_events.events (event_id varchar, event_type varchar, "timestamp" timestamptz, '
                     "properties varchar, _loaded_at timestamptz)")
        conn.executemany("insert into raw_events.events values (?, 'page_view', ?, ?, ?)",
                         [("a", NOW, '{"path": "/"}', NOW), ("b", NOW, '{"path": 7}', NOW)])
        Runner(Warehouse(conn, "duckdb"), root / "gx", "run", now=NOW).validate(
            SUITE, only={"properties_match_schema", "timestamps_not_in_future"})
    return data_docs_index(root / "gx").parent


@pytest.fixture(scope="module")
def served(site):
    httpd = data_docs.server(site, port=0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_pages_load_nothing_from_outside(site):
    pages = list(site.rglob("*.html"))
    assert len(pages) >= 2  # the index and the validation's page
    for page in pages:
        assert not data_docs.external_addresses(page.read_text()), page
    assert (site / "static" / "vendor" / "bootstrap" / "dist" / "css" / "bootstrap.min.css").stat().st_size > 100_000


def test_chromium_offline_shows_a_styled_index_listing_the_validation(site, served):
    refused = []

    def only_loopback(route):
        if route.request.url.startswith(served):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    with chromium() as browser:
        page = browser.new_page()
        failed = []
        page.on("requestfailed", lambda request: failed.append(request.url))
        page.route("**/*", only_loopback)
        page.goto(f"{served}/index.html")
        page.wait_for_load_state("networkidle")
        # bootstrap-table has drawn the index: a row per validation, with the suite's name
        rows = page.locator("table tbody tr")
        assert rows.count() >= 1 and "raw_events" in page.inner_text("table tbody")
        # Bootstrap's stylesheet applied (unstyled, the body keeps the browser's serif default)
        assert page.evaluate(BODY_FONT).startswith("-apple-system")
        # the validation's own page, styled too
        validation = next(site.glob("validations/**/*.html")).relative_to(site).as_posix()
        page.goto(f"{served}/{validation}")
        page.wait_for_load_state("networkidle")
        assert page.evaluate(BODY_FONT).startswith("-apple-system")
        assert "properties_match_schema" in page.inner_text("body") or "Failed" in page.inner_text("body")
        page.close()
    assert not refused and not failed, refused + failed
