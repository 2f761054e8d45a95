"""The warm run launcher, on a real Dagster instance: runs are forked from a warm process and are
Dagster's own (events, status, cancellation, monitoring); a change on disk replaces the warm
process; a warm process that cannot start says why. dbt commands run in forks of it too, and
the dbt executable is plain dbt where no warm process listens."""

import os
import signal
import subprocess
import sys
import time

import dagster as dg
import pytest
from dagster._core.launcher import LaunchRunContext, WorkerStatus
from dbt.version import __version__ as dbt_version

from orchestration import warm_dbt, warm_launcher
from orchestration.assets.dbt import DBT_EXECUTABLE
from orchestration.warm_launcher import PID_TAG, WarmProcess
from tests.orchestration import warm_jobs

LAUNCHER = {"module": "orchestration.warm_launcher", "class": "WarmRunLauncher",
            "config": {"preload": ["tests.orchestration.warm_jobs"]}}


@pytest.fixture
def instance():
    with dg.instance_for_test(overrides={"run_launcher": LAUNCHER}) as instance:
        yield instance


def launch(instance: dg.DagsterInstance, job: dg.JobDefinition, run_config: dict | None = None) -> str:
    run = instance.create_run_for_job(job_def=job, run_config=run_config,
                                      job_code_origin=dg.reconstructable(job).get_python_origin())
    instance.run_launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
    return run.run_id


def wait_for(instance: dg.DagsterInstance, run_id: str, done, timeout: float = 120) -> dg.DagsterRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = instance.get_run_by_id(run_id)
        if done(run):
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} still {instance.get_run_by_id(run_id).status} after {timeout} s")


def finished(run: dg.DagsterRun) -> bool:
    return run.is_finished


def warm_pids(instance: dg.DagsterInstance) -> list[int]:
    return [warm.process.pid for warm in instance.run_launcher._warm.values()]


def test_runs_are_forked_from_one_warm_process_and_succeed(instance, tmp_path):
    ran_in = []
    for number in range(2):
        out = tmp_path / f"pid-{number}"
        run_id = launch(instance, warm_jobs.report_job, {"ops": {"report_process": {"config": {"out": str(out)}}}})
        run = wait_for(instance, run_id, finished)
        assert run.status == dg.DagsterRunStatus.SUCCESS, run.status
        ran_in.append(int(out.read_text()))
        assert int(run.tags[PID_TAG]) == ran_in[-1]  # the tag names the process that ran it
        starts = [e for e in instance.all_logs(run_id) if e.dagster_event_type == dg.DagsterEventType.RUN_START]
        assert len(starts) == 1
    [warm] = warm_pids(instance)
    assert len(set(ran_in)) == 2 and warm not in ran_in and os.getpid() not in ran_in


def test_a_changed_source_replaces_the_warm_process(instance, tmp_path, monkeypatch):
    source = tmp_path / "orchestration" / "module.py"
    source.parent.mkdir()
    source.write_text("")
    monkeypatch.setattr(warm_launcher, "REPO_ROOT", tmp_path)
    config = {"ops": {"report_process": {"config": {"out": str(tmp_path / "pid")}}}}
    wait_for(instance, launch(instance, warm_jobs.report_job, config), finished)
    [before] = warm_pids(instance)
    os.utime(source, ns=(time.time_ns() + 10**9,) * 2)
    run = wait_for(instance, launch(instance, warm_jobs.report_job, config), finished)
    assert run.status == dg.DagsterRunStatus.SUCCESS
    [after] = warm_pids(instance)
    assert after != before


def test_terminating_a_run_cancels_it(instance):
    run_id = launch(instance, warm_jobs.wait_job)
    wait_for(instance, run_id, lambda run: run.status == dg.DagsterRunStatus.STARTED)
    assert instance.run_launcher.terminate(run_id)
    assert wait_for(instance, run_id, finished).status == dg.DagsterRunStatus.CANCELED


