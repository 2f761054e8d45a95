"""dbt run inside the long-lived process that runs micro-batches, with dbt's public `dbtRunner`,
reusing one parsed manifest.

Through dagster-dbt's `DbtCliResource`, every micro-batch's dbt step starts a `dbt` process, which
imports dbt and its adapter and loads the project before it builds three small models: most of a
micro-batch's time. The Dagster code server that runs micro-batches (`orchestration/microbatch.py`)
lives on between them, so dbt runs in it here: the first run parses the project, later runs hand
that manifest to `dbtRunner(manifest=...)` and only build. dagster-dbt has no in-process mode, so
the step's Dagster events are made here from dbt's run results: a `MaterializeResult` per model
built, an `AssetCheckResult` per test whose check is selected, keyed by the translator as
dagster-dbt keys them.

dbt's runner keeps process-wide state (flags, the adapter, its event manager) and is not
thread-safe: one invocation at a time runs, under a lock. The manifest is parsed again whenever the
project's files or the environment variables dbt reads (DBT_*, PLATFORM_*, PG*) change.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import dagster as dg

# What dbt reads besides its files: profiles.yml's env_var() calls.
ENV_PREFIXES = ("DBT_", "PLATFORM_", "PG")
# Folders of the project that dbt writes, not reads.
WRITTEN = {"target", "logs", "dbt_packages"}


def project_fingerprint(project_dir: Path) -> tuple:
    """What a parse depends on: every file dbt reads (path, size, modification time) and the
    environment variables it may read. Cheap enough to take before every run."""
    files = []
    for root, dirs, names in os.walk(project_dir):
        if Path(root) == project_dir:
            dirs[:] = [d for d in dirs if d not in WRITTEN]
        for name in names:
            stat = os.stat(os.path.join(root, name))
            files.append((os.path.join(root, name), stat.st_size, stat.st_mtime_ns))
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)))
    return tuple(sorted(files)), env


@dataclass(frozen=True)
class Invocation:
    """A finished `dbt build`: whether it succeeded, and its run results (run_results.json)."""

    success: bool
    run_results: dict
    parsed: bool  # whether this invocation parsed the project first


class InProcessDbt:
    """One project's dbt, run in this process; the parsed manifest is kept between invocations."""

    def __init__(self, project_dir: Path, profiles_dir: Path):
        self.project_dir, self.profiles_dir = project_dir, profiles_dir
        self._lock = threading.Lock()
        self._manifest = None
        self._fingerprint: tuple | None = None

    def _common(self, target_path: Path) -> list[str]:
        return ["--project-dir", str(self.project_dir), "--profiles-dir", str(self.profiles_dir),
                "--target-path", str(target_path), "--log-path", str(target_path)]

    def build(self, args: list[str], target_path: Path, on_event=None) -> Invocation:
        """`dbt <args>` (a build) with the project's current manifest (parsed first if the project or
        its environment changed); `on_event` receives each of dbt's events."""
        from dbt.cli.main import dbtRunner  # dbt: imported by the runs that build, not by every import

        with self._lock:
            fingerprint, parsed = project_fingerprint(self.project_dir), False
            if self._manifest is None or fingerprint != self._fingerprint:
                result = dbtRunner().invoke(["parse", "--quiet", *self._common(target_path)])
                if not result.success:
                    raise dg.Failure(description=f"dbt parse failed: {result.exception}")
                self._manifest, self._fingerprint, parsed = result.result, fingerprint, True
            (target_path / "run_results.json").unlink(missing_ok=True)
            try:
                result = dbtRunner(manifest=self._manifest, callbacks=[on_event] if on_event else []).invoke(
                    [*args, "--quiet", *self._common(target_path)])
            finally:
                release_duckdb()
            if result.exception is not None and not (target_path / "run_results.json").exists():
                raise dg.Failure(description=f"dbt build failed: {result.exception}")
            run_results = json.loads((target_path / "run_results.json").read_text())
            return Invocation(result.success, run_results, parsed)


def release_duckdb() -> None:
    """Close the DuckDB database dbt-duckdb keeps open after a run (its `keep_open`, for the next
    run of the same process): the run's next steps open the same file in this process (dlt, the
    publisher), which DuckDB refuses while another instance holds it."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # another target's adapter
        return
    try:
        environment = DuckDBConnectionManager.env()
    except Exception:  # dbt-duckdb raises a bare Exception when nothing was opened yet
        return
    environment.close()
    DuckDBConnectionManager.close_all_connections()


@cache
def runner(project_dir: Path, profiles_dir: Path) -> InProcessDbt:
    """The process's one runner of a project (dbt's state is process-wide)."""
    return InProcessDbt(project_dir, profiles_dir)


@dataclass(frozen=True)
class Selection:
    """The dbt nodes of a step's selected assets and checks, and how their results map back."""

    models: dict[str, dg.AssetKey]  # dbt unique_id -> asset key
    tests: dict[str, dg.AssetCheckKey]  # dbt unique_id -> asset check key
    fqns: list[str]

    def args(self) -> list[str]:
        """dbt's selection: exactly these nodes (no test pulled in by its model)."""
        return ["--select", " ".join(self.fqns), "--indirect-selection", "empty"]


def selection(context: dg.AssetExecutionContext, manifest: Mapping[str, Any], translator, project) -> Selection:
    """The selected models and tests, found in the manifest the assets were defined from, with the
    keys the translator gives them."""
    assets_def = context.assets_def
    nodes = manifest["nodes"]
    keys = {uid: translator.get_asset_key(node) for uid, node in nodes.items() if node["resource_type"] == "model"}
    models = {uid: key for uid, key in keys.items() if key in context.selected_asset_keys}
    tests = {}
    for uid, node in nodes.items():
        attached = node.get("attached_node") if node["resource_type"] == "test" else None
        if attached not in keys or keys[attached] not in assets_def.keys:
            continue
        spec = translator.get_asset_check_spec(assets_def.get_asset_spec(keys[attached]), manifest, uid, project)
        if spec is not None and spec.key in context.selected_asset_check_keys:
            tests[uid] = spec.key
    fqns = ["fqn:" + ".".join(nodes[uid]["fqn"]) for uid in [*models, *tests]]
    return Selection(models, tests, fqns)


def events(run_results: dict, chosen: Selection) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Dagster's events for dbt's results: each model built, each selected test's outcome."""
    for result in run_results.get("results", []):
        uid, status = result["unique_id"], result["status"]
        metadata = {"unique_id": uid, "status": status, "execution_duration": round(result["execution_time"], 3)}
        if uid in chosen.models and status == "success":
            rows = (result.get("adapter_response") or {}).get("rows_affected")
            yield dg.MaterializeResult(asset_key=chosen.models[uid],
                                       metadata={**metadata, **({"rows_affected": rows} if rows is not None else {})})
        elif uid in chosen.tests and status in ("pass", "warn", "fail"):
            key = chosen.tests[uid]
            yield dg.AssetCheckResult(
                asset_key=key.asset_key, check_name=key.name, passed=status == "pass",
                severity=dg.AssetCheckSeverity.WARN if status == "warn" else dg.AssetCheckSeverity.ERROR,
                metadata={**metadata, "failures": result.get("failures") or 0},
                description=(result.get("message") or "").strip() or None)
