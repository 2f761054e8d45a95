"""Shared fixtures: the tiny sample, built and published once per test session, and one run of the
main job as users run it; plus the pinned dates that make every test see the same data on any day.

Expensive states are built once per session and shared by every pytest-xdist worker (a file lock
decides which worker builds; the others wait and reuse). They are read-only: a test that changes
one works on its own copy (`copy_of`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest
from filelock import FileLock

from ingestion import pipelines
from ingestion.paths import DataLayout
from ingestion.sample_data import SIZES, generate
from orchestration.environment import DBT_PROJECT_DIR, tool
from tests.ingestion.helpers import load
from tests.postgres_cluster import ClusterError, cluster

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_DIR = DBT_PROJECT_DIR

# The sample's last day and the moment runs take as now (the next morning): fixed, so that the
# same commit passes on any day. `PLATFORM_SAMPLE_END_DATE=2026-11-28 make test` runs the whole
# suite as of another day, to show that no test depends on the date it was written on.
SAMPLE_END = date.fromisoformat(os.environ.get("PLATFORM_SAMPLE_END_DATE", "2026-10-31"))
NOW = os.environ.get("PLATFORM_NOW", f"{SAMPLE_END + timedelta(days=1)}T06:00:00Z")
TINY = replace(SIZES["tiny"], end_date=SAMPLE_END)

_TEST_DATA_DIR: list[str] = []


def sample_day(days_before_end: int) -> date:
    """A day of the tiny sample, counted back from its last day."""
    return SAMPLE_END - timedelta(days=days_before_end)


def pytest_configure(config):
    """Pinned dates for every process the tests start; and code imported by tests (the Dagster
    definitions) must never touch the user's data/."""
    os.environ["PLATFORM_SAMPLE_END_DATE"] = SAMPLE_END.isoformat()
    os.environ["PLATFORM_NOW"] = NOW
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # one thread per worker for OpenMP (LightGBM) and BLAS: the workers already use every core,
        # and more threads than cores make OpenMP's threads spin against each other
        os.environ["OMP_NUM_THREADS"] = "1"
    if "PLATFORM_DATA_DIR" not in os.environ:
        _TEST_DATA_DIR.append(tempfile.mkdtemp(prefix="platform-test-data-"))
        os.environ["PLATFORM_DATA_DIR"] = _TEST_DATA_DIR[0]


# The longest modules (a minute and more each, longest first), before the rest. pytest-xdist's `loadscope`
# hands modules to the workers in collection order, so when one of them came late the other worker sat idle
# at the end while it ran (the run of 617 tests: 930 s of wall time for 1,686 s of test time over two
# workers; Superset's module, collected near the end, 168 s). The distribution module builds the shared
# main run, which the modules after it read.
LONGEST_FIRST = ("tests/orchestration/test_spark_target.py", "tests/reports/test_distribution.py",
                 "tests/orchestration/test_postgres_target.py", "tests/semantic/test_superset.py",
                 "tests/reports/test_site.py", "tests/expectations/test_quality_gates.py",
                 "tests/orchestration/test_ui_launch.py", "tests/orchestration/test_materialize.py")


def pytest_collection_modifyitems(config, items):
    rank = {path: place for place, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(LONGEST_FIRST)))  # stable: the rest as before


def pytest_unconfigure(config):
    for path in _TEST_DATA_DIR:
        shutil.rmtree(path, ignore_errors=True)


def shared(tmp_path_factory, name: str, make: Callable[[Path], object]) -> Path:
    """A directory `make` fills once per test session, for every xdist worker (read-only).

    The first worker to ask builds it under a file lock; the others wait for it. A build that
    fails leaves nothing behind, so the next test that asks sees the failure too.
    """
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the session's folder, shared by the workers
    path = base / f"shared-{name}"
    done = path / ".complete"
    with FileLock(f"{path}.lock"):
        if not done.exists():
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir()
            try:
                make(path)
            except BaseException:
                shutil.rmtree(path, ignore_errors=True)
                raise
            done.touch()
    return path


def copy_of(source: Path, tmp_path: Path) -> Path:
    """A private copy of a shared data directory that a test may change."""
    root = tmp_path / "data"
    shutil.copytree(source, root, ignore=shutil.ignore_patterns(".complete"))
    return root


@pytest.fixture(scope="session")
def tiny_sample(tmp_path_factory) -> DataLayout:
    """A pristine tiny sample (sources only, nothing loaded). Do not modify: use `sample`."""
    return DataLayout(shared(tmp_path_factory, "tiny-sample", lambda path: generate(DataLayout(path), TINY, seed=42)))


@pytest.fixture
def sample(tiny_sample: DataLayout, tmp_path: Path) -> DataLayout:
    """A private copy of the tiny sample that a test may change and load."""
    return DataLayout(copy_of(tiny_sample.root, tmp_path))


