"""Materializing from the UI: a real `dagster dev` (webserver, daemon, code server) launches the
batch job through its GraphQL API, the same call the UI's launch button makes, and the run's
process, run queue and warehouse pool all do their part."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

import pytest
from dagster import DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient

from ingestion.paths import DataLayout
from tests.conftest import REPO_ROOT
from tests.ingestion.helpers import scalar


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dagster_dev(tmp_path):
    data_dir = tmp_path / "data"
    home = data_dir / "dagster"
    home.mkdir(parents=True)
    shutil.copy(REPO_ROOT / "orchestration" / "dagster.yaml", home / "dagster.yaml")
    port = _free_port()
    env = {**os.environ, "PLATFORM_DATA_DIR": str(data_dir), "PLATFORM_SAMPLE_SIZE": "tiny",
           "DAGSTER_HOME": str(home)}
    log = open(tmp_path / "dagster-dev.log", "w")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(["dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2) as reply:
                json.loads(reply.read())
            break
        except OSError:
            assert proc.poll() is None, (tmp_path / "dagster-dev.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "dagster dev did not come up"
            time.sleep(1)
    yield port, DataLayout(data_dir), tmp_path / "dagster-dev.log"
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


def test_launch_from_the_ui_materializes_everything(dagster_dev):
    port, layout, log = dagster_dev
    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    run_id = client.submit_job_execution("batch_job")
    deadline = time.monotonic() + 420
    status = client.get_run_status(run_id)
    while status not in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED):
        assert time.monotonic() < deadline, f"run {run_id} still {status}"
        time.sleep(2)
        status = client.get_run_status(run_id)
    assert status == DagsterRunStatus.SUCCESS, log.read_text()[-5000:]
    truth = json.loads(layout.ground_truth.read_text())
    assert scalar(layout, "select count(*) from marts.fct_events") == truth["events"]["valid_events"]
    assert scalar(layout, "select count(*) from marts.metrics_daily") > 0
