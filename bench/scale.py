"""Benchmark: the main job's wall time and peak memory as the data grows, on DuckDB and on local Spark.

Each point is one run of `python -m orchestration.main` (what `make run` runs) in its own process,
on a sample generated beforehand at that scale (the default sample's users times N: events grow
with them), in a data directory of its own. Wall time is the whole job; peak memory is the largest
resident memory of the job's whole process tree at once (the job, dbt, Spark's JVM, Evidence's
build, Chromium), sampled from /proc twice a second. DuckDB at 1x is the baseline the other points
are read against.

    make bench-scale                                  # DuckDB at 1x, 10x, 30x; Spark at 1x, 10x (long)
    python -m bench.scale --size tiny --duckdb 1 --spark 1   # a short run that proves it works
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from ingestion.sample_data import SIZES
from orchestration.environment import REPO_ROOT


def tree_rss_mib(root: int) -> float:
    """The resident memory of a process and all its descendants now, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return total / 2**20


def measured(cmd: list[str], env: dict[str, str], log: Path) -> dict[str, float]:
    """Run a command (output to `log`); its wall seconds and peak resident memory in MiB: the
    largest sum over its process tree, sampled twice a second (a JVM that dbt starts and does not
    wait for is counted too, which wait4's figure for the process would miss)."""
    started = time.perf_counter()
    peak = 0.0
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            peak = max(peak, tree_rss_mib(proc.pid))
            time.sleep(0.5)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[-3:])} failed (log: {log}):\n{log.read_text()[-3000:]}")
    return {"seconds": round(seconds, 1), "peak_mib": round(peak)}


def point(target: str, size: str, scale: float, root: Path) -> dict:
    data = root / f"{target}-{size}-x{scale:g}"
    end = SIZES[size].end_date
    env = {**os.environ, "PLATFORM_DATA_DIR": str(data), "DBT_TARGET": target,
           # the sample's last day is fixed: runs take the next morning as now, as the tests do
           "PLATFORM_SAMPLE_END_DATE": end.isoformat(),
           "PLATFORM_NOW": f"{end + timedelta(days=1)}T06:00:00Z"}
    env.pop("DAGSTER_HOME", None)
    subprocess.run([sys.executable, "-m", "ingestion.sample_data", "--size", size, "--scale", str(scale),
                    "--data-dir", str(data), "--end-date", end.isoformat()],
                   cwd=REPO_ROOT, env=env, check=True, capture_output=True)
    events = json.loads((data / "sample" / "ground_truth.json").read_text())["events"]["valid_events"]
    job = measured([sys.executable, "-m", "orchestration.main"], env, root / f"{data.name}.log")
    return {"target": target, "size": size, "scale": scale, "events": events, **job,
            "events_per_second": round(events / job["seconds"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="default", help="the sample scaled (1x)")
    parser.add_argument("--duckdb", type=float, nargs="*", default=[1, 10, 30], help="scales on DuckDB")
    parser.add_argument("--spark", type=float, nargs="*", default=[1, 10], help="scales on local Spark")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures here (JSON)")
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"main job at scale, {args.size} sample = 1x; load average at start {load[0]:.1f}, {date.today()}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        for target, scales in (("duckdb", args.duckdb), ("spark", args.spark)):
            for scale in scales:
                row = point(target, args.size, scale, Path(tmp))
                rows.append(row)
                baseline = rows[0]
                print(f"{target:>6} {scale:>5g}x {row['events']:>11,} events {row['seconds']:>8.1f} s "
                      f"({row['seconds'] / baseline['seconds']:.1f}x the {baseline['target']} "
                      f"{baseline['scale']:g}x time) peak {row['peak_mib']:>6,} MiB "
                      f"{row['events_per_second']:>9,} events/s", flush=True)
    print(f"load average at end {os.getloadavg()[0]:.1f}")
    if args.out:
        args.out.write_text(json.dumps({"load_average_start": load[0], "points": rows}, indent=2))


if __name__ == "__main__":
    main()
