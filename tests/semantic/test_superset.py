"""Apache Superset over the governed metrics (`make bi`): provisioning, tenancy and collaboration, driven as
people use it, in Debian's Chromium. One Superset serves the module (started as `make bi` starts it, from
the environment `make bi-install` builds), over the session's SQL endpoint and Cube REST server.
Screenshots of each step are kept in `tests/artifacts/superset/` (git-ignored)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from bench.loopback import free_port
from reports.browser import chromium
from semantic.auth import issue_token
from semantic.superset import definitions, provision, run, tenancy
from tests.conftest import REPO_ROOT
from tests.semantic import superset_helpers
from tests.semantic.conftest import SECRET, start_server
from tests.semantic.superset_helpers import Superset

ARTIFACTS = REPO_ROOT / "tests" / "artifacts" / "superset"
VIEWPORT = {"width": 1400, "height": 1000}


@pytest.fixture(scope="module")
def superset(sql_endpoint, tmp_path_factory) -> Iterator[Superset]:
    yield from superset_helpers.start(sql_endpoint, tmp_path_factory.mktemp("superset"))


@pytest.fixture(scope="module")
def browser():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with chromium() as started:
        yield started


def _login(browser, superset: Superset, username: str, password: str | None = None):
    """A new browser context (its own cookies) logged in through Superset's login form."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    # Superset's pages parse megabytes of JavaScript: with the other test worker busy, over a minute
    # (their speed is `make bench-bi`'s to measure, not a test's)
    page.set_default_timeout(180_000)
    page.goto(f"{superset.url}/login/")
    page.wait_for_load_state("networkidle")
    page.fill("#username", username)
    page.fill("#password", password or superset.password(username))
    page.click("button[type=submit]")
    return page


def _logged_in(browser, superset: Superset, username: str):
    """A page logged in as `username`. Superset's login page is its React app: a form submitted while
    a busy machine is still starting the app is not sent, so a page still on /login after a minute,
    with the form showing no error, is submitted once more (a refusal is never retried)."""
    page = _login(browser, superset, username)
    try:
        page.wait_for_url(lambda url: "/login" not in url, timeout=60_000)
    except PlaywrightTimeoutError:
        _shot(page, f"login-not-sent-{username}")
        assert "invalid" not in page.inner_text("body").lower(), page.inner_text("body")[:1000]
        page.fill("#username", username)
        page.fill("#password", superset.password(username))
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/login" not in url)
    page.wait_for_load_state("networkidle")
    return page


def _shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


# -- tenancy, without Superset ------------------------------------------------------------------------


def test_a_user_queries_as_their_one_tenant_or_as_an_admin():
    assert tenancy.identity("ann", ["Analyst", "Tenant t001"]) == tenancy.Identity("ann", "t001")
    assert tenancy.identity("root", ["Admin"]).tenant_id is None
    with pytest.raises(tenancy.NoTenant, match="'bob' belongs to no tenant"):
        tenancy.identity("bob", ["Analyst"])
    with pytest.raises(tenancy.NoTenant, match="several tenants"):
        tenancy.identity("eve", ["Tenant t001", "Tenant t002"])
    with pytest.raises(tenancy.NoTenant, match="admin .* or belongs to one tenant"):
        tenancy.identity("mallory", ["Admin", "Tenant t001"])
    with pytest.raises(tenancy.NoTenant, match="no logged-in user"):
        tenancy.identity(None, [])


def test_the_token_of_a_superset_user_is_the_semantic_layers_and_needs_nothing_superset_lacks():
    import semantic.auth  # the endpoint's side

    ann = tenancy.identity("ann", ["Analyst", "Tenant t001"])
    context = semantic.auth.authenticate(f"Bearer {ann.token(SECRET)}", SECRET, max_seconds=3600)
    assert (context.tenant_id, context.role) == ("t001", "tenant") and context.token_id
    root = semantic.auth.authenticate(f"Bearer {tenancy.identity('root', ['Admin']).token(SECRET)}", SECRET)
    assert (root.tenant_id, root.role) == (None, semantic.auth.ADMIN) == (None, tenancy.ADMIN)
    # Superset's environment (bi/uv.lock) has no httpx, which semantic.auth's key sets use
    probe = ("import sys; sys.modules['httpx'] = None; import semantic.superset.tenancy; "
             "assert 'semantic.auth' not in sys.modules")
    subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, check=True)


