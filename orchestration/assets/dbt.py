"""dbt models as assets and dbt tests as asset checks, from a manifest prepared ahead of time.

`make manifest` (or `dagster dev`, through `prepare_if_dev`) runs `dbt parse`; loading the code
location only reads `target/manifest.json`.
"""


import json
import os
import shutil
import time
from collections import Counter
from functools import cache
from pathlib import Path

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, DbtProject, dbt_assets

from orchestration.assets import dbt_in_process
from orchestration.assets.ingestion import WAREHOUSE_POOL
from orchestration.environment import DBT_PROJECT_DIR, current_environment, tool
from semantic.warehouse import UnsupportedTarget

# No target here: profiles.yml takes it from DBT_TARGET when dbt runs, as the rest of the run does
# (`Environment.dbt_target`), so the same definitions serve every target.
dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
dbt_project.prepare_if_dev()


class Translator(DagsterDbtTranslator):
    """How dbt's resources appear in Dagster.

    A source is the asset that writes its table, keyed by the table's schema and name (raw_app/orders,
    ml/forecast_daily): dbt names sources after the system they come from (`app`, the folder of its
    staging models), while the dlt and Python assets that load them know the schema they write.
    Models are grouped by their layer, the folder under models/ (staging, intermediate, marts). Their
    description is dbt's alone: dagster-dbt's default appends the SQL under a Markdown heading, and the
    SQL is reachable through the asset's code reference instead.
    """

    def get_asset_key(self, dbt_resource_props):
        if dbt_resource_props["resource_type"] == "source":
            return dg.AssetKey([dbt_resource_props["schema"], dbt_resource_props["name"]])
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props):
        path = Path(dbt_resource_props["original_file_path"]).parts
        if dbt_resource_props["resource_type"] == "model" and len(path) > 2 and path[0] == "models":
            return path[1]
        if dbt_resource_props["resource_type"] == "seed":  # a seed sits with the layer it is built into
            return dbt_resource_props["schema"]
        return super().get_group_name(dbt_resource_props)

    def get_description(self, dbt_resource_props):
        described = (dbt_resource_props.get("description") or "").strip()
        return described or f"dbt {dbt_resource_props['resource_type']} {dbt_resource_props['name']}"


TRANSLATOR = Translator(settings=DagsterDbtTranslatorSettings(enable_code_references=True))


def dbt_build_args(full_refresh: bool = False, unit_tests: bool = True) -> list[str]:
    """Arguments of the dbt invocation; kept pure so the choice is testable."""
    return ["build", *(["--full-refresh"] if full_refresh else []),
            *([] if unit_tests else ["--exclude-resource-type", "unit_test"])]


def summarize_run_results(run_results: dict) -> dict[str, int]:
    """Counts of dbt results by kind and status, unit tests included (they are not asset checks);
    exposures are left out: they are neither built nor tested (dbt reports each as a no-op), and so
    are the project's hooks (operations: on Spark, registering the sources)."""
    counts: Counter[str] = Counter()
    for result in run_results.get("results", []):
        kind = result["unique_id"].split(".")[0]
        if kind not in ("exposure", "operation"):
            counts[f"{kind}_{result['status']}"] += 1
    return dict(sorted(counts.items()))


def failures(run_results: dict, most: int = 5) -> list[str]:
    """The first failing nodes with dbt's message, for a run failure a person can act on."""
    bad = [r for r in run_results.get("results", []) if r["status"] in ("error", "fail")]
    return [f"{r['unique_id']}: {(r.get('message') or '').strip()}" for r in bad[:most]]


def _target_path(step: str) -> Path:
    """The step's own target folder, the same in every run, so that dbt parses only what changed.

    dagster-dbt gives each invocation a new folder seeded with `target/partial_parse.msgpack`, which
    dbt rejects here: `make manifest` parses without the run's `--target` and warehouse path. A
    micro-batch would then spend seconds re-parsing the whole project. Steps sharing a warehouse
    never run at once (its pool has one slot); results of an earlier build are removed, so a build
    that stops before writing its own cannot be read as it.
    """
    path = current_environment().dbt_state_dir / step
    (path / "run_results.json").unlink(missing_ok=True)
    _seed_partial_parse(path)
    return path


PARTIAL_PARSE = "partial_parse.msgpack"


def _seed_partial_parse(path: Path) -> None:
    """A step's first build in a data directory starts from the parse another step saved there.

    dbt reparses the whole project (10-15 s) when the profile it parsed with differs, and the
    warehouse's path is part of it: the project's own `target/` never matches a data directory, but
    the steps of one data directory share theirs. So the second dbt step of a first run, and every
    step of a new data directory after one of them ran, parse only what changed. dbt checks the
    copy as it checks its own (project files, variables, profile) and parses in full if it differs.
    """
    if (path / PARTIAL_PARSE).exists():
        return
    parsed = sorted(path.parent.glob(f"*/{PARTIAL_PARSE}"), key=lambda found: found.stat().st_mtime)
    if parsed:
        path.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(parsed[-1], path / PARTIAL_PARSE)


