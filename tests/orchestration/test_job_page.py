"""`make run`'s run is on the job's page of the Dagster UI: Dagster's real webserver, started
read-only on the run's instance, answers the query the UI's job page sends (`RunsFeedRootQuery` of
dagster-ui's `PipelineRunsFeedRoot`: the job's runs whose repository tag is the code location's)
with the run of the session's main job (`python -m orchestration.main`, as `make run` starts it)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from bench.loopback import free_port
from orchestration.environment import tool
from tests.conftest import REPO_ROOT

# The UI's queries as the installed dagster-webserver's UI sends them (its sources:
# pipelines/PipelineRunsFeedRoot.tsx, runs/useRunsFeedEntries.tsx), cut to the fields the test reads
WORKSPACE_QUERY = """
query { workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError {
  ... on RepositoryLocation { repositories { name pipelines { name } } } } } } } }"""
JOB_RUNS_QUERY = """
query RunsFeedRootQuery($limit: Int!, $cursor: String, $filter: RunsFilter, $view: RunsFeedView!) {
  runsFeedOrError(limit: $limit, cursor: $cursor, filter: $filter, view: $view) {
    ... on RunsFeedConnection { results { __typename id ... on Run { jobName status } } }
    ... on PythonError { message }
  }
}"""


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", method="POST",
                                     data=json.dumps({"query": query, "variables": variables or {}}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as reply:
        answer = json.loads(reply.read())
    assert "errors" not in answer, answer
    return answer["data"]


def start_webserver(data_dir: Path, log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "PLATFORM_DATA_DIR": str(data_dir), "PLATFORM_SAMPLE_SIZE": "tiny",
           "DAGSTER_HOME": str(data_dir / "dagster")}
    with open(log, "w") as out:
        proc = subprocess.Popen([tool("dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port),
                                 "--read-only"], cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                return proc, port
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)


def test_make_run_run_is_on_the_job_page(main_run, tmp_path):
    data_dir, out = main_run
    run_id = re.search(r"batch_job run ([0-9a-f-]{36}): SUCCESS", out).group(1)
    proc, port = start_webserver(data_dir, tmp_path / "webserver.log")
    try:
        entries = graphql(port, WORKSPACE_QUERY)["workspaceOrError"]["locationEntries"]
        (location, repository), = [(entry["name"], repo["name"]) for entry in entries
                                   for repo in entry["locationOrLoadError"]["repositories"]
                                   if "batch_job" in {job["name"] for job in repo["pipelines"]}]
        # PipelineRunsFeedRoot: the job's permanent filter and the tag `repoAddressAsTag` makes
        page_filter = {"pipelineName": "batch_job",
                       "tags": [{"key": ".dagster/repository", "value": f"{repository}@{location}"}]}
        feed = graphql(port, JOB_RUNS_QUERY, {"limit": 30, "filter": page_filter, "view": "RUNS"})["runsFeedOrError"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    assert feed["results"] == [{"__typename": "Run", "id": run_id, "jobName": "batch_job", "status": "SUCCESS"}]
