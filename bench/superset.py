"""Superset benchmark: `make bi` from installed to serving, and a chart's first query.

Reads the published snapshot of a data directory the main job has filled (`make run` first; the
default sample). Starts its own SQL endpoint on a free port, then:

- `make bi` (`python -m semantic.superset.run`) into a fresh state directory: seconds until it prints
  that Superset is ready (migrations, roles, provisioning included), then again on the same state
  (a restart: nothing to migrate, everything provisioned already);
- each starter-dashboard chart's first query, as a tenant's analyst, through Superset's chart data API
  (`POST /api/v1/chart/data`: what the browser asks), then again (warm: the endpoint caches per tenant),
  against the baseline of the same metric and grain asked of the SQL endpoint directly with psycopg,
  warm too (the difference is what Superset adds: its own work and a connection per query).

    make bench-bi            # or: python -m bench.superset --data-dir data
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from bench.loopback import free_port
from semantic.auth import issue_token
from semantic.superset import definitions, provision, run

SECRET = "bench-secret-that-is-long-enough-for-hs256"
REPO_ROOT = Path(__file__).resolve().parents[1]


def wait_port(port: int, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not run.port_taken(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the SQL endpoint did not start on port {port}")
        time.sleep(0.2)


def make_bi(env: dict, port: int, sql_port: int) -> tuple[subprocess.Popen, float]:
    """Start `make bi`'s program; the seconds until it says Superset is ready."""
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "semantic.superset.run", "--port", str(port),
                             "--sql-port", str(sql_port)], cwd=REPO_ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    for line in proc.stdout:
        if line.startswith(run.READY):
            return proc, time.monotonic() - started
    raise SystemExit(f"make bi stopped before Superset was ready (exit {proc.wait()})")


def child_cpu() -> float:
    """CPU seconds of the processes started and waited for so far (Superset's among them)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=60)


def chart_query(api: provision.SupersetApi, dataset_id: int, metrics: list[str], grain: str) -> float:
    body = {"datasource": {"id": dataset_id, "type": "table"}, "result_format": "json", "result_type": "full",
            "queries": [{"metrics": metrics, "columns": [{"timeGrain": grain, "columnType": "BASE_AXIS",
                                                          "sqlExpression": definitions.TIME_COLUMN,
                                                          "label": definitions.TIME_COLUMN,
                                                          "expressionType": "SQL"}],
                         "time_range": "No filter", "row_limit": 10000, "orderby": []}]}
    started = time.monotonic()
    api.call("POST", "/api/v1/chart/data", body)
    return time.monotonic() - started


def direct_query(sql_port: int, token: str, table: str, metrics: list[str], grain: str) -> float:
    unit = {"P1D": "day", "P1W": "week"}[grain]
    selected = ", ".join(f"MEASURE({m}) AS {m}" for m in metrics)
    started = time.monotonic()
    with psycopg.connect(host="127.0.0.1", port=sql_port, user="bench", password=token, dbname="semantic") as conn:
        conn.execute(f"SELECT DATE_TRUNC('{unit}', metric_time) AS metric_time, {selected} FROM public.{table} "
                     f"GROUP BY 1 ORDER BY 1 LIMIT 10000").fetchall()
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    args = parser.parse_args()
    data_dir = args.data_dir.resolve()
    if not (data_dir / "published").exists():
        raise SystemExit(f"no published data in {data_dir}: run the main job (`make run`) first")
    state = Path(tempfile.mkdtemp(prefix="bench-superset-"))
    env = {**os.environ, "PLATFORM_DATA_DIR": str(data_dir), "SUPERSET_STATE_DIR": str(state),
           "SEMANTIC_API_SECRET": SECRET}
    sql_port, port = free_port(), free_port()
    endpoint = subprocess.Popen([sys.executable, "-m", "semantic.pgwire", "--port", str(sql_port)], cwd=REPO_ROOT,
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(sql_port, endpoint)
        cpu = child_cpu()
        proc, first = make_bi(env, port, sql_port)
        stop(proc)
        cpu, first_cpu = child_cpu(), child_cpu() - cpu
        proc, again = make_bi(env, port, sql_port)
        print(f"make bi, installed to serving: {first:.1f} s on a fresh state (target 60 s), "
              f"{again:.1f} s restarting on the same state")
        print(f"  CPU time of the fresh start (make bi and Superset, whatever else the machine runs): "
              f"{first_cpu:.1f} s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        try:
            users = run.accounts(state)
            analyst = users["users"][0]
            tenant = analyst["roles"][0].removeprefix("Tenant ")
            api = provision.SupersetApi(f"http://127.0.0.1:{port}", analyst["username"], analyst["password"])
            datasets = {d["table_name"]: d["id"] for d in api.every("dataset")}
            token = issue_token(SECRET, tenant, "tenant", 3600)
            print(f"first query of each starter chart as {analyst['username']} (target 2 s), "
                  "against the same query sent to the SQL endpoint directly:")
            for chart in definitions.dashboard_charts(run.catalog_and_tenants(
                    run.BiSettings.from_environment(env, port=port, sql_port=sql_port))[0]):
                metrics = [chart.params["metric"]] if "metric" in chart.params else chart.params["metrics"]
                grain = chart.params["time_grain_sqla"]
                through = chart_query(api, datasets[chart.dataset], metrics, grain)
                warm = chart_query(api, datasets[chart.dataset], metrics, grain)
                direct = direct_query(sql_port, token, chart.dataset, metrics, grain)
                print(f"  {chart.name:<35} first {through:5.2f} s, again {warm:5.2f} s; "
                      f"the endpoint directly (warm) {direct:5.2f} s")
        finally:
            stop(proc)
    finally:
        stop(endpoint)


if __name__ == "__main__":
    main()
