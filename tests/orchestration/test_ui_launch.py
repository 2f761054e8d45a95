"""Materializing from the UI: a real `dagster dev` (webserver, daemon, code server) launches the
batch job through its GraphQL API, the same call the UI's launch button makes, and the run's
process, run queue and warehouse pool all do their part. Then events posted to a real collector
reach the published real-time mart through the daemon's landing-files sensor, which runs the
micro-batch."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request

import dagster as dg
import httpx
import pytest
from dagster import DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient

from bench.loopback import free_port
from ingestion.paths import DataLayout
from orchestration.environment import tool
from orchestration.microbatch import TRIGGER_TAG
from semantic import snapshots
from tests.conftest import NOW, REPO_ROOT
from tests.ingestion.collector_process import collector


@pytest.fixture
def dagster_dev(tmp_path):
    data_dir = tmp_path / "data"
    home = data_dir / "dagster"
    home.mkdir(parents=True)
    shutil.copy(REPO_ROOT / "orchestration" / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    env = {**os.environ, "PLATFORM_DATA_DIR": str(data_dir), "PLATFORM_SAMPLE_SIZE": "tiny",
           "DAGSTER_HOME": str(home)}
    log = open(tmp_path / "dagster-dev.log", "w")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen([tool("dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
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
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, which `dagster dev` stops its services on
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


def test_launch_from_the_ui_materializes_everything_then_posted_events_flow_through_the_sensor(dagster_dev):
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
    # read as readers do, from the published snapshot: the daemon's sensor may already be running a
    # micro-batch on the warehouse (it sees the sample's landing files), and DuckDB lets one process in
    conn, _ = snapshots.connect_current(layout.root / "published")
    with conn:
        assert conn.execute("select count(*) from marts.fct_events").fetchone()[0] == truth["events"]["valid_events"]
        assert conn.execute("select count(*) from marts.metrics_daily").fetchone()[0] > 0

    # the development loop of `make dev`: an event posted to the collector reaches the published mart

    now = NOW  # the moment the runs take as now (the suite pins it): these events are fresh
    events = [{"event_id": f"live-{i}", "event_type": "page_view", "timestamp": now, "tenant_id": "t002",
               "user_id": f"t002-u{i % 3}", "session_id": "live-s", "properties": {"path": "/"}, "context": {}}
              for i in range(25)]
    with collector(layout) as running:
        reply = httpx.post(f"{running.url}/v1/batch", json={"batch": events},
                           headers={"Authorization": "Bearer key-t002"})
        assert reply.status_code == 200 and reply.json()["accepted"] == 25
    deadline = time.monotonic() + 300
    visible = 0
    while visible != 25:
        assert time.monotonic() < deadline, f"{visible} of 25 events visible; " + log.read_text()[-3000:]
        time.sleep(2)
        snapshot = snapshots.current(layout.root / "published")
        with snapshot.connect() as conn:
            visible = conn.execute("select coalesce(sum(events), 0) from marts.metrics_per_minute "
                                   "where tenant_id = 't002' and minute_at = date_trunc('minute', ?::timestamp)",
                                   [now.rstrip("Z")]).fetchone()[0]
    with dg.DagsterInstance.from_config(str(layout.root / "dagster")) as instance:
        # the run that published the events ends after the publish step: wait for it to be recorded
        while True:
            runs = instance.get_run_records(dg.RunsFilter(job_name="events_microbatch_job"))
            if any(r.dagster_run.status == DagsterRunStatus.SUCCESS for r in runs):
                break
            assert time.monotonic() < deadline, f"{[r.dagster_run.status for r in runs]}; " + log.read_text()[-3000:]
            time.sleep(1)
        # the daemon's sensor ran them, in the code server's process (orchestration/microbatch.py)
        assert all(r.dagster_run.tags.get(TRIGGER_TAG) == "landing_files_sensor" for r in runs)
