"""dbt fixtures: the dbt CLI against a test warehouse, and the tiny sample built once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from ingestion import pipelines
from ingestion.paths import DataLayout
from tests.conftest import REPO_ROOT
from tests.ingestion.helpers import load

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


@pytest.fixture(scope="session")
def built(tiny_sample, tmp_path_factory):
    """The tiny sample loaded and built once, for read-only checks."""
    layout = DataLayout(tmp_path_factory.mktemp("built") / "data")
    shutil.copytree(tiny_sample.root, layout.root)
    for target in pipelines.TARGETS:
        load(layout, target)
    results = dbt(layout, "build")
    return layout, results
