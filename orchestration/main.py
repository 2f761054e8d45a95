"""The main job from the command line: `python -m orchestration.main` (what `make run` calls).

Runs the batch job (every asset) as one Dagster run recorded in `data/dagster`, so the run shows
in the UI afterwards, then prints a summary: rows per mart, dbt tests passed and failed, and
where the warehouse and the UI are.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb

from orchestration.environment import Environment, current_environment

MARTS_SCHEMA = "marts"


def ensure_dagster_home(env: Environment) -> Path:
    """Point DAGSTER_HOME at data/dagster with the project's instance settings."""
    home = env.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        shutil.copy(Path(__file__).with_name("dagster.yaml"), config)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def run_batch(env: Environment) -> dg.ExecuteInProcessResult:
    ensure_dagster_home(env)
    from orchestration.definitions import defs  # after DAGSTER_HOME and the environment are set

    job = defs.resolve_job_def("batch_job")
    with dg.DagsterInstance.get() as instance:
        return job.execute_in_process(
            instance=instance,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
        )


def mart_row_counts(warehouse: Path) -> dict[str, int]:
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        tables = conn.execute(
            "select table_name from information_schema.tables where table_schema = ? order by 1", [MARTS_SCHEMA]
        ).fetchall()
        return {t: conn.execute(f'select count(*) from "{MARTS_SCHEMA}"."{t}"').fetchone()[0] for (t,) in tables}


def check_counts(result: dg.ExecuteInProcessResult) -> dict[str, int]:
    evaluations = result.get_asset_check_evaluations()
    passed = sum(e.passed for e in evaluations)
    return {"passed": passed, "failed": len(evaluations) - passed}


def summary(env: Environment, result: dg.ExecuteInProcessResult, seconds: float) -> str:
    lines = [f"batch run {result.run_id}: {'SUCCESS' if result.success else 'FAILED'} in {seconds:.0f} s"]
    if env.layout.warehouse.exists():
        lines.append("marts (rows):")
        lines += [f"  {name:<22} {count:>10,}" for name, count in mart_row_counts(env.layout.warehouse).items()]
    checks = check_counts(result)
    lines.append(f"dbt data tests (asset checks): {checks['passed']} passed, {checks['failed']} failed")
    dbt_results = env.data_dir / "dbt_last_run_results.json"
    if dbt_results.exists():
        lines.append(f"dbt results by kind: {json.loads(dbt_results.read_text())}")
    lines += [
        f"warehouse: {env.layout.warehouse}",
        f"Dagster UI: `make dev`, then http://127.0.0.1:3000 (runs are stored in {env.dagster_home})",
    ]
    if not result.success:
        failed = [e.step_key for e in result.all_events if e.is_step_failure]
        lines.append(f"failed steps: {failed}")
    return "\n".join(lines)


def main() -> int:
    env = current_environment()
    started = time.perf_counter()
    result = run_batch(env)
    print(summary(env, result, time.perf_counter() - started))
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
