"""The main job from the command line: `python -m orchestration.main` (what `make run` calls).

Runs the batch job (every asset; `--job` names another) as one Dagster run recorded in
`data/dagster`, so the run shows in the UI afterwards, then prints a summary: rows per mart, dbt
tests passed and failed, and where the warehouse and the UI are.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from expectations.runner import data_docs_index
from orchestration import processes
from orchestration.environment import REPO_ROOT, Environment, current_environment
from semantic.warehouse import UnsupportedTarget

MARTS_SCHEMA = "marts"
# Tags that let a later run of this runner tell whether a started run's process still lives.
HOST_TAG, PID_TAG = "platform/host", "platform/pid"
# Dagster's UI lists a job's runs on the job's page by this tag ("repository@code location"), which
# Dagster writes itself only on runs created from a code location (the UI, `dagster job launch`, the
# daemon). This runner executes its run in its own process, so that Ctrl-C or a kill stops it and its
# memory is its own process tree's; it writes the same tag, for the code location workspace.yaml
# declares, so the run shows on the job's page. Launching from the code location instead was measured
# at 8-20 s more per run, with a guard process to keep Ctrl-C working. The tag is a convention of
# Dagster's, not an API: tests/orchestration/test_job_page.py asks a real webserver with the UI's own
# query, so an upgrade that changes it fails there (the run would still show on the Runs page).
JOB_PAGE_TAG = ".dagster/repository"
WORKSPACE = REPO_ROOT / "workspace.yaml"


def ensure_dagster_home(env: Environment) -> Path:
    """Point DAGSTER_HOME at data/dagster with the project's instance settings."""
    home = env.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        shutil.copy(Path(__file__).with_name("dagster.yaml"), config)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def code_location() -> str:
    """The name of the code location workspace.yaml declares (what `make dev` and the UI load)."""
    import yaml

    (entry,) = yaml.safe_load(WORKSPACE.read_text())["load_from"]
    (target,) = entry.values()
    return target.get("location_name") or target["module_name"]


