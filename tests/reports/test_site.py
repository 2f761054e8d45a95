"""The Evidence reports, built for real on the tiny sample and opened in headless Chromium.

The main job runs once as users run it and must end with the site built. The pages are then
built again by `reports.site` from an extract of its published snapshot that also holds a tenant with
no data at all, and no insights for anyone (a quiet day), so that every page can be shown for a
tenant whose queries return nothing and the site builds when a whole source query does.
Screenshots of every page are kept in `tests/artifacts/reports/` (git-ignored).
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import duckdb
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from reports import browser, site
from semantic import snapshots
from tests.conftest import REPO_ROOT

ARTIFACTS = REPO_ROOT / "tests" / "artifacts" / "reports"
EMPTY_TENANT = "t999"
PAGES = ("/", "/engagement", "/forecasts", "/insights", "/quality")
# what a business reader should never meet on a page: type codes, metric and column codes, statistics
JARGON = ("anomaly_spike", "anomaly_drop", "expected_event", "trend_up", "trend_down", "change_point", "z-score",
          "t = ", "active_users", "insight_type", "Revenue for all tenants were")


@pytest.fixture(scope="module")
def site_with_empty_tenant(main_run, tmp_path_factory):
    """The site built from the main job's snapshot plus a tenant that has no rows anywhere, on a
    day without a single insight."""
    data_dir, _ = main_run
    snapshot = tmp_path_factory.mktemp("snapshot") / "warehouse-with-empty-tenant.duckdb"
    snapshots.extract(data_dir / "published", site.tables_read(), snapshot)
    with duckdb.connect(str(snapshot)) as conn:
        conn.execute("insert into marts.dim_tenants (tenant_id, tenant_name, industry, tenant_country, tenant_tier, "
                     "created_at, user_count) values (?, 'Empty Tenant', 'none', 'NL', 'free', now(), 0)",
                     [EMPTY_TENANT])
        conn.execute("delete from ml.insights")
    return site.build(snapshot, tmp_path_factory.mktemp("site") / "site")


def open_page(chromium, url: str, screenshot: Path,
              tenant_label: str | None = None) -> tuple[str, list[str], int, int]:
    """Open a page, choose a tenant in its filter if given, and return its text, its console errors,
    its chart count once drawn and the bytes of JavaScript it loaded; a full-page screenshot is kept."""
    with browser.opened(chromium, url) as opened:
        page = opened.page
        if tenant_label is not None:
            option = page.get_by_role("option", name=tenant_label)
            for _ in range(3):
                page.get_by_role("combobox").first.click()  # the tenant filter comes first on every page
                try:
                    option.wait_for(state="visible", timeout=5000)
                    break
                except PlaywrightTimeout:
                    page.keyboard.press("Escape")
            option.click()
            page.keyboard.press("Escape")
            browser.settle(page)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=True)
        return opened.text, opened.errors, opened.charts, sum(opened.script_bytes.values())


def test_main_job_ends_with_the_site_built_and_says_how_to_open_it(main_run):
    data_dir, out = main_run
    site_dir = data_dir / "reports" / "site"
    assert f"reports (Evidence): {site_dir}" in out and "make serve-reports" in out
    for route in PAGES:
        assert (site_dir / route.strip("/") / "index.html").exists(), route
    published = {p.name for p in (site_dir / "data" / "warehouse").iterdir()}
    assert published == site.source_tables()


def test_every_page_draws_its_charts_without_console_errors(main_run, chromium):
    data_dir, _ = main_run
    with browser.serving(data_dir / "reports" / "site") as base:
        for route in PAGES:
            name = route.strip("/") or "index"
            text, errors, charts, script_bytes = open_page(chromium, base + route, ARTIFACTS / f"{name}.png")
            assert errors == [], (route, errors)
            assert charts > 0 or route == "/quality", (route, "no chart drawn")
            assert browser.EVIDENCE_ERROR not in text, route  # how Evidence shows a chart or query that failed
            assert "No data" not in text, route
            # the quality page names each check's table and column, as the check is written: that is its subject
            jargon = [word for word in JARGON if word in text and not (route == "/quality" and word == "active_users")]
            assert not jargon, (route, "internals shown to a business reader", jargon)
            if route == "/forecasts":  # revenue, the metric first shown, in dollars
                assert "$" in text, text[:3000]
            if route == "/insights":  # an anomaly's verdict, in its own column
                assert "\tDay\tVerdict\t" in text, text[:3000]
                assert "\tProvisional\t" in text or "\tConfirmed\t" in text, text[:3000]
            # 3.3 MB with reports/vite.build.config.js; 8.1 MB when Simple Icons' 3,000 icons ship again
            assert script_bytes < 4_000_000, (route, f"{script_bytes / 1e6:.1f} MB of JavaScript on first open")


CHART_TOPS = "(css) => [...document.querySelectorAll(css)].map(c => Math.round(c.getBoundingClientRect().top))"


def test_charts_are_drawn_into_the_prerendered_html_where_the_canvases_go(main_run, chromium):
    """Before any JavaScript runs, each chart is already drawn as SVG in the page's HTML, as many
    as Evidence later draws as canvases and at the same places, so nothing moves when they swap."""
    data_dir, _ = main_run
    without_js = chromium.new_context(viewport=browser.VIEWPORT, java_script_enabled=False)
    with browser.serving(data_dir / "reports" / "site") as base, contextlib.closing(without_js):
        for route in ("/", "/engagement", "/forecasts", "/insights"):
            static = without_js.new_page()
            static.goto(base + route)
            drawn = static.locator(browser.SERVER_DRAWN)
            assert drawn.count() > 0, (route, "no chart in the prerendered HTML")
            for svg in drawn.all():  # a drawn series, not an empty frame
                assert svg.locator("path").count() > 5 and svg.locator("text").count() > 0, route
            static_tops = static.evaluate(CHART_TOPS, "[data-server-drawn]")
            static.close()
            with browser.opened(chromium, base + route) as opened:
                assert opened.charts == len(static_tops), route
                assert opened.page.locator(browser.SERVER_DRAWN).count() == 0, (route, "SVG left once hydrated")
                hydrated_tops = opened.page.evaluate(CHART_TOPS, ".chart-container")
            assert all(abs(a - b) <= 2 for a, b in zip(static_tops, hydrated_tops, strict=True)), (
                route, static_tops, hydrated_tops)


BAND_FILLS = ("#6baed6", "#c6dbef")  # the 80 % and 95 % ranges' colours (reports/pages/forecasts.md)
TOOLTIP_RANGES = re.compile(r"(\d{4}-\d{2}-\d{2}).*Forecast: \$([\d,]+).*80 % range: \$([\d,]+) to \$([\d,]+)"
                            r".*95 % range: \$([\d,]+) to \$([\d,]+)", re.S)


def test_forecast_ranges_are_drawn_as_bands_whose_ends_the_tooltip_gives(main_run, chromium):
    """The 80 % and 95 % ranges are filled bands around the forecast (stacked areas), not four more
    lines: the prerendered chart has areas in both colours, and hovering a day of the horizon gives
    the forecast and both ranges' ends, in dollars, equal to the published forecast of that day."""
    data_dir, _ = main_run
    site_dir = data_dir / "reports" / "site"
    static = (site_dir / "forecasts" / "index.html").read_text()
    assert all(f'fill="{colour}"' in static for colour in BAND_FILLS), "no band drawn in the prerendered chart"
    with browser.serving(site_dir) as base, browser.opened(chromium, base + "/forecasts") as opened:
        box = opened.page.locator(".chart-container canvas").first.bounding_box()
        opened.page.mouse.move(box["x"] + box["width"] * 0.9, box["y"] + box["height"] * 0.5)
        tooltip = opened.page.get_by_text("80 % range:").first
        tooltip.wait_for(timeout=10_000)
        found = TOOLTIP_RANGES.search(tooltip.locator("xpath=..").inner_text())
    assert found, "the tooltip gives no forecast ranges"
    day, *dollars = found.groups()
    with snapshots.current(data_dir / "published").connect() as conn:
        expected = conn.execute(
            "select prediction, lower_80, upper_80, lower_95, upper_95 from ml.forecast_daily "
            "where tenant_id = 'all' and metric = 'revenue' and forecast_date = ?", [day]).fetchone()
    assert expected is not None, f"the tooltip names {day}, a day without a forecast"
    shown = [int(value.replace(",", "")) for value in dollars]
    assert all(abs(a - b) <= 1 for a, b in zip(shown, expected, strict=True)), (day, shown, expected)  # whole dollars


