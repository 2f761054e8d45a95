"""A malformed experiment registry stops the build with the experiment and the key at fault."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DBT_DIR

REGISTRY = "models/marts/experiments/experiments.yml"


@pytest.mark.parametrize(("old", "new", "message"), [
    ("            variants: {control: 50, treatment: 50}\n          - experiment_id: exp_03",
     "            variants: [control, treatment]\n          - experiment_id: exp_03",
     "meta.experiments[1] (exp_02): variants must map each variant name to its traffic weight"),
])
def test_a_malformed_registry_entry_is_named_at_build(tmp_path, old, new, message):
    project = tmp_path / "dbt_project"
    shutil.copytree(DBT_DIR, project, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    registry = project / REGISTRY
    text = registry.read_text()
    assert text.count(old) == 1
    registry.write_text(text.replace(old, new))
    env = {**os.environ, "PLATFORM_WAREHOUSE": str(tmp_path / "warehouse.duckdb"), "DBT_TARGET": "duckdb"}
    dbt = shutil.which("dbt", path=str(Path(sys.executable).parent)) or "dbt"  # the platform's, even off PATH
    proc = subprocess.run([dbt, "compile", "--select", "dim_experiments", "--project-dir", str(project),
                           "--profiles-dir", str(project)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert message in proc.stdout, proc.stdout[-3000:]