def test_monitoring_sees_a_run_process_that_died(instance):
    run_id = launch(instance, warm_jobs.wait_job)
    run = wait_for(instance, run_id, lambda run: run.status == dg.DagsterRunStatus.STARTED)
    launcher = instance.run_launcher
    assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
    os.kill(int(run.tags[PID_TAG]), signal.SIGKILL)
    deadline = time.monotonic() + 30
    while launcher.check_run_worker_health(run).status != WorkerStatus.FAILED:
        assert time.monotonic() < deadline, "the killed run process still looks alive"
        time.sleep(0.2)
    assert "is gone" in launcher.check_run_worker_health(run).msg
    instance.report_run_failed(run)  # what the monitoring daemon does with that answer


def test_a_warm_process_whose_import_fails_says_which(tmp_path):
    with pytest.raises(RuntimeError, match="No module named 'tests.orchestration.no_such_module'"):
        WarmProcess(["tests.orchestration.no_such_module"], cwd=None, executable=sys.executable)


def test_a_warm_process_refuses_to_fork_after_an_import_started_a_thread():
    with pytest.raises(RuntimeError, match="started threads \\(started-at-import\\)"):
        WarmProcess(["tests.orchestration.warm_threads"], cwd=None, executable=sys.executable)


@pytest.fixture(scope="module")
def warm_dbt_process():
    warm = WarmProcess(["dbt.cli.main", "dbt.adapters.duckdb"], cwd=None, executable=sys.executable)
    yield warm
    warm.stop()


def test_dbt_commands_run_in_a_fork_of_the_warm_process(warm_dbt_process, capfd):
    with warm_dbt.connect(warm_dbt_process.dbt_socket) as conn:
        assert warm_dbt.run_via(conn, ["--version"]) == 0
    assert f"installed: {dbt_version}" in capfd.readouterr().out


def test_a_failing_dbt_command_gives_its_exit_code(warm_dbt_process, tmp_path, capfd):
    with warm_dbt.connect(warm_dbt_process.dbt_socket) as conn:
        assert warm_dbt.run_via(conn, ["parse", "--project-dir", str(tmp_path / "missing")]) == 2
    assert "Invalid value for '--project-dir'" in capfd.readouterr().err  # dbt's own message, on our stderr


def test_the_dbt_executable_falls_back_to_dbt_when_no_warm_process_listens(tmp_path):
    env = {**os.environ, warm_dbt.SOCKET_ENV: str(tmp_path / "gone.sock"), warm_dbt.PYTHON_ENV: sys.executable}
    done = subprocess.run([str(DBT_EXECUTABLE), "--version"], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0 and f"installed: {dbt_version}" in done.stdout


def test_when_the_warm_process_cannot_start_the_run_is_launched_the_default_way_and_says_why():
    broken = {**LAUNCHER, "config": {"preload": ["tests.orchestration.no_such_module"]}}
    with dg.instance_for_test(overrides={"run_launcher": broken}) as instance:
        job = warm_jobs.report_job
        run = instance.create_run_for_job(job_def=job, run_config={"ops": {"report_process": {"config": {"out": "-"}}}},
                                          job_code_origin=dg.reconstructable(job).get_python_origin())
        # the default launcher needs the workspace's code server, which this test has not started
        with pytest.raises(dg.DagsterInvariantViolationError, match="requires a workspace"):
            instance.run_launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
        messages = [entry.message for entry in instance.all_logs(run.run_id)]
        assert any("Warm launch unavailable (ModuleNotFoundError: No module named 'tests.orchestration.no_such_module')"
                   in m for m in messages), messages


def test_a_bad_dbt_request_is_refused_and_the_warm_process_serves_on(warm_dbt_process, capfd):
    with warm_dbt.connect(warm_dbt_process.dbt_socket) as conn:
        conn.sendall(b"not json")  # no streams, no command
        assert conn.recv(100) == b""  # the warm process closed it without starting anything
    with warm_dbt.connect(warm_dbt_process.dbt_socket) as conn:
        assert warm_dbt.run_via(conn, ["--version"]) == 0
    assert f"installed: {dbt_version}" in capfd.readouterr().out