def recover_abandoned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Fail the runs this runner started whose process is gone, and free their pool slots.

    A run killed mid-step (kill -9, a closed laptop) stays "started" and keeps its slot in the
    `warehouse` pool, which would make every later run wait forever for it.
    """
    host = socket.gethostname()
    abandoned = []
    started = dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING],
                            tags={HOST_TAG: host})
    for record in instance.get_run_records(filters=started):
        run = record.dagster_run
        pid = int(run.tags.get(PID_TAG, "0"))
        if pid and not processes.alive(pid):
            instance.report_run_failed(run, f"the process that ran it ({host}:{pid}) is gone")
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
            abandoned.append(run.run_id)
    return abandoned


def run_job(env: Environment, job_name: str = "batch_job",
            asset_selection: Sequence[dg.AssetKey] | None = None) -> dg.ExecuteInProcessResult:
    """One run of the job (or of the given assets of it) in this process, recorded in the instance."""
    ensure_dagster_home(env)
    from orchestration.definitions import defs  # after DAGSTER_HOME and the environment are set

    job = defs.resolve_job_def(job_name)
    with dg.DagsterInstance.get() as instance:
        for run_id in recover_abandoned_runs(instance):
            print(f"marked abandoned run {run_id} as failed and freed its warehouse slot")
        return job.execute_in_process(
            instance=instance,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
            tags={HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid()),
                  JOB_PAGE_TAG: f"{defs.get_repository_def().name}@{code_location()}"},
            asset_selection=asset_selection,
        )


def mart_row_counts(env: Environment) -> dict[str, int]:
    with env.warehouse() as warehouse:
        tables = warehouse.rows("select table_name from information_schema.tables where table_schema = ? order by 1",
                                [MARTS_SCHEMA])
        return {table: warehouse.rows(f'select count(*) from "{MARTS_SCHEMA}"."{table}"')[0][0]
                for (table,) in tables}


def check_counts(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, int]]:
    """Passed and failed asset checks, quality gates (by severity) apart from dbt's data tests.
    The delivery checks of the distribution jobs are neither: their own lines report them."""
    from orchestration.assets.distribution import ALL_DELIVERED

    counts = {"dbt": {"passed": 0, "failed": 0}, "quality": {"passed": 0, "failed": 0, "warned": 0}}
    for evaluation in result.get_asset_check_evaluations():
        if evaluation.check_name == ALL_DELIVERED:
            continue
        kind = "quality" if "suite" in evaluation.metadata else "dbt"
        if evaluation.passed:
            counts[kind]["passed"] += 1
        elif kind == "quality" and evaluation.severity == dg.AssetCheckSeverity.WARN:
            counts[kind]["warned"] += 1
        else:
            counts[kind]["failed"] += 1
    return counts


def summary(env: Environment, result: dg.ExecuteInProcessResult, seconds: float) -> str:
    lines = [f"{result.job_def.name} run {result.run_id}: {'SUCCESS' if result.success else 'FAILED'} "
             f"in {seconds:.0f} s"]
    if result.success:
        lines.append("marts (rows):")
        counts = mart_row_counts(env)
        width = max(map(len, counts), default=0)
        lines += [f"  {name:<{width}} {count:>10,}" for name, count in counts.items()]
    checks = check_counts(result)
    quality = checks["quality"]
    if sum(checks["dbt"].values()) + sum(quality.values()):  # the distribution jobs run neither
        lines.append(f"asset checks (dbt data tests): {checks['dbt']['passed']} passed, "
                     f"{checks['dbt']['failed']} failed")
        lines.append(f"quality gates (Great Expectations): {quality['passed']} passed, {quality['failed']} failed, "
                     f"{quality['warned']} warned; Data Docs: {data_docs_index(env.quality_dir)}")
        lines += [f"  {line}" for line in quality_problems(result)]
    for step_results in sorted(env.dbt_results_dir.glob("*.json")):
        if step_results.stat().st_mtime >= time.time() - seconds:  # written by this run
            lines.append(f"dbt results by kind ({step_results.stem}): {json.loads(step_results.read_text())}")
    lines += forecasting_lines(env, result)
    lines += distribution_lines(result)
    from orchestration.definitions import UNSUPPORTED_STEPS

    try:
        published = env.publication().current()
    except UnsupportedTarget:
        published = None
    if published is not None:
        lines.append(f"published for readers: data version {published.version} ({published.location})")
    lines += [f"not run on {env.dbt_target}: {step}: {why}" for step, why in UNSUPPORTED_STEPS.items()]
    site_index = env.reports_site_dir / "index.html"
    if site_index.exists() and site_index.stat().st_mtime >= time.time() - seconds:  # built by this run
        lines.append(f"reports (Evidence): {env.reports_site_dir}; open them with `make serve-reports`, "
                     "then http://127.0.0.1:3100/")
    lines += [
        f"warehouse ({env.dbt_target}): {env.warehouse_location}",
        f"Dagster UI: `make dev`, then http://127.0.0.1:3000 (runs are stored in {env.dagster_home})",
    ]
    lines += [f"FAILED step {step}: {why}" for step, why in step_failures(result)]
    return "\n".join(lines)


def forecasting_lines(env: Environment, result: dg.ExecuteInProcessResult) -> list[str]:
    """What the forecasting assets did: promotion decisions, rows written, insights found."""
    from orchestration.assets.ml import FORECAST_KEY, INSIGHTS_KEY, MODELS_KEY

    metadata = {event.asset_key: {k: v.value for k, v in event.materialization.metadata.items()}
                for event in result.get_asset_materialization_events()}
    # a step the target does not run is a stand-in that says so (definitions.py): no figures of its own
    metadata = {key: values for key, values in metadata.items() if "not run" not in values}
    lines = []
    if MODELS_KEY in metadata:
        models = metadata[MODELS_KEY]
        lines.append(f"forecasting models (MLflow {models['tracking_uri']}; `make mlflow-ui` to browse):")
        lines += [f"  {key.removesuffix('_promotion')}: version {models[key.replace('_promotion', '_version')]}, "
                  f"{value}" for key, value in models.items() if key.endswith("_promotion")]
    if FORECAST_KEY in metadata:
        lines.append(f"forecasts: {metadata[FORECAST_KEY]['rows']:,} rows in ml.forecast_daily")
    if INSIGHTS_KEY in metadata:
        found = metadata[INSIGHTS_KEY]
        kinds = {k: v for k, v in found.items() if k.startswith(("anomaly", "trend", "change"))}
        lines.append(f"insights: {found['rows']} in ml.insights {kinds}; {found.get('driver_rows', 0)} drivers, "
                     f"{found.get('correlations', 0)} lead/lag relationships (found in "
                     f"{found.get('seconds_finding')} s, explained in {found.get('seconds_explaining')} s)")
        if "ground_truth_precision" in found:
            lines.append(f"  anomalies against the sample's ground truth: precision "
                         f"{found['ground_truth_precision']:.2f}, recall {found['ground_truth_recall']:.2f}")
    return lines


def distribution_lines(result: dg.ExecuteInProcessResult) -> list[str]:
    """Where the report's exports went and how each delivery ended (the distribution jobs)."""
    from orchestration.assets.distribution import ALERTS_KEY, DISTRIBUTION_KEY

    lines = []
    for event in result.get_asset_materialization_events():
        metadata = {k: v.value for k, v in event.materialization.metadata.items()}
        if event.asset_key == DISTRIBUTION_KEY:
            lines.append(f"report exports (data version {metadata['data_version']}): {metadata['path']}; "
                         f"PDFs: {metadata['pdfs'] or 'none'}")
            lines += [f"  {number}" for number in metadata["headline"].split("; ") if number]
        if event.asset_key in (DISTRIBUTION_KEY, ALERTS_KEY):
            lines.append(f"deliveries ({event.asset_key.to_user_string()}):")
            lines += [f"  {line.removeprefix('- ')}" for line in metadata["deliveries"].splitlines()]
    return lines


def quality_problems(result: dg.ExecuteInProcessResult) -> list[str]:
    """The message of every quality check that failed or warned: expectation, observed, expected."""
    return [evaluation.description for evaluation in result.get_asset_check_evaluations()
            if "suite" in evaluation.metadata and not evaluation.passed and evaluation.description]


def step_failures(result: dg.ExecuteInProcessResult) -> list[tuple[str, str]]:
    """Each failed step with the reason it gave (a Failure's description, else the error)."""
    found = []
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            why = data.user_failure_data.description if data.user_failure_data else data.error.message
            found.append((event.step_key, (why or "").strip()))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description="Run a job of the code location as one recorded Dagster run.")
    parser.add_argument("--job", default="batch_job",
                        help="batch_job (the default: everything), daily_job, retrain_job, events_microbatch_job "
                        "(load the closed landing files and refresh the real-time marts, as the sensor does), "
                        "report_distribution_job (PDFs, datasets, email, webhook) or insight_alerts_job")
    args = parser.parse_args()
    env = current_environment()
    started = time.perf_counter()
    result = run_job(env, args.job)
    print(summary(env, result, time.perf_counter() - started))
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
