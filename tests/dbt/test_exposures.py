"""Every consumer of the dbt project is an exposure (models/exposures.yml), and each lists what it
really reads: the reports pages the marts their Evidence sources select from, the metrics server the
model of every semantic model. Read from the parsed manifest and the reports' own files."""

from __future__ import annotations

import re

import pytest

from tests.conftest import REPO_ROOT

REPORTS = REPO_ROOT / "reports"
# the Evidence pages behind each report exposure (a folder: every page in it)
PAGES = {
    "report_executive_kpis": ["index.md"],
    "report_engagement": ["engagement.md"],
    "report_forecasts": ["forecasts.md"],
    "report_insights": ["insights.md"],
    "report_data_quality": ["quality.md"],
    "report_experiments": ["experiments"],
}


def exposures(manifest: dict) -> dict[str, dict]:
    return {e["name"]: e for e in manifest["exposures"].values()}


def parents(manifest: dict, exposure: dict) -> set[str]:
    """The relations an exposure depends on, as schema.table (marts.fct_events, ml.forecast_daily)."""
    nodes = {**manifest["nodes"], **manifest["sources"]}
    return {f"{nodes[p]['schema']}.{nodes[p].get('alias') or nodes[p]['name']}"
            for p in exposure["depends_on"]["nodes"] if p in nodes}


def relations_read_by(page_paths: list[str]) -> set[str]:
    """The marts and ml tables that a report's pages select from, through their Evidence sources."""
    texts = []
    for name in page_paths:
        path = REPORTS / "pages" / name
        texts += [p.read_text() for p in sorted(path.rglob("*.md"))] if path.is_dir() else [path.read_text()]
    text = "\n".join(texts)
    for partial in re.findall(r'\{@partial "([^"]+)"\}', text):
        text += (REPORTS / "partials" / partial).read_text()
    sources = set(re.findall(r"\bwarehouse\.(\w+)", text))
    assert sources, f"no Evidence source found in {page_paths}"
    sql = "\n".join((REPORTS / "sources" / "warehouse" / f"{s}.sql").read_text() for s in sources)
    # the reports read marts and ML outputs that dbt declares; ml.insights and quality.* are not dbt's
    return set(re.findall(r"\b((?:marts|ml)\.\w+)", sql)) - {"ml.insights"}


def test_every_kind_of_consumer_is_an_exposure(manifest):
    found = exposures(manifest)
    assert {"metrics_server", "superset_executive_dashboard", "forecasting_models", "experiment_analysis",
            *PAGES} <= set(found)
    kinds = {e["name"]: e["type"] for e in found.values()}
    assert kinds["metrics_server"] == "application"
    assert kinds["forecasting_models"] == kinds["experiment_analysis"] == "ml"
    assert {kinds[name] for name in PAGES} == {kinds["superset_executive_dashboard"]} == {"dashboard"}
    for exposure in found.values():
        assert exposure["description"].strip() and exposure["owner"]["name"], exposure["name"]
        assert exposure["depends_on"]["nodes"], f"{exposure['name']} depends on nothing"


@pytest.mark.parametrize("name", sorted(PAGES))
def test_each_report_exposure_lists_the_relations_its_pages_read(manifest, name):
    exposure = exposures(manifest)[name]
    missing = relations_read_by(PAGES[name]) - parents(manifest, exposure)
    assert not missing, f"{name} reads {sorted(missing)} but does not depend on them"


def test_metrics_server_depends_on_every_semantic_model(manifest):
    served = {m["depends_on"]["nodes"][0] for m in manifest["semantic_models"].values()}
    exposure = exposures(manifest)["metrics_server"]
    assert served and served <= set(exposure["depends_on"]["nodes"])


def test_dashboards_that_read_metrics_name_them(manifest):
    for name in ("superset_executive_dashboard", "report_executive_kpis"):
        metrics = [p for p in exposures(manifest)[name]["depends_on"]["nodes"] if p.startswith("metric.")]
        assert {"metric.analytics_platform.revenue", "metric.analytics_platform.active_users"} <= set(metrics), name


def test_ml_exposures_read_the_marts_their_code_reads(manifest):
    found = exposures(manifest)
    assert "marts.metrics_daily" in parents(manifest, found["forecasting_models"])
    analysis = (REPO_ROOT / "ml" / "experiments" / "analysis.py").read_text()
    read = {f"marts.{t}" for t in re.findall(r"from \{schema\}\.(\w+)", analysis)}
    assert read and read <= parents(manifest, found["experiment_analysis"])
