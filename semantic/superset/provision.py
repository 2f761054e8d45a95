"""Provision a running Superset from the semantic definitions, over Superset's own REST API (the public
interface its CLI and UI use too): the database connection to the SQL endpoint, a certified dataset per
view with its metrics and columns, the starter dashboard, the roles (analysts, viewers, one per tenant)
and the demo users.

Idempotent: everything is found by its name (the database's, a dataset's table, the dashboard's slug, a
chart's name on that dashboard, a role's, a user's) and updated in place; running it again creates
nothing twice. A metric renamed or removed in dbt disappears from its dataset, and the charts that used
it are listed in the result (`Provisioned.stale_charts`), since Superset cannot draw them any more.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import httpx

from semantic.superset import definitions, tenancy
from semantic.superset.definitions import Dataset

log = logging.getLogger(__name__)

DATABASE_NAME = "Semantic layer"
ANALYST_ROLE = "Analyst"  # explores, saves and shares charts and dashboards
VIEWER_ROLE = "Viewer"  # reads the dashboards shared with them
BASE_ROLE = "Gamma"  # Superset's role of users who see what they are given access to
# Gamma's permissions a viewer has not: writing, exporting, exploring
VIEWER_DROPS = frozenset({"can_write", "can_export", "can_export_as_example", "can_export_streaming_csv", "can_explore",
                          "can_csv", "can_add", "can_edit", "can_delete", "can_bulk_create", "can_tag",
                          "can_file_handler", "can_invalidate", "can_put_chart_customizations"})
METRIC_KEYS = ("metric", "metrics", "percent_metrics", "timeseries_limit_metric", "secondary_metric", "x", "y",
               "size", "metric_2")


class ProvisioningError(RuntimeError):
    """Superset refused a request: the message names the request and Superset's answer."""


def rison(value) -> str:
    """Superset's list filters (`?q=`) are Rison, JSON's URL-friendly cousin; strings always quoted."""
    if isinstance(value, bool):
        return "!t" if value else "!f"
    if value is None:
        return "!n"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("!", "!!").replace("'", "!'") + "'"
    if isinstance(value, list | tuple):
        return "!(" + ",".join(rison(v) for v in value) + ")"
    return "(" + ",".join(f"{k}:{rison(v)}" for k, v in value.items()) + ")"


class SupersetApi:
    """A logged-in client of Superset's REST API (JWT bearer plus the CSRF token its write calls need)."""

    def __init__(self, url: str, username: str, password: str, timeout: float = 60):
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=timeout, headers={"Referer": self.url})
        login = self.http.post("/api/v1/security/login",
                               json={"username": username, "password": password, "provider": "db", "refresh": False})
        if login.status_code != 200:
            raise ProvisioningError(f"logging in to Superset at {self.url} as {username!r} failed: "
                                    f"{login.status_code} {login.text[:300]}")
        self.http.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        self.http.headers["X-CSRFToken"] = self.call("GET", "/api/v1/security/csrf_token/")["result"]

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, body: dict | None = None, ok=(200, 201)) -> dict:
        response = self.http.request(method, path, json=body)
        if response.status_code not in ok:
            raise ProvisioningError(f"Superset answered {method} {path} with {response.status_code}: "
                                    f"{response.text[:500]}")
        return response.json() if response.content else {}

    def find(self, resource: str, **equal) -> list[dict]:
        filters = [{"col": col, "opr": "eq", "value": value} for col, value in equal.items()]
        return self.call("GET", f"/api/v1/{resource}/?q={rison({'filters': filters, 'page_size': 100})}")["result"]

    def every(self, resource: str) -> list[dict]:
        found, page = [], 0
        while True:
            batch = self.call("GET", f"/api/v1/{resource}/?q={rison({'page': page, 'page_size': 100})}")["result"]
            found += batch
            if len(batch) < 100:
                return found
            page += 1


@dataclass
class Provisioned:
    database_id: int
    datasets: dict[str, int] = field(default_factory=dict)  # view -> dataset id
    dashboard_id: int | None = None
    charts: dict[str, int] = field(default_factory=dict)  # the dashboard's charts, by name
    roles: dict[str, int] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)
    # metrics gone from a dataset (renamed or removed in dbt): "<dataset>.<metric>" -> charts that used them
    stale_charts: dict[str, list[str]] = field(default_factory=dict)