def test_a_tenant_with_no_data_gets_a_message_on_every_page(site_with_empty_tenant, chromium):
    with browser.serving(site_with_empty_tenant.path) as base:
        for route in PAGES:
            name = route.strip("/") or "index"
            text, errors, _, _ = open_page(chromium, base + route, ARTIFACTS / f"{name}-empty-tenant.png",
                                        tenant_label=f"Empty Tenant ({EMPTY_TENANT})")
            assert errors == [], (route, errors)
            assert f"tenant {EMPTY_TENANT}" in text, (route, text[:2000])


def create_insights_tables(conn: duckdb.DuckDBPyConnection) -> None:
    """The published tables the insights source reads, empty."""
    conn.execute("create schema ml")
    conn.execute("create table ml.insights (insight_type varchar, metric varchar, tenant_id varchar, "
                 "date_day date, severity varchar, confidence double, value double, expected double, "
                 "lower double, upper double, explanation varchar, drivers varchar, recommendation varchar, "
                 "impact double, priority double, priority_rank bigint, verdict varchar)")
    conn.execute("create schema marts")
    conn.execute("create table marts.dim_tenants (tenant_id varchar, tenant_name varchar)")


def test_a_source_query_without_rows_gets_an_empty_parquet_file_with_its_columns(tmp_path):
    """Evidence writes a schema but no Parquet file (older versions: 0 bytes) for a query without
    rows, which its build cannot read: each gets a valid Parquet file with the query's columns and
    no rows; results with rows, and queries Evidence did not run, are left alone."""
    snapshot = tmp_path / "warehouse-quiet.duckdb"
    with duckdb.connect(str(snapshot)) as conn:
        create_insights_tables(conn)
    data = tmp_path / "data"
    for name, content in (("insights", b""), ("kpis_daily", b"PAR1 rows written by Evidence PAR1"),
                          ("tenants", None)):
        (data / name).mkdir(parents=True)
        (data / name / f"{name}.schema.json").write_text("[]")
        if content is not None:
            (data / name / f"{name}.parquet").write_bytes(content)
    assert site.write_empty_results(snapshot, data) == ["insights", "tenants"]
    with duckdb.connect() as conn:
        described = conn.execute(f"describe select * from '{data / 'insights' / 'insights.parquet'}'").fetchall()
        assert conn.execute(f"select count(*) from '{data / 'insights' / 'insights.parquet'}'").fetchone() == (0,)
        assert conn.execute(f"select count(*) from '{data / 'tenants' / 'tenants.parquet'}'").fetchone() == (0,)
    assert [column for column, *_ in described][:5] == ["insight_type", "kind", "metric", "tenant", "tenant_name"]
    assert (data / "kpis_daily" / "kpis_daily.parquet").read_bytes().startswith(b"PAR1 rows written")
    assert not (data / "funnel").exists()


