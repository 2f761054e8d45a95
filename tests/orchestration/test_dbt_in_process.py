"""dbt in the micro-batch's process (`orchestration/assets/dbt_in_process.py`): when its kept
manifest is parsed again. The in-process build itself runs in every micro-batch of
test_microbatch.py, whose runs must record the same materializations and checks as before."""

from __future__ import annotations

import os

from orchestration.assets.dbt_in_process import project_fingerprint


def test_the_manifest_is_parsed_again_when_the_project_or_its_environment_changes(tmp_path, monkeypatch):
    project = tmp_path / "dbt_project"
    for name in ("dbt_project.yml", "profiles.yml", "models/marts/fct.sql", "target/manifest.json", "logs/dbt.log"):
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text("select 1")
    monkeypatch.setenv("PLATFORM_WAREHOUSE", "a.duckdb")
    first = project_fingerprint(project)
    assert project_fingerprint(project) == first
    # what dbt writes is not the project
    (project / "target" / "run_results.json").write_text("{}")
    (project / "logs" / "dbt.log").write_text("more")
    assert project_fingerprint(project) == first
    # a changed model, a new file, another warehouse: parse again
    os.utime(project / "models/marts/fct.sql", ns=(1, 1))
    changed = project_fingerprint(project)
    assert changed != first
    (project / "models/marts/new.sql").write_text("select 2")
    assert project_fingerprint(project) != changed
    added = project_fingerprint(project)
    monkeypatch.setenv("PLATFORM_WAREHOUSE", "b.duckdb")
    assert project_fingerprint(project) != added
