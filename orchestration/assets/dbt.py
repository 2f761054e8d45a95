"""dbt models as assets and dbt tests as asset checks, from a manifest prepared ahead of time.

`make manifest` (or `dagster dev`, through `prepare_if_dev`) runs `dbt parse`; loading the code
location only reads `target/manifest.json`.
"""


import json
from collections import Counter
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource, DbtProject, dbt_assets

from orchestration.assets.ingestion import WAREHOUSE_POOL
from orchestration.environment import DBT_PROJECT_DIR, current_environment

dbt_project = DbtProject(
    project_dir=DBT_PROJECT_DIR,
    profiles_dir=DBT_PROJECT_DIR,
    target=current_environment().dbt_target,
)
dbt_project.prepare_if_dev()


def dbt_build_args(full_refresh: bool = False) -> list[str]:
    """Arguments of the dbt invocation; kept pure so the choice is testable."""
    return ["build", *(["--full-refresh"] if full_refresh else [])]


def summarize_run_results(run_results: dict) -> dict[str, int]:
    """Counts of dbt results by kind and status, unit tests included (they are not asset checks)."""
    counts: Counter[str] = Counter()
    for result in run_results.get("results", []):
        kind = result["unique_id"].split(".")[0]
        counts[f"{kind}_{result['status']}"] += 1
    return dict(sorted(counts.items()))


def failures(run_results: dict, most: int = 5) -> list[str]:
    """The first failing nodes with dbt's message, for a run failure a person can act on."""
    bad = [r for r in run_results.get("results", []) if r["status"] in ("error", "fail")]
    return [f"{r['unique_id']}: {(r.get('message') or '').strip()}" for r in bad[:most]]


class DbtBuildConfig(dg.Config):
    full_refresh: bool = False


@dbt_assets(manifest=dbt_project.manifest_path, project=dbt_project, pool=WAREHOUSE_POOL, name="dbt_models")
def dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, config: DbtBuildConfig):
    invocation = dbt.cli(dbt_build_args(config.full_refresh), context=context, raise_on_error=False)
    yield from invocation.stream()
    run_results = invocation.get_artifact("run_results.json")
    results = summarize_run_results(run_results)
    context.log.info(f"dbt results: {json.dumps(results)}")
    summary_path = Path(current_environment().data_dir) / "dbt_last_run_results.json"
    summary_path.write_text(json.dumps(results, indent=2))
    if not invocation.is_successful():
        raise dg.Failure(description="dbt build failed:\n" + "\n".join(failures(run_results)), metadata=results)


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(project_dir=dbt_project, target=current_environment().dbt_target)
