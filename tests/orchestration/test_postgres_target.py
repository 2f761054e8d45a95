"""The same code on a bigger warehouse: DBT_TARGET=postgres loads with dlt into Postgres and builds
every dbt model and test there. A throwaway PostgreSQL cluster runs on a loopback port."""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg2
import pytest

from ingestion.paths import DataLayout
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.postgres


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    assert found, f"{name} not found: install a PostgreSQL server (Debian: apt-get install postgresql)"
    return found


@pytest.fixture
def postgres():
    """initdb + postgres on a free port; as root, the cluster runs as the `postgres` user."""
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    # outside pytest's private temp tree, which the postgres user may not enter
    cluster = Path(tempfile.mkdtemp(prefix="pg-cluster-"))
    if as_user:
        shutil.chown(cluster, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run([*as_user, _pg_bin("initdb"), "-D", str(cluster), "-U", "analytics", "--auth=trust"],
                   check=True, capture_output=True)
    subprocess.run([*as_user, _pg_bin("pg_ctl"), "-D", str(cluster), "-l", str(cluster / "log"), "-w", "start",
                    "-o", f"-p {port} -k {cluster} -c listen_addresses=127.0.0.1"], check=True, capture_output=True)
    try:
        admin = psycopg2.connect(host="127.0.0.1", port=port, user="analytics", dbname="postgres")
        admin.autocommit = True
        admin.cursor().execute("create database analytics")
        admin.close()
        yield {"PGHOST": "127.0.0.1", "PGPORT": str(port), "PGUSER": "analytics", "PGPASSWORD": "",
               "PGDATABASE": "analytics"}
    finally:
        subprocess.run([*as_user, _pg_bin("pg_ctl"), "-D", str(cluster), "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(cluster, ignore_errors=True)


def test_main_job_builds_on_postgres(postgres, tmp_path):
    data_dir = tmp_path / "data"
    env = {**os.environ, **postgres, "DBT_TARGET": "postgres", "PLATFORM_DATA_DIR": str(data_dir),
           "PLATFORM_SAMPLE_SIZE": "tiny"}
    env.pop("DAGSTER_HOME", None)
    proc = subprocess.run([sys.executable, "-m", "orchestration.main"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert "warehouse (postgres): 127.0.0.1" in proc.stdout
    truth = json.loads(DataLayout(data_dir).ground_truth.read_text())
    with psycopg2.connect(host="127.0.0.1", port=postgres["PGPORT"], user="analytics", dbname="analytics") as conn:
        cursor = conn.cursor()
        cursor.execute("select count(*), count(distinct event_id) from marts.fct_events")
        assert cursor.fetchone() == (truth["events"]["valid_events"],) * 2
        cursor.execute("select count(*) from marts.fct_sessions")
        assert cursor.fetchone()[0] == truth["app_db"]["sessions"]
        cursor.execute("select count(*) from marts.metrics_daily")
        assert cursor.fetchone()[0] == truth["size"]["tenants"] * truth["size"]["days"]
    results = json.loads((data_dir / "dbt_results" / "dbt_models.json").read_text())
    assert set(results) == {"model_success", "test_pass", "unit_test_pass"}
    forecast_marts = json.loads((data_dir / "dbt_results" / "dbt_forecast_marts.json").read_text())
    assert set(forecast_marts) == {"model_success", "test_pass"}
