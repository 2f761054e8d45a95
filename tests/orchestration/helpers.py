"""Run the main job as users do (`python -m orchestration.main`) in its own process and data dir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ingestion.paths import DataLayout
from tests.conftest import REPO_ROOT
from tests.ingestion.helpers import query, scalar


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


def mart_counts(layout: DataLayout) -> dict[str, int]:
    tables = [t for (t,) in query(layout, "select table_name from information_schema.tables "
                                          "where table_schema = 'marts' order by 1")]
    return {t: scalar(layout, f"select count(*) from marts.{t}") for t in tables}
