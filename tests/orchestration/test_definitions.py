"""The code location: it loads, its graph is what review expects, its pure parts behave."""

from __future__ import annotations

import os
import subprocess

import dagster as dg
import pytest
from syrupy.extensions.json import JSONSnapshotExtension

from orchestration.environment import tool
from tests.conftest import REPO_ROOT


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    from orchestration.definitions import defs

    return defs


def graph_snapshot(defs: dg.Definitions) -> dict:
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "deps": sorted(p.to_user_string() for p in node.parent_keys),
            "checks": sorted(c.name for c in node.check_keys),
            "group": node.group_name,
        }
    return {
        "assets": assets,
        "jobs": sorted(j.name for j in defs.resolve_all_job_defs() if not j.name.startswith("__")),
        "schedules": sorted((s.name, s.cron_schedule) for s in defs.schedules or []),
        "sensors": sorted(s.name for s in defs.sensors or []),
    }


@pytest.fixture
def snapshot_json(snapshot):
    """syrupy's snapshot, stored as JSON (`__snapshots__/test_definitions/<test>.json`), readable in review."""
    return snapshot.with_defaults(extension_class=JSONSnapshotExtension)


def test_graph_matches_the_reviewed_snapshot(defs, snapshot_json):
    """A change to the asset graph shows up in review (syrupy): accept it with `pytest --snapshot-update`."""
    assert graph_snapshot(defs) == snapshot_json


def test_raw_tables_connect_loads_to_models(defs):
    """Every dbt source is produced by a dlt asset: no dangling external assets."""
    graph = defs.resolve_asset_graph()
    materializable = {k for k in graph.get_all_asset_keys() if graph.get(k).is_materializable}
    for key in graph.get_all_asset_keys():
        for parent in graph.get(key).parent_keys:
            assert parent in materializable, f"{key.to_user_string()} depends on unproduced {parent.to_user_string()}"
    staging = graph.get(dg.AssetKey(["staging", "stg_events__events"]))
    assert dg.AssetKey(["raw_events", "events"]) in staging.parent_keys


def test_dbt_models_are_grouped_by_layer(defs):
    """Each model sits in the group of its folder under models/ (its schema here), not in `default`."""
    graph = defs.resolve_asset_graph()
    layers = {"staging", "intermediate", "marts"}
    models = [k for k in graph.get_all_asset_keys() if k.path[0] in layers]
    assert {k.path[0] for k in models} == layers
    for key in models:
        assert graph.get(key).group_name == key.path[0], key.to_user_string()


def test_asset_descriptions_read_as_text(defs):
    """The catalog shows descriptions as written: no Markdown heading (dagster-dbt's default adds one over the SQL)."""
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        description = graph.get(key).description or ""
        headings = [line for line in description.splitlines() if line.lstrip().startswith("#")]
        assert not headings, f"{key.to_user_string()}: {headings}"
    stg = graph.get(dg.AssetKey(["staging", "stg_events__events"]))
    assert stg.description and "select" not in stg.description.lower()


def test_dbt_tests_are_asset_checks(defs):
    graph = defs.resolve_asset_graph()
    checks = graph.get(dg.AssetKey(["marts", "metrics_daily"])).check_keys
    assert any(c.name.startswith("unique_metrics_daily") for c in checks)


def test_warehouse_writers_share_one_pool(defs):
    graph = defs.resolve_asset_graph()
    pools = {graph.get(k).pools and next(iter(graph.get(k).pools)) for k in graph.get_all_asset_keys()
             if k.path[0] in ("raw_app", "raw_events", "raw_marketing", "marts")}
    assert pools == {"warehouse"}


def test_the_data_pipeline_never_waits_on_deliveries(defs):
    """Email and webhooks are in their own jobs: the batch and daily jobs hold no distribution step."""
    from orchestration.assets.distribution import ALERTS_KEY, DISTRIBUTION_KEY

    for name in ("batch_job", "daily_job", "events_microbatch_job"):
        keys = defs.resolve_job_def(name).asset_layer.executable_asset_keys
        assert not {DISTRIBUTION_KEY, ALERTS_KEY} & set(keys), name
    assert set(defs.resolve_job_def("report_distribution_job").asset_layer.executable_asset_keys) == {DISTRIBUTION_KEY}
    assert set(defs.resolve_job_def("insight_alerts_job").asset_layer.executable_asset_keys) == {ALERTS_KEY}


def test_dbt_arguments_and_result_summary():
    from orchestration.assets.dbt import dbt_build_args, summarize_run_results

    assert dbt_build_args() == ["build"]
    assert dbt_build_args(full_refresh=True) == ["build", "--full-refresh"]
    assert dbt_build_args(unit_tests=False) == ["build", "--exclude-resource-type", "unit_test"]
    results = {"results": [
        {"unique_id": "model.p.a", "status": "success"},
        {"unique_id": "test.p.t1", "status": "pass"},
        {"unique_id": "test.p.t2", "status": "fail"},
        {"unique_id": "unit_test.p.a.u", "status": "pass"},
    ]}
    assert summarize_run_results(results) == {
        "model_success": 1, "test_fail": 1, "test_pass": 1, "unit_test_pass": 1,
    }