def test_make_bi_names_the_port_of_an_unreachable_sql_endpoint(tmp_path):
    port = free_port()
    env = {**os.environ, "SEMANTIC_API_SECRET": SECRET, "SUPERSET_STATE_DIR": str(tmp_path)}
    proc = superset_helpers.make_bi(free_port(), port, env)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, out
    assert f"the SQL endpoint is not reachable on 127.0.0.1:{port}" in out and "make serve-sql" in out


# -- provisioning ---------------------------------------------------------------------------------------


def _inventory(api: provision.SupersetApi) -> dict:
    return {resource: sorted((item.get("table_name") or item.get("slice_name") or item.get("dashboard_title")
                              or item.get("database_name") or item.get("name") or item.get("username"), item["id"])
                             for item in api.every(resource))
            for resource in ("database", "dataset", "chart", "dashboard", "security/roles", "security/users")}


def test_make_bi_provisions_a_certified_dataset_per_view_with_the_governed_metrics(superset):
    print(next(line for line in superset.output if line.startswith(run.READY)))  # seconds from start to serving
    api = superset.api()
    [database] = api.find("database", database_name=provision.DATABASE_NAME)
    detail = api.call("GET", f"/api/v1/database/{database['id']}/connection")["result"]
    assert detail["sqlalchemy_uri"].endswith(f"@127.0.0.1:{superset.endpoint.port}/semantic")
    datasets = {d["table_name"]: d for d in api.every("dataset")}
    assert {"orders", "events", "subscriptions_daily", "sessions"} <= set(datasets)
    assert "metrics" not in datasets  # the legacy table, where not every pair works, is not a governed dataset
    orders = api.call("GET", f"/api/v1/dataset/{datasets['orders']['id']}")["result"]
    assert json.loads(orders["extra"])["certification"]["certified_by"] == definitions.CERTIFIED_BY
    assert orders["main_dttm_col"] == "metric_time"
    metrics = {m["metric_name"]: m for m in orders["metrics"]}
    assert set(metrics) == {"revenue", "gross_revenue", "orders", "revenue_orders", "average_order_value"}
    revenue = metrics["revenue"]
    assert revenue["verbose_name"] == "Revenue" and revenue["expression"] == "MEASURE(revenue)"
    assert revenue["description"].startswith("Net revenue of completed orders")
    assert revenue["currency"] == {"symbol": "USD", "symbolPosition": "prefix"} and revenue["d3format"] == ",.2f"
    assert json.loads(revenue["extra"])["certification"]["certified_by"] == definitions.CERTIFIED_BY
    assert metrics["orders"]["currency"] is None and metrics["orders"]["d3format"] == "SMART_NUMBER"
    churn = {m["metric_name"]: m for m in api.call(
        "GET", f"/api/v1/dataset/{datasets['subscriptions_daily']['id']}")["result"]["metrics"]}["churn_rate"]
    assert churn["d3format"] == ".2%" and churn["currency"] is None
    columns = {c["column_name"]: c for c in orders["columns"]}
    assert columns["user__country"]["groupby"] and columns["user__country"]["verbose_name"] == "User country"
    assert columns["metric_time"]["is_dttm"] and "metric_time__month" not in columns
    assert not columns["revenue"]["groupby"]  # a measure is used through its metric
    board = api.call("GET", f"/api/v1/dashboard/{definitions.DASHBOARD_SLUG}")["result"]
    assert board["dashboard_title"] == "Executive KPIs" and board["published"]
    assert board["certified_by"] == definitions.CERTIFIED_BY
    assert {r["name"] for r in board["roles"]} == {provision.ANALYST_ROLE, provision.VIEWER_ROLE}
    charts = {c["slice_name"]: c for c in api.call("GET", f"/api/v1/dashboard/{board['id']}/charts")["result"]}
    assert {"Revenue", "Orders", "Average order value", "Active users (daily)", "MRR", "Churn rate",
            "Revenue per day", "MRR over time"} <= set(charts)
    roles = {r["name"] for r in api.every("security/roles")}
    assert {provision.ANALYST_ROLE, provision.VIEWER_ROLE, "Tenant t001", "Tenant t002"} <= roles
    assert any("log in as t001_analyst" in line for line in superset.output)