def dbt(layout, *args: str) -> dict:
    """Run the dbt CLI against this layout's warehouse; return run_results.json."""
    target = layout.root / "dbt-target"
    env = {**os.environ, "PLATFORM_WAREHOUSE": str(layout.warehouse), "DBT_TARGET": "duckdb"}
    proc = subprocess.run(
        [tool("dbt"), *args, "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR),
         "--target-path", str(target), "--log-path", str(layout.root / "dbt-logs")],
        env=env, capture_output=True, text=True, timeout=600,
    )
    results = json.loads((target / "run_results.json").read_text()) if (target / "run_results.json").exists() else {}
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return results


def _build(tiny_sample: DataLayout) -> Callable[[Path], object]:
    def make(path: Path) -> None:
        from orchestration.environment import SEMANTIC_MANIFEST
        from semantic import rollups
        from semantic.publication import DuckDbSnapshots

        layout = DataLayout(path / "data")
        shutil.copytree(tiny_sample.root, layout.root, ignore=shutil.ignore_patterns(".complete"))
        for target in pipelines.TARGETS:
            load(layout, target)
        # the first build, as a first run of the platform has it: no forecast yet
        results = dbt(layout, "build")
        (path / "run_results.json").write_text(json.dumps(results))
        first = {"fct_forecasts_rows": _count(layout, "marts.fct_forecasts")}
        (path / "first_build.json").write_text(json.dumps(first))
        write_forecasts(layout)
        dbt(layout, "build", "--select", "path:models/marts/forecasting")
        DuckDbSnapshots(layout.warehouse, layout.root / "published").publish(build=rollups.builder(SEMANTIC_MANIFEST))
    return make


def _count(layout: DataLayout, table: str) -> int:
    import duckdb

    with duckdb.connect(str(layout.warehouse), read_only=True) as conn:
        return conn.execute(f"select count(*) from {table}").fetchone()[0]


@pytest.fixture(scope="session")
def built(tiny_sample, tmp_path_factory) -> tuple[DataLayout, dict]:
    """The tiny sample loaded, built (its first build's results), given forecasts, and published once,
    for read-only checks."""
    path = shared(tmp_path_factory, "built", _build(tiny_sample))
    return DataLayout(path / "data"), json.loads((path / "run_results.json").read_text())


@pytest.fixture(scope="session")
def published(built) -> DataLayout:
    """The built tiny sample with its published read snapshot (rollups included)."""
    return built[0]


@pytest.fixture(scope="session")
def main_run(tmp_path_factory) -> tuple[Path, str]:
    """The main job run once on the tiny sample as users run it (`python -m orchestration.main`);
    its data directory and output. Read-only: see `copy_of`."""
    from tests.orchestration.helpers import run_main_job

    def make(path: Path) -> None:
        out = run_main_job(path / "data")
        (path / "output.txt").write_text(out)

    path = shared(tmp_path_factory, "main-run", make)
    return path / "data", (path / "output.txt").read_text()


@pytest.fixture(scope="module")
def chromium():
    """Debian's Chromium, headless (reports/browser.py), for the pages people look at. One per
    module: Playwright's sync API runs an event loop in the worker's thread while it is open, and
    a test later in the session that starts its own (asyncio.run: asyncpg, the collector's harness)
    must not find one running."""
    from reports import browser

    with browser.chromium() as chromium:
        yield chromium


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL cluster (this worker's); the PG* variables that reach its database."""
    try:
        with cluster() as variables:
            yield variables
    except ClusterError as exc:
        pytest.fail(str(exc), pytrace=False)


def write_forecasts(layout: DataLayout, days: int = 28) -> None:
    """A stand-in for the forecasting assets' table (ml.forecast_daily), so that the forecast mart and
    its metrics have rows without training models: every tenant, the all-tenant series and each metric,
    with values that differ by tenant, metric and day, from the day after the sample's last."""
    import duckdb

    origin = SAMPLE_END.isoformat()
    with duckdb.connect(str(layout.warehouse)) as conn:
        conn.execute("create schema if not exists ml")
        conn.execute(f"""
            create or replace table ml.forecast_daily as
            with series as (
                select tenant_id, row_number() over (order by tenant_id) as n from raw_app.tenants
                union all select 'all', 0
            )
            select timestamp '{origin}' + to_days(cast(h as integer)) as forecast_date, tenant_id, metric,
                   100.0 * n + 10 * m + h as prediction, 90.0 * n + h as lower_80, 110.0 * n + 20 * m + h as upper_80,
                   80.0 * n + h as lower_95, 120.0 * n + 20 * m + h as upper_95, h as horizon,
                   timestamp '{origin}' as origin_date, 'forecast_' || metric as model_name,
                   '1 (champion)' as model_version, timestamp '{origin}' as created_at
            from series
            cross join range(1, {days + 1}) as horizons(h)
            cross join (values ('revenue', 1), ('orders', 2), ('active_users', 3), ('sessions', 4), ('errors', 5))
                as metrics(metric, m)
        """)
