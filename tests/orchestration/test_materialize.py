"""Real Dagster materializations of every asset on the tiny sample, in a temporary data dir.

The main job runs as users run it (`python -m orchestration.main`), in its own process with its
own DAGSTER_HOME, so the run is recorded and the UI would show it: once for the whole session
(`main_run`, which other suites read too), and again where a run is killed half-way. The second
run of the idempotence check runs in the test's process, on a copy.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import dagster as dg

from ingestion.paths import DataLayout
from semantic import snapshots
from tests.conftest import copy_of
from tests.ingestion.helpers import query, scalar
from tests.orchestration.helpers import main_job, mart_counts, run_in_process, without_forecasts


def test_main_job_materializes_every_asset_and_prints_a_summary(main_run):
    data_dir, out = main_run
    summary = out[out.index("batch_job run "):]
    assert "SUCCESS" in summary
    assert "0 failed" in summary
    for mart in ("fct_events", "fct_sessions", "fct_orders", "dim_users", "dim_tenants", "metrics_daily",
                 "retention_cohorts", "funnel_daily", "metrics_per_minute"):
        assert mart in summary
    assert f"warehouse (duckdb): {data_dir / 'warehouse.duckdb'}" in summary and "Dagster UI" in summary

    with dg.DagsterInstance.from_config(str(data_dir / "dagster")) as instance:
        records = instance.get_run_records()
        assert len(records) == 1 and records[0].dagster_run.is_success
        latest = instance.get_latest_materialization_events(instance.get_asset_keys())
        materialized = {key.to_user_string() for key, event in latest.items() if event}
    from orchestration.definitions import batch_job, defs

    pipeline = {k.to_user_string() for k in batch_job.selection.resolve(defs.resolve_asset_graph())}
    # every asset of the batch job's selection: not the deliveries nor the lifecycle (retention, backups),
    # which have their own jobs and schedules
    assert materialized == pipeline and "lifecycle/retention" not in pipeline


def test_marts_are_full_and_tests_passed(main_run):
    data_dir, _ = main_run
    layout = DataLayout(data_dir)
    truth = json.loads(layout.ground_truth.read_text())
    counts = mart_counts(layout)
    assert counts["fct_events"] == truth["events"]["valid_events"]
    assert counts["fct_sessions"] == truth["app_db"]["sessions"]
    assert counts["fct_orders"] == truth["app_db"]["orders"]
    # the tiny sample's 35 days hold no insight (no day stands out; too short for relationships), so the
    # insight marts are empty here: tests/ml/test_drivers.py and `make bench-insights` fill them
    quiet = {"fct_insights", "fct_insight_drivers", "fct_insight_correlations"}
    assert all(n > 0 for mart, n in counts.items() if mart not in quiet), counts
    assert quiet <= set(counts)
    results = json.loads((data_dir / "dbt_results" / "dbt_models.json").read_text())
    assert set(results) == {"model_success", "seed_success", "test_pass", "unit_test_pass"}  # the events calendar
    forecast_marts = json.loads((data_dir / "dbt_results" / "dbt_forecast_marts.json").read_text())
    assert set(forecast_marts) == {"model_success", "test_pass", "unit_test_pass"}  # unit tests on the forecast marts


def test_the_second_dbt_step_parses_only_what_changed(main_run):
    """The first dbt step of a new data directory parses the whole project (the project's own parse
    was made with another warehouse path); the second starts from the first's."""
    _, out = main_run
    first, second = out.split(" - dbt_forecast_marts - ", 1)
    assert "Unable to do partial parsing" in first
    assert "Unable to do partial parsing" not in second


def test_second_run_is_idempotent(tmp_path, main_run):
    data_dir = copy_of(main_run[0], tmp_path)
    layout = DataLayout(data_dir)
    before = mart_counts(layout)
    quarantined = scalar(layout, "select count(*) from raw_events.events_quarantine")
    run_in_process(data_dir)
    assert mart_counts(layout) == before
    assert scalar(layout, "select count(*) from raw_events.events_quarantine") == quarantined


def _events_load_in_flight(data_dir: Path) -> bool:
    """True once the events pipeline has a package extracted or normalized but not yet loaded."""
    work = data_dir / "dlt" / "events"
    return any(any(d.iterdir()) for d in (work / "normalize" / "extracted", work / "load" / "normalized")
               if d.is_dir())


def test_run_killed_half_way_and_started_again(tmp_path):
    """kill -9 while the events load is in flight; the next run (from the sources to the marts, which
    is what the events go through) completes with every event once."""
    data_dir = tmp_path / "data"
    with open(tmp_path / "killed-run.log", "w") as log:
        proc = main_job(data_dir, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while not _events_load_in_flight(data_dir):
            assert proc.poll() is None, "the run ended before its events load could be interrupted"
            assert time.monotonic() < deadline, "the events load never started"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    run_in_process(data_dir, assets=without_forecasts(publish=False))
    layout = DataLayout(data_dir)
    truth = json.loads(layout.ground_truth.read_text())
    assert scalar(layout, "select count(*) from raw_events.events") == truth["events"]["valid_events"]
    assert scalar(layout, "select count(distinct event_id) from marts.fct_events") == truth["events"]["valid_events"]
    assert scalar(layout, "select count(*) from marts.fct_events") == truth["events"]["valid_events"]


def test_forecasts_and_insights_are_written_and_published(main_run):
    """The tiny sample is too short to backtest: a version is registered but not champion, and
    its forecasts say so; the tables reach the published snapshot with the marts."""
    data_dir, out = main_run
    layout = DataLayout(data_dir)
    assert "not promoted: no backtest fold had enough history" in out
    assert "forecasts:" in out and "insights:" in out
    horizons, metrics, versions = query(layout, "select count(distinct horizon), count(distinct metric), "
                                                "list(distinct model_version) from ml.forecast_daily")[0]
    assert horizons == 28 and metrics == 5 and len(versions) == 1 and versions[0].endswith(" (not champion)")
    last_day = scalar(layout, "select max(date_day) from marts.metrics_daily")
    assert scalar(layout, "select min(forecast_date) from ml.forecast_daily") == last_day + timedelta(days=1)
    assert scalar(layout, "select count(*) from ml.insights where explanation is null") == 0
    assert (data_dir / "mlflow" / "mlflow.db").exists()
    published = snapshots.current(data_dir / "published")
    with published.connect() as conn:
        tables = {t for (t,) in conn.execute("select table_name from information_schema.tables "
                                             "where table_schema = 'ml'").fetchall()}
        mart = conn.execute("select count(*), count(distinct tenant_id) from marts.fct_forecasts").fetchone()
        rollup_forecasts = conn.execute("select count(forecast_revenue) from rollups.daily_kpis").fetchone()[0]
    assert tables == {"forecast_daily", "insights", "insight_drivers", "insight_correlations"}
    tenant_rows = scalar(layout, "select count(*) from ml.forecast_daily where tenant_id <> 'all'")
    assert mart == (tenant_rows, scalar(layout, "select count(*) from marts.dim_tenants")) and tenant_rows > 0
    revenue_rows = scalar(layout, "select count(*) from ml.forecast_daily where tenant_id <> 'all' "
                                  "and metric = 'revenue'")
    assert rollup_forecasts == revenue_rows > 0  # the metrics server's rollup, built at publish: a row a tenant-day
