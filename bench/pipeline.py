"""Benchmark of the spine: generator speed, load + build wall time, rows per second, peak memory.

Runs the default sample and ten times it in one go, so the second is read against the first as
its baseline. Each stage runs in its own process, measured with wait4 (wall time and peak RSS).

    make bench                # default and 10x
    python -m bench.pipeline --scales 1   # default only
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from orchestration.environment import DBT_PROJECT_DIR as DBT_DIR
from orchestration.environment import REPO_ROOT, tool


def measured(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Run a command; return its wall seconds and peak resident memory in MiB."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed:\n{proc.stderr.read().decode()[-3000:]}")
    return {"seconds": round(seconds, 1), "peak_mib": round(usage.ru_maxrss / 1024)}


def run_scale(scale: float, root: Path) -> dict:
    data = root / f"x{scale:g}"
    py = sys.executable
    generate = measured([py, "-m", "ingestion.sample_data", "--size", "default", "--scale", str(scale),
                         "--data-dir", str(data)])
    truth = json.loads((data / "sample" / "ground_truth.json").read_text())
    events = truth["events"]["valid_events"]
    load = measured([py, "-m", "ingestion.pipelines", "--data-dir", str(data)])
    env = {**os.environ, "PLATFORM_WAREHOUSE": str(data / "warehouse.duckdb")}
    build = measured([tool("dbt"), "build", "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR),
                      "--target-path", str(data / "dbt-target"), "--log-path", str(data / "dbt-logs")], env)
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as conn:
        raw_rows = sum(conn.execute(f"select count(*) from {t}").fetchone()[0] for t in (
            "raw_events.events", "raw_app.orders", "raw_app.order_items", "raw_app.users",
            "raw_app.subscriptions", "raw_app.subscription_events", "raw_marketing.spend"))
        mart_rows = conn.execute("select count(*) from marts.fct_events").fetchone()[0]
    assert mart_rows == events, f"fct_events has {mart_rows} rows, the generator made {events}"
    load_build = load["seconds"] + build["seconds"]
    return {
        "scale": scale,
        "events": events,
        "raw_rows": raw_rows,
        "generate": {**generate, "events_per_second": round(events / generate["seconds"])},
        "load": {**load, "rows_per_second": round(raw_rows / load["seconds"])},
        "build": build,
        "load_plus_build_seconds": round(load_build, 1),
        "load_plus_build_rows_per_second": round(raw_rows / load_build),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", type=float, nargs="+", default=[1, 10])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-", dir=os.environ.get("BENCH_DIR")) as tmp:
        results = []
        for scale in args.scales:
            result = run_scale(scale, Path(tmp))
            results.append(result)
            print(json.dumps(result), flush=True)
    base = results[0]
    print(f"\n{'scale':>6} {'events':>11} {'gen ev/s':>10} {'load s':>8} {'build s':>8} {'load+build s':>13} "
          f"{'rows/s':>9} {'peak MiB (gen/load/build)':>27}")
    for r in results:
        print(f"{r['scale']:>6g} {r['events']:>11,} {r['generate']['events_per_second']:>10,} "
              f"{r['load']['seconds']:>8} {r['build']['seconds']:>8} {r['load_plus_build_seconds']:>13} "
              f"{r['load_plus_build_rows_per_second']:>9,} "
              f"{r['generate']['peak_mib']:>9}/{r['load']['peak_mib']}/{r['build']['peak_mib']}")
    for r in results[1:]:
        print(f"x{r['scale']:g} against x{base['scale']:g}: {r['events'] / base['events']:.1f}x the events took "
              f"{r['load_plus_build_seconds'] / base['load_plus_build_seconds']:.1f}x the load+build time")


if __name__ == "__main__":
    main()