def test_the_insights_source_says_kinds_metrics_and_tenants_in_words():
    """The insights page shows what a reader understands: the kind of insight, the metric and an anomaly's
    verdict in words and the tenant by name (its id where the tenant has no name); the page still filters on
    the id."""
    with duckdb.connect() as conn:
        create_insights_tables(conn)
        conn.execute("insert into marts.dim_tenants values ('t001', 'Acme Retail')")
        conn.execute("""insert into ml.insights values
            ('anomaly_spike', 'revenue', 't001', '2026-11-20', 'high', 0.9, 1, 1, 0, 2, 'x', '', 'y', 0, 1, 1,
             'provisional'),
            ('trend_down', 'active_users', 'all', '2026-11-20', 'low', 0.5, 1, 1, null, null, 'x', '', 'y', 0, 1, 2,
             null),
            ('change_point', 'orders', 't404', '2026-11-20', 'medium', 0.5, 1, 1, null, null, 'x', '', 'y', 0, 1, 3,
             null),
            ('withdrawn_anomaly', 'orders', 't001', '2026-11-01', 'low', 0, 1, 1, 0, 2, 'x', '', 'y', 0, 1, 4,
             'confirmed')""")
        rows = conn.execute(f"select kind, metric, tenant, tenant_name, verdict from "
                            f"({(site.SOURCE_DIR / 'insights.sql').read_text()}) order by tenant, day").fetchall()
    assert rows == [("Falling trend", "Active users", "all", "All tenants", None),
                    ("Withdrawn anomaly", "Orders", "t001", "Acme Retail", "Confirmed"),
                    ("Unusual rise", "Revenue", "t001", "Acme Retail", "Provisional"),
                    ("Lasting shift", "Orders", "t404", "t404", None)]


def test_a_page_reading_a_missing_table_names_the_page_and_the_query(tmp_path):
    pages = tmp_path / "pages"
    pages.mkdir()
    (pages / "ok.md").write_text("```sql fine\nselect * from warehouse.kpis_daily\n```\n")
    (pages / "broken.md").write_text("# Broken\n\n```sql totals\nselect sum(revenue) from warehouse.daily_sales\n"
                                     "where tenant = '${inputs.tenant.value}'\n```\n")
    with pytest.raises(site.ReportError) as error:
        site.check_pages(pages)
    message = str(error.value)
    assert "pages/broken.md, query `totals`: table warehouse.daily_sales does not exist" in message
    assert "ok.md" not in message


def test_a_source_query_on_a_missing_table_names_the_source_file(tmp_path, main_run):
    """The source queries run against the snapshot: one that reads a table the snapshot lacks fails
    the build with its file named, and the last good site stays."""
    data_dir, _ = main_run
    snapshot = tmp_path / "without-insights.duckdb"
    snapshots.extract(data_dir / "published", site.tables_read(), snapshot)
    with duckdb.connect(str(snapshot)) as conn:
        conn.execute("drop table ml.insights")
    site_dir = data_dir / "reports" / "site"
    before = (site_dir / "index.html").read_text()
    with pytest.raises(site.ReportError) as error:
        site.build(snapshot, site_dir)
    assert "sources/warehouse/insights.sql" in str(error.value) and "insights" in str(error.value)
    assert (site_dir / "index.html").read_text() == before