def test_make_bi_again_while_superset_runs_updates_and_never_duplicates(superset):
    api = superset.api()
    before = _inventory(api)
    proc = superset_helpers.make_bi(superset.port, superset.endpoint.port,
                                    superset_helpers.bi_env(superset.endpoint, superset.state_dir))
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert f"Superset is already running on {superset.url}: provisioning it again" in out
    assert run.READY in out
    assert _inventory(api) == before


def test_a_metric_renamed_in_dbt_updates_its_dataset_and_lists_the_charts_that_used_it(superset):
    settings = run.BiSettings.from_environment(superset_helpers.bi_env(superset.endpoint, superset.state_dir),
                                               port=superset.port, sql_port=superset.endpoint.port)
    found, tenants = run.catalog_and_tenants(settings)

    def renamed(dataset: definitions.Dataset) -> definitions.Dataset:
        metrics = tuple(dataclasses.replace(m, name="net_revenue") if m.name == "revenue" else m
                        for m in dataset.metrics)
        return dataclasses.replace(dataset, metrics=metrics)

    api = superset.api()
    uri = provision.endpoint_uri("127.0.0.1", superset.endpoint.port)
    try:
        result = provision.provision(api, [renamed(d) for d in found], uri, tenants, superset.users["users"])
        assert "Revenue" in result.stale_charts["orders.revenue"]
        assert "Revenue per day" in result.stale_charts["orders.revenue"]
        orders = api.call("GET", f"/api/v1/dataset/{result.datasets['orders']}")["result"]
        assert {m["metric_name"] for m in orders["metrics"]} >= {"net_revenue"}
        assert "revenue" not in {m["metric_name"] for m in orders["metrics"]}
    finally:
        restored = provision.provision(api, found, uri, tenants, superset.users["users"])
    assert restored.stale_charts == {}
    assert "Revenue" in restored.charts


def test_analysts_save_and_share_charts_viewers_only_read_them(superset):
    tenants = superset.tenant_users()
    tenant = sorted(tenants)[0]
    analyst, viewer = superset.api(tenants[tenant]["analyst"]), superset.api(tenants[tenant]["viewer"])
    orders = analyst.find("dataset", table_name="orders")[0]["id"]
    chart = {"slice_name": "Orders by device", "viz_type": "pie", "datasource_id": orders,
             "datasource_type": "table", "params": json.dumps({"metric": "orders", "groupby": ["user__device"]})}
    with pytest.raises(provision.ProvisioningError, match="403"):
        viewer.call("POST", "/api/v1/chart/", chart)
    made = analyst.call("POST", "/api/v1/chart/", chart)["id"]
    viewer_id = viewer.call("GET", "/api/v1/me/")["result"]["id"]
    analyst.call("PUT", f"/api/v1/chart/{made}", {"owners": [viewer_id, analyst.call("GET", "/api/v1/me/")
                                                                   ["result"]["id"]]})  # shared with a user
    assert {o["id"] for o in analyst.call("GET", f"/api/v1/chart/{made}")["result"]["owners"]} >= {viewer_id}
    assert viewer.call("GET", f"/api/v1/chart/{made}")["result"]["slice_name"] == "Orders by device"
    assert viewer.call("GET", f"/api/v1/dashboard/{definitions.DASHBOARD_SLUG}")["result"]["published"]


