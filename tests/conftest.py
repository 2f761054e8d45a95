"""Shared fixtures: a tiny sample generated once per session (copied for tests that change it),
the dbt CLI against a test warehouse, and that sample loaded and built once for read-only checks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from ingestion import pipelines
from ingestion.paths import DataLayout
from ingestion.sample_data import SIZES, generate
from orchestration.environment import DBT_PROJECT_DIR
from tests.ingestion.helpers import load

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_DIR = DBT_PROJECT_DIR

_TEST_DATA_DIR: list[str] = []


def pytest_configure(config):
    """Code imported by tests (the Dagster definitions) must never touch the user's data/."""
    if "PLATFORM_DATA_DIR" not in os.environ:
        _TEST_DATA_DIR.append(tempfile.mkdtemp(prefix="platform-test-data-"))
        os.environ["PLATFORM_DATA_DIR"] = _TEST_DATA_DIR[0]


def pytest_unconfigure(config):
    for path in _TEST_DATA_DIR:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_sample(tmp_path_factory) -> DataLayout:
    """A pristine tiny sample (sources only, nothing loaded). Do not modify: use `sample`."""
    layout = DataLayout(tmp_path_factory.mktemp("tiny-sample"))
    generate(layout, SIZES["tiny"], seed=42)
    return layout


@pytest.fixture
def sample(tiny_sample: DataLayout, tmp_path: Path) -> DataLayout:
    """A private copy of the tiny sample that a test may change and load."""
    root = tmp_path / "data"
    shutil.copytree(tiny_sample.root, root)
    return DataLayout(root)


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


@pytest.fixture(scope="session")
def built(tiny_sample, tmp_path_factory):
    """The tiny sample loaded and built once, for read-only checks."""
    layout = DataLayout(tmp_path_factory.mktemp("built") / "data")
    shutil.copytree(tiny_sample.root, layout.root)
    for target in pipelines.TARGETS:
        load(layout, target)
    write_forecasts(layout)
    results = dbt(layout, "build")
    return layout, results


def write_forecasts(layout: DataLayout, days: int = 28) -> None:
    """A stand-in for the forecasting assets' table (ml.forecast_daily), so that the forecast mart and
    its metrics have rows without training models: every tenant, the all-tenant series and each metric,
    with values that differ by tenant, metric and day."""
    import duckdb

    with duckdb.connect(str(layout.warehouse)) as conn:
        conn.execute("create schema if not exists ml")
        conn.execute(f"""
            create or replace table ml.forecast_daily as
            with series as (
                select tenant_id, row_number() over (order by tenant_id) as n from raw_app.tenants
                union all select 'all', 0
            )
            select timestamp '2026-11-01' + to_days(cast(h as integer)) as forecast_date, tenant_id, metric,
                   100.0 * n + 10 * m + h as prediction, 90.0 * n + h as lower_80, 110.0 * n + 20 * m + h as upper_80,
                   80.0 * n + h as lower_95, 120.0 * n + 20 * m + h as upper_95, h as horizon,
                   timestamp '2026-10-31' as origin_date, 'forecast_' || metric as model_name,
                   '1 (champion)' as model_version, now() as created_at
            from series
            cross join range(1, {days + 1}) as horizons(h)
            cross join (values ('revenue', 1), ('orders', 2), ('active_users', 3), ('sessions', 4), ('errors', 5))
                as metrics(metric, m)
        """)
