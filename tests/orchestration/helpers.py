"""Run the platform's jobs in tests: as users do (`python -m orchestration.main`, its own process),
or in the test's process where the process itself is not what is tested (it saves the imports)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from ingestion.paths import DataLayout
from orchestration.environment import Environment, current_environment
from tests.conftest import REPO_ROOT
from tests.ingestion.helpers import query, scalar

REPORTS_SITE = dg.AssetKey(["reports", "site"])
PUBLISHED = dg.AssetKey("published_warehouse")


def main_job(data_dir: Path, extra_env: dict[str, str] | None = None, job: str = "batch_job",
             **popen) -> subprocess.Popen:
    env = {**os.environ, "PLATFORM_DATA_DIR": str(data_dir), "PLATFORM_SAMPLE_SIZE": "tiny", **(extra_env or {})}
    env.pop("DAGSTER_HOME", None)
    return subprocess.Popen([sys.executable, "-m", "orchestration.main", "--job", job], cwd=REPO_ROOT, env=env,
                            text=True, **popen)


def run_main_job(data_dir: Path, extra_env: dict[str, str] | None = None, expect_success: bool = True,
                 job: str = "batch_job") -> str:
    proc = main_job(data_dir, extra_env, job, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = proc.communicate(timeout=600)
    assert (proc.returncode == 0) == expect_success, out[-5000:]
    return out


@contextlib.contextmanager
def platform_environment(data_dir: Path, extra_env: dict[str, str] | None = None) -> Iterator[Environment]:
    """This process's environment pointed at `data_dir` (as `main_job` sets a child's), then restored."""
    saved = dict(os.environ)
    os.environ.update({"PLATFORM_DATA_DIR": str(data_dir), "PLATFORM_SAMPLE_SIZE": "tiny", **(extra_env or {})})
    os.environ.pop("DAGSTER_HOME", None)
    current_environment.cache_clear()
    try:
        yield current_environment()
    finally:
        os.environ.clear()
        os.environ.update(saved)
        current_environment.cache_clear()


def run_in_process(data_dir: Path, extra_env: dict[str, str] | None = None, expect_success: bool = True,
                   job: str = "batch_job", site: bool = False, assets: list[dg.AssetKey] | None = None) -> str:
    """A job run in this process, recorded in the data directory's instance as `make run` records
    it; its summary. The reports site (a minute of Evidence build) is left out unless `site`;
    `assets` runs only those assets of the job."""
    from orchestration import main
    from orchestration.definitions import defs

    with platform_environment(data_dir, extra_env) as env:
        started = time.perf_counter()
        selection = assets
        keys = next(defined for defined in defs.jobs if defined.name == job).selection.resolve(
            defs.resolve_asset_graph())
        if selection is None and not site and REPORTS_SITE in keys:
            selection = sorted(keys - {REPORTS_SITE}, key=lambda key: key.to_user_string())
        result = main.run_job(env, job, asset_selection=selection)
        out = main.summary(env, result, time.perf_counter() - started)
    assert result.success == expect_success, out[-5000:]
    return out


def without_forecasts(job: str = "batch_job", publish: bool = True) -> list[dg.AssetKey]:
    """The job's assets but the forecasts and insights (`ml/` and the marts built from them) and the
    reports site: the part of a run that loaded rows go through, from the sources to the published
    snapshot (or to the marts: publishing needs the forecasts of an earlier run), for tests about
    those rows (a tenth of a tiny run's time is the forecasts')."""
    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = next(defined for defined in defs.jobs if defined.name == job).selection.resolve(graph)
    forecasts = dg.AssetSelection.groups("ml").downstream().resolve(graph) - ({PUBLISHED} if publish else set())
    return sorted(keys - forecasts - {REPORTS_SITE}, key=lambda key: key.to_user_string())


def mart_counts(layout: DataLayout) -> dict[str, int]:
    tables = [t for (t,) in query(layout, "select table_name from information_schema.tables "
                                          "where table_schema = 'marts' order by 1")]
    return {t: scalar(layout, f"select count(*) from marts.{t}") for t in tables}