def test_a_user_without_a_tenant_is_refused_at_login(superset, browser):
    api = superset.api()
    role = {r["name"]: r["id"] for r in api.every("security/roles")}[provision.ANALYST_ROLE]
    if not api.find("security/users", username="no_tenant"):
        api.call("POST", "/api/v1/security/users/", {
            "username": "no_tenant", "password": "a-password-1", "first_name": "No", "last_name": "Tenant",
            "email": "no_tenant@example.com", "active": True, "roles": [role]})
    with pytest.raises(provision.ProvisioningError, match="403.*user 'no_tenant' belongs to no tenant"):
        provision.SupersetApi(superset.url, "no_tenant", "a-password-1")
    page = _login(browser, superset, "no_tenant", "a-password-1")
    refusal = page.locator("[data-test=login-refused]")
    refusal.wait_for()
    _shot(page, "refused-without-tenant")
    assert "Login refused: user 'no_tenant' belongs to no tenant" in refusal.inner_text()
    page.goto(f"{superset.url}/api/v1/me/")  # and no session was opened
    assert page.evaluate("() => document.body.innerText").find("no_tenant") < 0
    page.context.close()
    with pytest.raises(provision.ProvisioningError, match="401"):  # a wrong password stays a plain 401
        provision.SupersetApi(superset.url, "no_tenant", "wrong")


# -- collaboration, each tenant its own numbers -------------------------------------------------------------


def _drag(page, label: str, target: str) -> None:
    """Drag a metric or column from the dataset panel onto a control's drop zone, as a person does."""
    # the item labelled exactly so ("Revenue", not "Gross revenue", which a substring match would find first)
    source = page.locator("[data-test=DatasourcePanelDragOption]").filter(
        has=page.get_by_text(label, exact=True)).first
    zone = page.locator("[data-test=dnd-labels-container]", has_text=target).first
    dropped = page.locator("[data-test=dnd-labels-container]", has_text=label)
    for _ in range(3):  # react-dnd misses a drop now and then while the panel re-renders
        before = dropped.count()
        source.drag_to(zone)
        page.wait_for_timeout(500)
        if dropped.count() > before:
            return
    raise AssertionError(f"could not drop {label!r} on {target!r}")


def _drawn(page, chart: str) -> None:
    """Wait until a dashboard's chart has painted (ECharts draws on a canvas)."""
    page.locator(f'[data-test-chart-name="{chart}"] canvas').first.wait_for()
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(500)  # its first paint is animated


def _chart_rows(response) -> list[dict]:
    return response.json()["result"][0]["data"]


def _rest_revenue(superset: Superset, rest_url: str, tenant: str, granularity: str,
                  dimensions: list[str]) -> list[dict]:
    token = issue_token(SECRET, tenant, "tenant", 600)
    query = {"measures": ["orders.revenue"], "dimensions": dimensions,
             "timeDimensions": [{"dimension": "orders.metric_time", "granularity": granularity}]}
    reply = httpx.get(f"{rest_url}/cubejs-api/v1/load", params={"query": json.dumps(query)},
                      headers={"Authorization": token}, timeout=60)
    assert reply.status_code == 200, reply.text
    return reply.json()["data"]