def endpoint_uri(host: str, port: int) -> str:
    """The SQL endpoint as Superset connects to it; the password is the querying user's token, set per
    query by `DB_CONNECTION_MUTATOR` (bi/superset_config.py) for this user name."""
    return f"postgresql+psycopg2://{tenancy.CONNECTION_USER}@{host}:{port}/semantic"


def database(api: SupersetApi, uri: str) -> int:
    body = {"database_name": DATABASE_NAME, "sqlalchemy_uri": uri, "expose_in_sqllab": True, "allow_dml": False,
            "allow_run_async": False, "impersonate_user": False, "cache_timeout": 0,
            "extra": json.dumps({"allows_virtual_table_explore": True, "metadata_cache_timeout": {}})}
    found = api.find("database", database_name=DATABASE_NAME)
    if found:
        api.call("PUT", f"/api/v1/database/{found[0]['id']}", body)
        return found[0]["id"]
    return api.call("POST", "/api/v1/database/", body)["id"]


def _metric_names(params: dict) -> set[str]:
    names = set()
    for key in METRIC_KEYS:
        values = params.get(key)
        for value in values if isinstance(values, list) else [values]:
            if isinstance(value, str):
                names.add(value)
    return names


def _charts_using(api: SupersetApi, dataset_id: int, metrics: set[str]) -> dict[str, list[str]]:
    related = api.call("GET", f"/api/v1/dataset/{dataset_id}/related_objects")["charts"]["result"]
    using: dict[str, list[str]] = {}
    for chart in related:
        params = json.loads(api.call("GET", f"/api/v1/chart/{chart['id']}")["result"].get("params") or "{}")
        for metric in sorted(_metric_names(params) & metrics):
            using.setdefault(metric, []).append(chart["slice_name"])
    return using


def dataset(api: SupersetApi, database_id: int, spec: Dataset, result: Provisioned) -> int:
    found = [d for d in api.find("dataset", table_name=spec.name) if d["database"]["id"] == database_id]
    if found:
        dataset_id = found[0]["id"]
    else:
        dataset_id = api.call("POST", "/api/v1/dataset/",
                              {"database": database_id, "schema": "public", "table_name": spec.name})["id"]
    current = api.call("GET", f"/api/v1/dataset/{dataset_id}")["result"]
    columns = {c["column_name"]: c for c in current["columns"]}
    metrics = {m["metric_name"]: m for m in current["metrics"]}
    wanted = {m.name for m in spec.metrics}
    gone = set(metrics) - wanted
    if gone:
        for metric, charts in _charts_using(api, dataset_id, gone).items():
            result.stale_charts[f"{spec.name}.{metric}"] = charts
    certification = spec.certification
    body = {
        "description": spec.description, "main_dttm_col": definitions.TIME_COLUMN, "is_managed_externally": True,
        "extra": json.dumps({"certification": {"certified_by": definitions.CERTIFIED_BY, "details": certification}}),
        "columns": [spec.column_payload(c, columns.get(c.name)) for c in spec.columns],
        "metrics": [{**m.payload(certification), **({"id": metrics[m.name]["id"]} if m.name in metrics else {})}
                    for m in spec.metrics],
    }
    # columns with an id are updated, without one created, and those not listed deleted: the catalog, the
    # endpoint's tables' one source, decides them (no reflection of the table again)
    api.call("PUT", f"/api/v1/dataset/{dataset_id}", body)
    return dataset_id


def roles(api: SupersetApi, database_id: int, tenants: list[str]) -> dict[str, int]:
    """Analysts: Superset's Gamma plus access to the SQL endpoint's database; viewers: the same without
    writing, exporting or exploring; one role per tenant that carries no permission (it says whose rows)."""
    existing = {r["name"]: r["id"] for r in api.every("security/roles")}
    if BASE_ROLE not in existing:
        raise ProvisioningError(f"Superset has no {BASE_ROLE} role: its metadata is not initialised (bi/initialise.py)")
    base = api.call("GET", f"/api/v1/security/roles/{existing[BASE_ROLE]}/permissions/")["result"]
    access = [p["id"] for p in api.every("security/permissions-resources")
              if p["permission"]["name"] == "database_access"
              and p["view_menu"]["name"].endswith(f"(id:{database_id})")]
    if not access:
        raise ProvisioningError(f"Superset has no database_access permission for database {database_id}")
    wanted = {ANALYST_ROLE: [p["id"] for p in base] + access,
              VIEWER_ROLE: [p["id"] for p in base if p["permission_name"] not in VIEWER_DROPS] + access,
              **{tenancy.tenant_role(t): [] for t in tenants}}
    ids = {}
    for name, permissions in wanted.items():
        if name not in existing:
            existing[name] = api.call("POST", "/api/v1/security/roles/", {"name": name})["id"]
        api.call("POST", f"/api/v1/security/roles/{existing[name]}/permissions",
                 {"permission_view_menu_ids": sorted(set(permissions))})
        ids[name] = existing[name]
    return ids


