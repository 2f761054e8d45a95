"""Reports benchmark: how long the Evidence site takes to build, how soon each page's charts are
drawn in headless Chromium (the users' requirement for dashboards: under 1 s), and how long the
scheduled report's exports take (PDFs of the default pages, every page's datasets).

Builds from the current published snapshot (`make run` first; the default sample unless
PLATFORM_DATA_DIR says otherwise) into a scratch directory, serves it on loopback with
`reports.serve`, and opens every page: once cold (empty browser cache), then `--loads` times warm.
Two times per open, from the start of navigation: "drawn", when every chart the page ends up
with is on screen (the prerendered HTML draws them as SVG, see reports/server-charts), and
"interactive", when Evidence's client has replaced each with its canvas (tooltips, clicks). The
interactive time is also what "drawn" was before the server drew charts, the baseline. "In-site"
is the same page reached by its sidebar link from another page, the site already open (how a
reader moves between dashboards): no prerendered HTML there, so it waits for the canvases.

    python -m bench.reports [--loads 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from orchestration.environment import current_environment
from reports import browser, exports, pages, site
from reports.distribution import DEFAULT_PDF_PAGES
from semantic import snapshots

DRAWN = "([selector, charts]) => document.querySelector('h1') && document.querySelectorAll(selector).length >= charts"


def opened_after(page, url: str, charts: int) -> tuple[float, float]:
    """Seconds from navigation until the page's `charts` charts are drawn (server-drawn SVG or
    canvas), and until all are interactive canvases."""
    started = time.perf_counter()
    page.goto(url, wait_until="commit")
    page.wait_for_function(DRAWN, arg=[f"canvas, {browser.SERVER_DRAWN}", charts], polling="raf", timeout=30000)
    drawn = time.perf_counter() - started
    page.wait_for_function(DRAWN, arg=["canvas", charts], polling="raf", timeout=30000)
    return drawn, time.perf_counter() - started


def navigated_after(page, route: str, title: str, charts: int) -> float:
    """Seconds from a click on the page's link in the sidebar (the site already open, as a reader
    moves between dashboards) until its title and `charts` canvases are drawn."""
    started = time.perf_counter()
    page.locator(f'a[href="{route}"]').first.click()
    drawn = ("([title, charts]) => document.querySelector('h1')?.innerText.trim() === title "
             "&& document.querySelectorAll('canvas').length >= charts")
    page.wait_for_function(drawn, arg=[title, charts], polling="raf", timeout=30000)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=5)
    args = parser.parse_args()
    env = current_environment()
    snapshot = snapshots.current(env.published_dir)
    if snapshot is None:
        raise SystemExit(f"no published snapshot in {env.published_dir}: run `make run` first")
    scratch = Path(tempfile.mkdtemp(prefix="bench-reports-"))
    try:
        started = time.perf_counter()
        extract = snapshots.extract(env.published_dir, site.tables_read(), scratch / "warehouse.duckdb")
        built = site.build(extract, scratch / "site")
        total = time.perf_counter() - started
        print(f"site build from an extract of snapshot {snapshot.version}: {total:.1f} s "
              f"(evidence sources {built.sources_seconds:.1f} s, evidence build {built.build_seconds:.1f} s)")
        with browser.serving(built.path) as base, browser.chromium() as chromium:
            context = chromium.new_context(viewport=browser.VIEWPORT)
            print(f"{'page':<14} {'charts':>6} {'cold drawn s':>13} {'interactive s':>14} {'warm p50 drawn s':>17} "
                  f"{'interactive s':>14} {'warm max drawn s':>17} {'in-site p50 s':>14}")
            titles = {page.route: page.title for page in pages.all_pages()}
            for route in built.pages:
                page = context.new_page()
                page.goto(base + route, wait_until="networkidle")
                page.wait_for_timeout(1000)
                charts = page.evaluate("() => document.querySelectorAll('canvas').length")
                page.close()
                fresh = chromium.new_context(viewport=browser.VIEWPORT)
                cold = opened_after(fresh.new_page(), base + route, charts)
                fresh.close()
                warm = []
                for _ in range(args.loads):
                    page = context.new_page()
                    warm.append(opened_after(page, base + route, charts))
                    page.close()
                within = []
                page = context.new_page()
                for _ in range(args.loads):  # from another dashboard, by its link
                    other = next(r for r in built.pages if r != route)
                    page.goto(base + other, wait_until="networkidle")
                    within.append(navigated_after(page, route, titles[route], charts))
                page.close()
                drawn, interactive = zip(*warm, strict=True)
                print(f"{route:<14} {charts:>6} {cold[0]:>13.2f} {cold[1]:>14.2f} {statistics.median(drawn):>17.2f} "
                      f"{statistics.median(interactive):>14.2f} {max(drawn):>17.2f} {statistics.median(within):>14.2f}")
        started = time.perf_counter()
        exported = exports.export(built.path, scratch / "exports", DEFAULT_PDF_PAGES.split(","))
        rows = sum(sum(page.rows.values()) for page in exported.pages)
        print(f"\nexports: {len(exported.pdfs)} PDFs ({DEFAULT_PDF_PAGES}) and {rows:,} rows of "
              f"{sum(len(page.rows) for page in exported.pages)} datasets as CSV, XLSX and Parquet in "
              f"{time.perf_counter() - started:.1f} s")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