def test_an_analyst_shares_a_chart_each_tenant_sees_with_its_own_numbers(superset, server, browser):
    tenants = superset.tenant_users()
    mine, other = sorted(tenants)[:2]
    api = superset.api()
    orders_id = api.find("dataset", table_name="orders")[0]["id"]

    # the analyst builds a chart by dragging a metric, a dimension and the time column, and picks a grain
    page = _logged_in(browser, superset, tenants[mine]["analyst"])
    page.goto(f"{superset.url}/explore/?datasource_type=table&datasource_id={orders_id}"
              f"&viz_type=echarts_timeseries_bar")
    page.locator("[data-test=DatasourcePanelDragOption]").first.wait_for()
    _drag(page, "Metric time", "Drop a column here or click")
    _drag(page, "Revenue", "Drop columns/metrics here or click")
    _drag(page, "User country", "Drop columns here or click")
    page.locator("[data-test=time_grain_sqla] .ant-select").click()
    page.get_by_role("option", name="Month").click()
    # Superset sets the grain's default itself once the time column is in (asynchronously): under load
    # that came after the click, and the chart was built by day; the control must show the month first
    page.locator("[data-test=time_grain_sqla] .ant-select-selection-item", has_text="Month").wait_for()
    started = time.monotonic()
    with page.expect_response(lambda r: "/api/v1/chart/data" in r.url and r.request.method == "POST") as answer:
        page.get_by_role("button", name="Create chart").click()
    first_query = time.monotonic() - started
    assert answer.value.status == 200, answer.value.text()
    page.wait_for_load_state("networkidle")
    _shot(page, "1-analyst-explores")
    print(f"the chart's first query answered in {first_query:.2f} s")
    built = _chart_rows(answer.value)

    # ... saves it to a new dashboard
    page.locator("[data-test=query-save-button]").click()
    page.fill("[data-test=new-chart-name]", "Revenue by country")
    select = page.locator("[data-test=save-chart-modal-select-dashboard-form] input")
    select.click()
    board = f"Team {mine} {time.strftime('%H:%M:%S')}"  # a new dashboard, not one saved before
    select.press_sequentially(board, delay=30)
    page.locator(".ant-select-item-option", has_text=board).first.wait_for(state="attached")
    page.keyboard.press("Enter")  # the typed name is a new dashboard
    page.get_by_role("button", name="Save & go to dashboard").and_(page.locator(":enabled")).wait_for()
    _shot(page, "2-analyst-saves")
    page.get_by_role("button", name="Save & go to dashboard").click()
    page.wait_for_url("**/superset/dashboard/**")
    page.wait_for_load_state("networkidle")
    dashboard_id = int(re.search(r"/dashboard/(\d+)", page.url).group(1))

    # ... publishes it, shares it with the viewers (the Access roles of its properties), makes a permalink
    page.get_by_text("Draft", exact=True).click()
    page.get_by_text("Published", exact=True).wait_for()
    viewer_role = {r["name"]: r["id"] for r in api.every("security/roles")}[provision.VIEWER_ROLE]
    csrf = page.request.get(f"{superset.url}/api/v1/security/csrf_token/").json()["result"]
    shared = page.request.put(f"{superset.url}/api/v1/dashboard/{dashboard_id}", data={"roles": [viewer_role]},
                              headers={"X-CSRFToken": csrf, "Referer": superset.url})
    assert shared.ok, shared.text()
    # the permalink the dashboard's Share menu copies, asked of the same API from the analyst's session (the
    # menu is a hover submenu, which headless Chromium under load opens only now and then)
    made = page.request.post(f"{superset.url}/api/v1/dashboard/{dashboard_id}/permalink",
                             data={"urlParams": [], "activeTabs": [], "anchor": ""},
                             headers={"X-CSRFToken": csrf, "Referer": superset.url})
    assert made.ok, made.text()
    permalink = made.json()["url"]
    assert "/superset/dashboard/p/" in permalink, permalink
    _shot(page, "3-analyst-shares")
    page.context.close()

    # a viewer of the same tenant opens the permalink and sees the analyst's chart, with the same numbers
    page = _logged_in(browser, superset, tenants[mine]["viewer"])
    with page.expect_response(lambda r: "/api/v1/chart/data" in r.url) as answer:
        page.goto(permalink)
    _drawn(page, "Revenue by country")
    _shot(page, "4-viewer-opens-permalink")
    assert answer.value.status == 200
    assert _chart_rows(answer.value) == built
    page.context.close()

    # the other tenant's user opens the same dashboard: only their own tenant's numbers
    page = _logged_in(browser, superset, tenants[other]["viewer"])
    with page.expect_response(lambda r: "/api/v1/chart/data" in r.url) as answer:
        page.goto(permalink)
    _drawn(page, "Revenue by country")
    _shot(page, "5-other-tenant-opens-permalink")
    theirs = _chart_rows(answer.value)
    page.context.close()

    # the numbers each saw are the REST API's for the same query and tenant
    for tenant, rows in ((mine, built), (other, theirs)):
        expected = {}
        for row in _rest_revenue(superset, server.url, tenant, "month", ["orders.user__country"]):
            if row["orders.revenue"] is not None:
                expected[(row["orders.metric_time.month"][:10], row["orders.user__country"])] = \
                    Decimal(str(row["orders.revenue"]))
        got = {}
        for row in rows:
            for key, value in row.items():
                if key != "metric_time" and value is not None:
                    day = time.strftime("%Y-%m-%d", time.gmtime(row["metric_time"] / 1000))
                    got[(day, key.split(", ")[-1])] = Decimal(str(value))
        assert got == expected, tenant
    assert built != theirs