def users(api: SupersetApi, accounts: list[dict], role_ids: dict[str, int]) -> dict[str, int]:
    """Demo users: `accounts` are {username, password, roles}; an existing user keeps their password
    and gets these roles."""
    ids = {}
    for account in accounts:
        role_list = [role_ids[r] for r in account["roles"]]
        found = api.find("security/users", username=account["username"])
        if found:
            api.call("PUT", f"/api/v1/security/users/{found[0]['id']}", {"roles": role_list})
            ids[account["username"]] = found[0]["id"]
            continue
        ids[account["username"]] = api.call("POST", "/api/v1/security/users/", {
            "username": account["username"], "password": account["password"], "first_name": account["username"],
            "last_name": "Demo", "email": f"{account['username']}@example.com", "active": True,
            "roles": role_list})["id"]
    return ids


def dashboard(api: SupersetApi, found: list[Dataset], dataset_ids: dict[str, int], role_ids: list[int],
              result: Provisioned) -> int:
    """The starter dashboard, shared with analysts and viewers, its charts created or updated by name."""
    meta = {"dashboard_title": definitions.DASHBOARD_TITLE, "slug": definitions.DASHBOARD_SLUG, "published": True,
            "certified_by": definitions.CERTIFIED_BY,
            "certification_details": "The Executive KPIs page of the reports, from the governed metrics",
            "is_managed_externally": True}  # provisioning rewrites it: `Save as` makes an editable copy
    existing = api.find("dashboard", slug=definitions.DASHBOARD_SLUG)
    dashboard_id = existing[0]["id"] if existing else api.call("POST", "/api/v1/dashboard/", meta)["id"]
    on_board = api.call("GET", f"/api/v1/dashboard/{dashboard_id}/charts")["result"] if existing else []
    wanted = definitions.dashboard_charts(found)
    for gone in [c for c in on_board if c["slice_name"] not in {w.name for w in wanted}
                 and c.get("certified_by") == definitions.CERTIFIED_BY]:
        api.call("DELETE", f"/api/v1/chart/{gone['id']}")  # a starter chart no longer defined
    on_board = {c["slice_name"]: c["id"] for c in on_board}
    placed = []
    for chart in wanted:
        body = {"slice_name": chart.name, "viz_type": chart.viz_type, "datasource_id": dataset_ids[chart.dataset],
                "datasource_type": "table", "dashboards": [dashboard_id],
                "params": json.dumps({**chart.params, "viz_type": chart.viz_type,
                                      "datasource": f"{dataset_ids[chart.dataset]}__table"}),
                "certified_by": definitions.CERTIFIED_BY, "certification_details": "Starter dashboard",
                "is_managed_externally": True}
        if chart.name in on_board:
            api.call("PUT", f"/api/v1/chart/{on_board[chart.name]}", body)
            chart_id = on_board[chart.name]
        else:
            chart_id = api.call("POST", "/api/v1/chart/", body)["id"]
        result.charts[chart.name] = chart_id
        placed.append((chart_id, chart.name))
    api.call("PUT", f"/api/v1/dashboard/{dashboard_id}", {
        **meta, "roles": role_ids, "position_json": json.dumps(definitions.position(placed)),
        "json_metadata": json.dumps({"refresh_frequency": 0, "color_scheme": "supersetColors",
                                     "cross_filters_enabled": True})})
    return dashboard_id


def provision(api: SupersetApi, found: list[Dataset], uri: str, tenants: list[str],
              accounts: list[dict]) -> Provisioned:
    """Everything, in dependency order; see the module's docstring."""
    result = Provisioned(database(api, uri))
    for spec in found:
        result.datasets[spec.name] = dataset(api, result.database_id, spec, result)
    result.roles = roles(api, result.database_id, tenants)
    result.users = users(api, accounts, result.roles)
    result.dashboard_id = dashboard(api, found, result.datasets,
                                    [result.roles[ANALYST_ROLE], result.roles[VIEWER_ROLE]], result)
    for metric, charts in sorted(result.stale_charts.items()):
        log.warning("metric %s is gone from the semantic layer; charts that used it: %s", metric, ", ".join(charts))
    return result