def test_environment_is_decided_in_one_place(tmp_path):
    from orchestration.environment import environment_from
    from reports.delivery import Settings as DeliverySettings

    env = environment_from({"PLATFORM_DATA_DIR": str(tmp_path), "DBT_TARGET": "postgres"})
    assert env.dbt_target == "postgres"
    assert env.layout.warehouse == tmp_path / "warehouse.duckdb"
    assert env.dagster_home == tmp_path / "dagster"
    default = environment_from({})
    assert default.data_dir == REPO_ROOT / "data" and default.dbt_target == "duckdb"
    # where reports and alerts go: read here too, once, so the assets, sensors and servers never read os.environ
    assert default.delivery == DeliverySettings() and default.report_pdf_pages is None
    reports = environment_from({"REPORTS_ALERT_WEBHOOK_URL": "https://alerts.example.com/x", "REPORTS_PDF_PAGES": "/",
                                "REPORTS_DELIVERY_ATTEMPTS": "many", "REPORTS_SERVE_LOG": "1"})
    assert reports.delivery.alert_webhook_url == "https://alerts.example.com/x" and reports.report_pdf_pages == "/"
    assert reports.delivery.problems["alert"] == "REPORTS_DELIVERY_ATTEMPTS must be a whole number, not 'many'"
    assert reports.reports_request_log and not default.reports_request_log


def test_duckdb_limits_are_read_once_and_bad_ones_named(tmp_path):
    """Each DuckDB database of a run (dbt's, dlt's, the job's connections) gets the same memory limit and threads,
    from PLATFORM_DUCKDB_*; by default a quarter of the machine's memory each, not DuckDB's 80%."""
    from orchestration.environment import DUCKDB_MEMORY_SHARE, environment_from

    chosen = environment_from({"PLATFORM_DATA_DIR": str(tmp_path), "PLATFORM_DUCKDB_MEMORY_LIMIT": "3GB",
                               "PLATFORM_DUCKDB_THREADS": "1"})
    assert chosen.duckdb_limits.settings() == {"memory_limit": "3GB", "threads": "1"}
    with chosen.warehouse(read_only=False) as warehouse:
        assert warehouse.rows("select current_setting('memory_limit'), current_setting('threads')") == [
            ("2.7 GiB", 1)]
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert environment_from({}).duckdb_limits.memory_limit == f"{int(memory * DUCKDB_MEMORY_SHARE / 2**20)}MiB"
    for name, value in (("PLATFORM_DUCKDB_MEMORY_LIMIT", "lots"), ("PLATFORM_DUCKDB_MEMORY_LIMIT", "80%"),
                        ("PLATFORM_DUCKDB_THREADS", "0"), ("PLATFORM_DUCKDB_THREADS", "two")):
        with pytest.raises(ValueError, match=f"{name} must .* not '{value}'"):
            environment_from({name: value})


def test_dagster_validates_the_workspace(tmp_path):
    proc = subprocess.run(
        [tool("dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO_ROOT, env={**os.environ, "PLATFORM_DATA_DIR": str(tmp_path)},
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "All code locations passed validation" in proc.stdout + proc.stderr


def test_readme_names_what_the_schedules_run_and_runs_uv_as_installed(defs):
    """The README's commands work after `make` installed uv with `pip --user` (not on PATH), and it names the
    job each schedule it mentions really runs."""
    import re

    readme = (REPO_ROOT / "README.md").read_text()
    bare = [line for line in readme.splitlines() if re.search(r"(?<!-m )\buv (run|sync|add)\b", line)]
    assert not bare
    for schedule in defs.schedules or []:
        said = re.search(rf"`{schedule.name}`[^.]*?runs `(\w+)`", readme)
        if said:
            assert said.group(1) == schedule.job_name, schedule.name
    assert re.search(r"`daily_batch`[^.]*?runs `(\w+)`", readme)


def test_plain_dagster_commands_use_the_projects_instance(tmp_path):
    """`make` prepares data/dagster and writes DAGSTER_HOME into `.env`, which Dagster's commands (`dagster dev`
    among them) load from the folder they start in: without DAGSTER_HOME set, a plain command runs on the project's
    instance (the warehouse pool, retries, history), not on a temporary one."""
    make = ["make", "-s", "-C", str(tmp_path), "-f", str(REPO_ROOT / "Makefile"), "dagster-env",
            "data/dagster/dagster.yaml"]
    subprocess.run(make, check=True, timeout=60)
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}

    def instance_info(environment: dict[str, str]) -> str:
        proc = subprocess.run([tool("dagster"), "instance", "info"], cwd=tmp_path, env=environment,
                              capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    info = instance_info(env)
    assert f"$DAGSTER_HOME: {tmp_path / 'data' / 'dagster'}\n" in info
    assert "pools:\n    default_limit: 1" in info and "run_retries:\n  enabled: true" in info
    other = tmp_path / "elsewhere"
    other.mkdir()
    assert f"$DAGSTER_HOME: {other}\n" in instance_info({**env, "DAGSTER_HOME": str(other)})  # one set wins
    subprocess.run(make, check=True, timeout=60)  # again: the `.env` keeps its one line
    assert (tmp_path / ".env").read_text().count("DAGSTER_HOME=") == 1