def test_each_tenant_sees_its_own_numbers_on_the_starter_dashboard(superset, server, browser):
    tenants = superset.tenant_users()
    shown = {}
    for tenant in sorted(tenants)[:2]:
        page = _logged_in(browser, superset, tenants[tenant]["viewer"])
        page.goto(f"{superset.url}/superset/dashboard/{definitions.DASHBOARD_SLUG}/")
        revenue = page.locator("[data-test-chart-name=Revenue]").first
        revenue.get_by_text("vs previous week").wait_for()
        page.wait_for_load_state("networkidle")
        _shot(page, f"starter-dashboard-{tenant}")
        shown[tenant] = revenue.locator(".header-line").inner_text().replace("\u00a0", "").replace(" ", "")
        page.context.close()
        weeks = [r for r in _rest_revenue(superset, server.url, tenant, "week", [])
                 if r["orders.revenue"] is not None]
        assert shown[tenant] == f"${Decimal(str(weeks[-1]['orders.revenue'])):,.2f}"
    assert len(set(shown.values())) == 2


def test_superset_shows_a_clear_error_when_the_sql_endpoint_is_unreachable(superset, browser, tmp_path):
    """The endpoint stops while Superset runs (a private one: the session's serves other tests): the chart
    says which port refused, and works again once the endpoint is back."""
    api = superset.api()
    [database] = api.find("database", database_name=provision.DATABASE_NAME)
    chart = api.find("chart", slice_name="Revenue")[0]["id"]
    private = start_server(superset.endpoint.layout, tmp_path / "pgwire.log", module="semantic.pgwire")
    stopped = next(private)
    api.call("PUT", f"/api/v1/database/{database['id']}",
             {"sqlalchemy_uri": provision.endpoint_uri("127.0.0.1", stopped.port)})
    try:
        private.close()  # the endpoint stops
        page = _logged_in(browser, superset, run.ADMIN_USERNAME)
        page.goto(f"{superset.url}/explore/?slice_id={chart}")
        error = page.get_by_text(re.compile(f"port {stopped.port}", re.IGNORECASE))
        error.first.wait_for()
        _shot(page, "endpoint-unreachable")
        assert "refused" in error.first.inner_text().lower()
        page.context.close()
    finally:
        api.call("PUT", f"/api/v1/database/{database['id']}",
                 {"sqlalchemy_uri": provision.endpoint_uri("127.0.0.1", superset.endpoint.port)})


def test_superset_is_installed_from_its_lock():
    """`make bi-install` is what `make test` and `make bi` install Superset with: its own locked environment."""
    took = superset_helpers.install()
    version = subprocess.run([str(run.BI_PYTHON), "-c", "import importlib.metadata as m;"
                              "print(m.version('apache-superset'))"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == "6.1.0"
    assert not (REPO_ROOT / ".venv" / "lib" / "python3.11" / "site-packages" / "superset").exists()
    print(f"make bi-install (already installed) took {took:.1f} s")
