"""A run launcher that starts each run from a warm process: a micro-batch starts in about a second, not fifteen.

Dagster's default launcher has the code server spawn a new Python process per run, which imports
the whole code location again (dagster, dbt, dlt, pandas, ...) and then Great Expectations and
MetricFlow in the steps that use them. That is 10 to 20 s before and inside every run, most of a
micro-batch's time. This launcher keeps one warm process (`orchestration.warm_worker`) that
imported those modules once, and forks it per run. The forked process is `dagster api
execute_run` for that run, as in Dagster's other launchers, so the run, its events and its
retries are Dagster's own.

- The code on disk is what runs: the warm process is replaced when a source file or the dbt
  manifest has changed since it imported them (checked at each launch; it takes milliseconds).
- If the warm process cannot start (an import fails, or it started a thread, which makes forking
  unsafe), the run is launched the default way and the run's log says why.
- Termination and run monitoring go by the run process's pid, kept in the run's tags.

Configured in `orchestration/dagster.yaml` (`run_launcher`); `preload` lists the modules to import.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext, WorkerStatus
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import ConfigurableClassData, serialize_value

from orchestration import processes

PID_TAG = "warm_launcher/pid"
DEFAULT_PRELOAD = (
    "orchestration.definitions", "great_expectations", "semantic.rollups", "dbt.cli.main", "dbt.adapters.duckdb",
    # what a run process needs before its first step: Dagster's run command and the storage of the
    # default instance (SQLite), else imported anew by every run
    "dagster._cli.api", "dagster._core.storage.sqlite_storage", "dagster._core.storage.runs.sqlite",
    "dagster._core.storage.event_log.sqlite", "dagster._core.storage.schedules.sqlite",
)
REPO_ROOT = Path(__file__).resolve().parent.parent
# What the warm process has imported: the project's Python packages and the dbt manifest the code
# location reads. Tests, benchmarks and data are not imported by runs.
SOURCE_DIRS = ("orchestration", "ingestion", "expectations", "ml", "semantic")
MANIFEST = Path("dbt_project", "target", "manifest.json")


def source_fingerprint(root: Path | None = None) -> int:
    """The newest modification time of the sources a warm process imported (ns)."""
    root = root or REPO_ROOT
    manifest = root / MANIFEST
    newest = manifest.stat().st_mtime_ns if manifest.exists() else 0
    for name in SOURCE_DIRS:
        for folder, dirs, files in os.walk(root / name):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for file in files:
                if file.endswith(".py"):
                    newest = max(newest, os.stat(os.path.join(folder, file)).st_mtime_ns)
    return newest


class WarmProcess:
    """One `orchestration.warm_worker` process: start it, ask it to start runs, stop it."""

    def __init__(self, modules: Sequence[str], cwd: str | None, executable: str):
        self.fingerprint = source_fingerprint()
        self.process = subprocess.Popen(
            [executable, "-m", "orchestration.warm_worker", *modules], cwd=cwd, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, bufsize=1, start_new_session=True)
        answer = self.process.stdout.readline().strip()
        if not answer.startswith("ready "):
            self.stop()
            raise RuntimeError(answer.removeprefix("error ") or "the warm process exited while importing")
        self.dbt_socket = answer.removeprefix("ready ")

    def start_run(self, argument: str) -> int:
        self.process.stdin.write(json.dumps(argument) + "\n")
        answer = self.process.stdout.readline().split()
        if len(answer) != 2 or answer[0] != "started":
            raise RuntimeError(f"the warm process answered {' '.join(answer)!r} instead of a run's pid")
        return int(answer[1])

    @property
    def stale(self) -> bool:
        return self.process.poll() is not None or source_fingerprint() != self.fingerprint

    def stop(self) -> None:
        """Ask it to stop (it removes its dbt socket); runs and dbt commands it started go on."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process.wait()


class WarmRunLauncher(dg.DefaultRunLauncher):
    """Launches runs by forking a warm process of the code location (see the module's docstring)."""

    def __init__(self, inst_data: ConfigurableClassData | None = None, preload: Sequence[str] = DEFAULT_PRELOAD):
        super().__init__(inst_data=inst_data)
        self.preload = tuple(preload)
        self._warm: dict[tuple[str, str | None], WarmProcess] = {}
        self._lock = threading.Lock()

    @classmethod
    def config_type(cls):
        return {"preload": dg.Field([str], is_required=False, default_value=list(DEFAULT_PRELOAD))}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]):
        return cls(inst_data=inst_data, **config_value)

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        origin = run.job_code_origin
        if origin is None:
            return super().launch_run(context)
        argument = serialize_value(ExecuteRunArgs(job_origin=origin, run_id=run.run_id,
                                                  instance_ref=self._instance.get_ref(),
                                                  set_exit_code_on_failure=True))
        key = (origin.executable_path, getattr(origin.get_repo_pointer(), "working_directory", None))
        try:
            with self._lock:
                pid = self._warm_process(key).start_run(argument)
        except (RuntimeError, OSError) as exc:
            self._instance.report_engine_event(
                f"Warm launch unavailable ({exc}); launching the run in a new process instead.", run,
                cls=self.__class__)
            return super().launch_run(context)
        self._instance.add_run_tags(run.run_id, {PID_TAG: str(pid)})
        self._run_ids.add(run.run_id)

    def _warm_process(self, key: tuple[str, str | None]) -> WarmProcess:
        warm = self._warm.get(key)
        if warm is not None and warm.stale:
            warm.stop()
            warm = None
        if warm is None:
            warm = self._warm[key] = WarmProcess(self.preload, cwd=key[1], executable=key[0])
        return warm

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if not run or run.is_finished or PID_TAG not in run.tags:
            return super().terminate(run_id)
        self._instance.report_run_canceling(run)
        try:
            os.kill(int(run.tags[PID_TAG]), signal.SIGINT)  # the run process turns it into a cancelled run
        except ProcessLookupError:
            return False
        return True

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        pid = run.tags.get(PID_TAG)
        if pid is None:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "not launched by a warm process")
        if processes.alive(int(pid)):
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=pid)
        return CheckRunHealthResult(WorkerStatus.FAILED, f"run process {pid} is gone", run_worker_id=pid)

    def dispose(self) -> None:
        with self._lock:
            for warm in self._warm.values():
                warm.stop()
            self._warm.clear()
        super().dispose()
