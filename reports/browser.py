"""The built site in headless Chromium: serve it on loopback, open a page, wait until it is drawn.

One place for what the PDF exports, the tests and the benchmark all do. Chromium is Debian's
(`apt-get install chromium`, which `make test` does), driven by playwright, which downloads nothing.
The pages query Parquet with DuckDB-wasm in the browser, so they are opened over HTTP, never `file://`.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from reports import serve

if TYPE_CHECKING:  # playwright is imported when a browser starts, not with the Dagster code location
    from playwright.sync_api import Browser, Page

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
VIEWPORT = {"width": 1280, "height": 900}
# Evidence shows a query or chart that failed as a box whose text starts so.
EVIDENCE_ERROR = "Error in"
# A chart the prerendered HTML draws as SVG until Evidence's client draws its canvas (server-charts/).
SERVER_DRAWN = "[data-server-drawn] svg"


class BrowserError(Exception):
    """Chromium is missing or a page did not finish drawing; the message says which and how to fix it."""


@dataclass
class OpenedPage:
    """A page once drawn: playwright's page, and the errors its console showed while loading."""

    page: Page
    errors: list[str] = field(default_factory=list)
    script_bytes: dict[str, int] = field(default_factory=dict)  # JavaScript the page loaded, by URL

    def count_script(self, response) -> None:
        if response.request.resource_type == "script":
            self.script_bytes[response.url] = int(response.headers.get("content-length", 0))

    @property
    def charts(self) -> int:
        return self.page.evaluate("() => document.querySelectorAll('canvas').length")

    @property
    def text(self) -> str:
        return self.page.inner_text("body")


@contextmanager
def serving(site_dir: Path) -> Iterator[str]:
    """Serve `site_dir` on a free loopback port for the block; yields the base URL."""
    if not (site_dir / "index.html").exists():
        raise BrowserError(f"no built site in {site_dir}: run the main job (`make run`) first")
    httpd = serve.server(site_dir, port=0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless, for the block."""
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    if executable is None:
        raise BrowserError("chromium is not installed: `apt-get install chromium` (`make test` installs it)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def opened(browser: Browser, url: str, viewport: dict | None = None, timeout_ms: int = 30000) -> Iterator[OpenedPage]:
    """Open `url` and wait until it is drawn: its title is there, its queries have answered (no
    request in flight) and its charts have had a frame to paint. Closes the page after the block."""
    page = browser.new_page(viewport=viewport or VIEWPORT)
    opened_page = OpenedPage(page)
    page.on("console", lambda message: opened_page.errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: opened_page.errors.append(str(error)))
    page.on("response", opened_page.count_script)
    try:
        page.goto(url, timeout=timeout_ms)
        page.wait_for_function("() => document.querySelector('h1') !== null", timeout=timeout_ms)
        settle(page, timeout_ms)
        yield opened_page
    finally:
        page.close()


def settle(page: Page, timeout_ms: int = 30000) -> None:
    """Wait until the page's queries have answered and the charts they feed have painted."""
    page.wait_for_load_state("networkidle", timeout=timeout_ms)
    page.wait_for_timeout(500)  # ECharts animates its first paint
