"""`dbt build` on the tiny sample: every model, data test and unit test passes, and the marts
hold the numbers the sources imply."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess

import pytest

from ingestion import pipelines
from ingestion.paths import DataLayout
from ingestion.sample_data.landing_files import write_atomically
from tests.conftest import REPO_ROOT
from tests.ingestion.helpers import event_line, load, query, scalar

DBT_DIR = REPO_ROOT / "dbt_project"


def dbt(layout, *args: str) -> dict:
    """Run the dbt CLI against this layout's warehouse; return run_results.json."""
    target = layout.root / "dbt-target"
    env = {**os.environ, "PLATFORM_WAREHOUSE": str(layout.warehouse), "DBT_TARGET": "duckdb"}
    proc = subprocess.run(
        ["dbt", *args, "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR),
         "--target-path", str(target), "--log-path", str(layout.root / "dbt-logs")],
        env=env, capture_output=True, text=True, timeout=600,
    )
    results = json.loads((target / "run_results.json").read_text()) if (target / "run_results.json").exists() else {}
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return results


@pytest.fixture(scope="module")
def built(tiny_sample, tmp_path_factory):
    """The tiny sample loaded and built once for the module's read-only checks."""
    layout = DataLayout(tmp_path_factory.mktemp("built") / "data")
    shutil.copytree(tiny_sample.root, layout.root)
    for target in pipelines.TARGETS:
        load(layout, target)
    results = dbt(layout, "build")
    return layout, results


def test_every_model_and_test_passes(built):
    _, results = built
    statuses = {}
    for r in results["results"]:
        kind = r["unique_id"].split(".")[0]
        statuses.setdefault(kind, set()).add(r["status"])
    assert statuses["model"] == {"success"}
    assert statuses["test"] == {"pass"}
    assert statuses["unit_test"] == {"pass"}
    unit_tests = [r["unique_id"] for r in results["results"] if r["unique_id"].startswith("unit_test.")]
    assert len(unit_tests) >= 3


def test_sessions_match_the_simulated_sessions(built):
    layout, _ = built
    truth = json.loads(layout.ground_truth.read_text())
    assert scalar(layout, "select count(*) from marts.fct_sessions") == truth["app_db"]["sessions"]


def test_daily_revenue_equals_the_app_database(built):
    layout, _ = built
    with sqlite3.connect(layout.app_db) as conn:
        expected = dict(conn.execute(
            "select date(created_at), round(sum(total_amount), 2) from orders where status = 'completed' group by 1"))
    actual = {str(d): float(v) for d, v in query(
        layout, "select date_day, sum(revenue) from marts.metrics_daily group by 1 having sum(revenue) > 0")}
    assert actual.keys() == expected.keys()
    assert all(abs(actual[d] - expected[d]) < 0.01 for d in expected)


def test_every_tenant_every_day(built):
    layout, _ = built
    tenants = scalar(layout, "select count(*) from marts.dim_tenants")
    days = scalar(layout, "select count(distinct date_day) from marts.metrics_daily")
    assert scalar(layout, "select count(*) from marts.metrics_daily") == tenants * days
    assert days == json.loads(layout.ground_truth.read_text())["size"]["days"]


def test_incremental_events_land_late_events_in_their_day_and_replays_change_nothing(sample):
    for target in pipelines.TARGETS:
        load(sample, target)
    dbt(sample, "build")
    day = "2026-10-10"
    before = dict(query(sample, "select tenant_id, events from marts.metrics_daily where date_day = ?", day))
    total = scalar(sample, "select count(*) from marts.fct_events")
    late = [event_line(f"late-{i}", timestamp=f"{day}T08:00:0{i}Z") for i in range(3)]
    write_atomically(sample.events_dir / "events_late.jsonl", b"\n".join(late) + b"\n")
    load(sample, pipelines.EVENTS)
    results = dbt(sample, "build", "--select", "fct_events+")
    assert scalar(sample, "select count(*) from marts.fct_events") == total + 3
    after = dict(query(sample, "select tenant_id, events from marts.metrics_daily where date_day = ?", day))
    assert after["t001"] == before["t001"] + 3
    assert {r["status"] for r in results["results"]} <= {"success", "pass"}
    # a replayed file loads nothing, and a rebuild changes nothing
    assert load(sample, pipelines.EVENTS) == {}
    dbt(sample, "build", "--select", "fct_events")
    assert scalar(sample, "select count(*) from marts.fct_events") == total + 3