class DbtBuildConfig(dg.Config):
    full_refresh: bool = False
    # Unit tests check the models' SQL on fixed inputs, not the data: the batch and CI run them,
    # micro-batches (whose SQL does not change between runs) leave them out.
    unit_tests: bool = True
    # dbt in the run's own process, reusing its parsed manifest (`dbt_in_process.py`): for
    # micro-batches, run in the long-lived code server; the batch starts a dbt process per step.
    in_process: bool = False


# Marts built from the tables Python assets write (the forecasts, ml/forecast_daily; the insights,
# ml/insights; the experiment analysis, experiment_analysis/*) sit downstream of them, themselves
# downstream of the other marts, so they are a second dbt step in the same run (named for the first
# of them, the forecast marts).
AFTER_FORECASTS = ("path:models/marts/forecasting path:models/marts/experiments/analysis "
                  "path:models/marts/insights")


def _build(context: dg.AssetExecutionContext, dbt: DbtCliResource, config: DbtBuildConfig):
    """`dbt build` of the step's selection; its result counts go to data/dbt_results/<step>.json."""
    try:
        current_environment().warehouse_target.check_engine(os.environ)
    except UnsupportedTarget as exc:
        raise dg.Failure(description=str(exc)) from None
    args = dbt_build_args(config.full_refresh, config.unit_tests)
    target_path = _target_path(context.op_def.name)
    if config.in_process:
        run_results, successful = yield from _build_in_process(context, args, target_path)
        error = "dbt stopped before building any node (its messages are in the run's log)"
    else:
        invocation = dbt.cli(args, context=context, raise_on_error=False, target_path=target_path)
        yield from invocation.stream()
        # none when dbt stopped before running a node (a warehouse that would not start)
        done = invocation.target_path / "run_results.json"
        run_results = invocation.get_artifact("run_results.json") if done.exists() else {}
        successful = invocation.is_successful()
        error = None if successful else str(invocation.get_error())
    results = summarize_run_results(run_results)
    context.log.info(f"dbt results: {json.dumps(results)}")
    summary_dir = current_environment().dbt_results_dir
    summary_dir.mkdir(parents=True, exist_ok=True)
    (summary_dir / f"{context.op_def.name}.json").write_text(json.dumps(results, indent=2))
    if not successful:
        # no failed node when dbt stopped before building any (the warehouse would not start): dbt's own error
        why = failures(run_results) or [error]
        raise dg.Failure(description="dbt build failed:\n" + "\n".join(why), metadata=results)


def _build_in_process(context: dg.AssetExecutionContext, args: list[str], target_path: Path):
    """The selected models and tests built by dbt in this process (`dbt_in_process.py`); yields their
    events and returns dbt's run results and whether the build succeeded."""
    chosen = dbt_in_process.selection(context, _defined_manifest(), TRANSLATOR, dbt_project)

    def log(event) -> None:
        if event.info.name in ("LogModelResult", "LogTestResult") or event.info.level in ("warn", "error"):
            context.log.info(f"dbt: {event.info.msg}")

    started = time.perf_counter()
    invocation = dbt_in_process.runner(dbt_project.project_dir, dbt_project.profiles_dir).build(
        [*args, *chosen.args()], target_path, on_event=log)
    context.log.info(f"dbt build in this process took {time.perf_counter() - started:.2f} s"
                     f"{' (the project was parsed first)' if invocation.parsed else ''}")
    yield from dbt_in_process.events(invocation.run_results, chosen)
    return invocation.run_results, invocation.success


@cache
def _defined_manifest() -> dict:
    """The manifest the dbt assets were defined from (`make manifest`)."""
    return json.loads(dbt_project.manifest_path.read_text())


@dbt_assets(manifest=dbt_project.manifest_path, project=dbt_project, pool=WAREHOUSE_POOL, name="dbt_models",
            exclude=AFTER_FORECASTS, dagster_dbt_translator=TRANSLATOR)
def dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, config: DbtBuildConfig):
    yield from _build(context, dbt, config)


@dbt_assets(manifest=dbt_project.manifest_path, project=dbt_project, pool=WAREHOUSE_POOL,
            name="dbt_forecast_marts", select=AFTER_FORECASTS, dagster_dbt_translator=TRANSLATOR)
def dbt_forecast_marts(context: dg.AssetExecutionContext, dbt: DbtCliResource, config: DbtBuildConfig):
    yield from _build(context, dbt, config)


def dbt_resource() -> DbtCliResource:
    """dagster-dbt's dbt CLI resource, running the dbt installed with the platform."""
    return DbtCliResource(project_dir=dbt_project, dbt_executable=tool("dbt"))
