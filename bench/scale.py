"""Benchmark: the main job's wall time and peak memory as the data grows, on DuckDB and on local Spark.

Each point is one run of `python -m orchestration.main` (what `make run` runs) in its own process,
on a sample generated beforehand at that scale (the default sample's users times N: events grow
with them), in a data directory of its own. Wall time is the whole job; peak memory is the largest
resident memory of the job's whole process tree at once (the job, dbt, Spark's JVM, Evidence's
build, Chromium), sampled from /proc twice a second. DuckDB at 1x is the baseline the other points
are read against.

Each point also says which step held the memory: the samples are matched with the steps' start and
end in the run's Dagster event log, and each step's peak is printed with the job process's part (and
how much that process grew in the step: Python keeps what it took) and the largest processes then.
The sample's generation (before the job, not timed with it) has its own peak. A point that would take
the machine's memory down is stopped when less than --keep-free-mib is available, and reported so.

    make bench-scale                                  # DuckDB at 1x, 10x, 30x; Spark at 1x, 10x (long)
    make bench-scale BENCH_SCALE_ARGS="--duckdb 30 --spark"   # one point
    python -m bench.scale --size tiny --duckdb 1 --spark 1   # a short run that proves it works
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from ingestion.sample_data import SIZES
from orchestration.environment import REPO_ROOT


def tree_rss_mib(root: int) -> dict[int, tuple[str, float]]:
    """Each process of a tree (a process and all its descendants) now: its command name and resident
    memory in MiB, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = {}, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        with contextlib.suppress(OSError, IndexError, ValueError):
            pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
            tree[pid] = (Path(f"/proc/{pid}/comm").read_text().strip(), pages * os.sysconf("SC_PAGE_SIZE") / 2**20)
    return tree


def available_mib() -> float:
    """The machine's available memory (MemAvailable) in MiB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


@dataclass
class Sample:
    at: float  # time.time()
    total_mib: float
    job_mib: float  # the job's own process (Python keeps the memory it once held: its high-water mark)
    largest: str  # the three largest processes then: "name MiB, ..."


def measured(cmd: list[str], env: dict[str, str], log: Path, keep_free_mib: float) -> dict:
    """Run a command (output to `log`); its wall seconds, peak resident memory in MiB (the largest
    sum over its process tree, sampled twice a second: a JVM that dbt starts and does not wait for
    is counted too, which wait4's figure for the process would miss) and the samples themselves.

    The run is stopped (its whole process group killed) when the machine's available memory falls
    below `keep_free_mib`, so that a point too big for the machine is measured as a failure instead
    of taking the machine down: the figures then say `aborted` and what the tree held at that moment.
    """
    started, samples, aborted = time.perf_counter(), [], None
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        while proc.poll() is None:
            tree = tree_rss_mib(proc.pid)
            largest = ", ".join(f"{name} {rss:,.0f}" for name, rss in sorted(tree.values(), key=lambda p: -p[1])[:3])
            samples.append(Sample(time.time(), sum(rss for _, rss in tree.values()),
                                  tree.get(proc.pid, ("", 0.0))[1], largest))
            if available_mib() < keep_free_mib:
                aborted = (f"stopped by the benchmark: {available_mib():,.0f} MiB available, below "
                           f"{keep_free_mib:,.0f}; the job's tree held {samples[-1].total_mib:,.0f} MiB")
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                break
            time.sleep(0.5)
    seconds = time.perf_counter() - started
    if proc.returncode != 0 and not aborted:
        raise SystemExit(f"{' '.join(cmd[-3:])} failed (log: {log}):\n{log.read_text()[-3000:]}")
    return {"seconds": round(seconds, 1), "peak_mib": round(max((s.total_mib for s in samples), default=0)),
            "aborted": aborted, "samples": samples}


def step_windows(dagster_home: Path) -> list[tuple[str, float, float | None]]:
    """The steps of the last run recorded in an instance: (step, start, end or None if it never
    ended), in unix seconds, from the run's event log (Dagster's step start, success and failure)."""
    import dagster as dg  # only here: the benchmark's own process stays small

    kinds = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE}
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        runs = instance.get_runs(limit=1)
        if not runs:
            return []
        windows: dict[str, list] = {}
        for entry in instance.all_logs(runs[0].run_id, of_type=kinds):
            if entry.dagster_event.event_type == dg.DagsterEventType.STEP_START:
                windows[entry.step_key] = [entry.timestamp, None]
            elif entry.step_key in windows:
                windows[entry.step_key][1] = entry.timestamp
    return [(step, start, end) for step, (start, end) in windows.items()]


def peaks_by_step(samples: list[Sample], windows: list[tuple[str, float, float | None]]) -> list[dict]:
    """Each step's peak memory (the process tree's, while that step ran), the job process's share
    and how much the job process grew during the step (above its largest size before it: memory the
    step made Python or DuckDB take, which the process keeps for the rest of the run), and the largest
    processes then; largest peak first. Time outside every step is the job's start (imports, code
    location) or its end."""
    def step_at(at: float) -> str:
        for step, start, end in windows:
            if start <= at and (end is None or at <= end):
                return step
        first = min((start for _, start, _ in windows), default=float("inf"))
        return "(job start)" if at < first else "(between steps / job end)"

    peaks: dict[str, dict] = {}
    job_high = 0.0
    for sample in samples:
        step = step_at(sample.at)
        row = peaks.setdefault(step, {"step": step, "peak_mib": 0.0, "job_mib": 0.0, "job_growth_mib": 0.0,
                                      "largest": "", "seconds": 0.0, "job_before": job_high})
        row["seconds"] += 0.5
        row["job_mib"] = max(row["job_mib"], sample.job_mib)
        row["job_growth_mib"] = max(0.0, row["job_mib"] - row["job_before"])
        job_high = max(job_high, sample.job_mib)
        if sample.total_mib > row["peak_mib"]:
            row["peak_mib"], row["largest"] = sample.total_mib, sample.largest
    rounded = ({**{k: v for k, v in r.items() if k != "job_before"},
                **{k: round(r[k]) for k in ("peak_mib", "job_mib", "job_growth_mib")}} for r in peaks.values())
    return sorted(rounded, key=lambda r: -r["peak_mib"])


def point(target: str, size: str, scale: float, root: Path, keep_free_mib: float) -> dict:
    data = root / f"{target}-{size}-x{scale:g}"
    end = SIZES[size].end_date
    env = {**os.environ, "PLATFORM_DATA_DIR": str(data), "DBT_TARGET": target,
           # the sample's last day is fixed: runs take the next morning as now, as the tests do
           "PLATFORM_SAMPLE_END_DATE": end.isoformat(),
           "PLATFORM_NOW": f"{end + timedelta(days=1)}T06:00:00Z"}
    env.pop("DAGSTER_HOME", None)
    sample = measured([sys.executable, "-m", "ingestion.sample_data", "--size", size, "--scale", str(scale),
                       "--data-dir", str(data), "--end-date", end.isoformat()],
                      env, root / f"{data.name}-sample.log", keep_free_mib)
    if sample["aborted"]:
        return {"target": target, "size": size, "scale": scale, "events": None, "seconds": sample["seconds"],
                "peak_mib": sample["peak_mib"], "aborted": f"generating the sample: {sample['aborted']}",
                "steps": [], "sample_peak_mib": sample["peak_mib"]}
    events = json.loads((data / "sample" / "ground_truth.json").read_text())["events"]["valid_events"]
    job = measured([sys.executable, "-m", "orchestration.main"], env, root / f"{data.name}.log", keep_free_mib)
    steps = peaks_by_step(job.pop("samples"), step_windows(data / "dagster"))
    return {"target": target, "size": size, "scale": scale, "events": events, **job,
            "events_per_second": round(events / job["seconds"]), "steps": steps,
            "sample_seconds": sample["seconds"], "sample_peak_mib": sample["peak_mib"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="default", help="the sample scaled (1x)")
    parser.add_argument("--duckdb", type=float, nargs="*", default=[1, 10, 30], help="scales on DuckDB")
    parser.add_argument("--spark", type=float, nargs="*", default=[1, 10], help="scales on local Spark")
    parser.add_argument("--keep-free-mib", type=float, default=2048,
                        help="stop a point when the machine's available memory falls below this (MiB)")
    parser.add_argument("--steps", type=int, default=6, help="print this many steps' peaks per point")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures here (JSON)")
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"main job at scale, {args.size} sample = 1x; load average at start {load[0]:.1f}, {date.today()}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        for target, scales in (("duckdb", args.duckdb), ("spark", args.spark)):
            for scale in scales:
                row = point(target, args.size, scale, Path(tmp), args.keep_free_mib)
                rows.append(row)
                if row["aborted"]:
                    print(f"{target:>6} {scale:>5g}x {row['aborted']} after {row['seconds']:.1f} s "
                          f"(load average {os.getloadavg()[0]:.1f})", flush=True)
                else:
                    baseline = next(r for r in rows if not r["aborted"])
                    print(f"{target:>6} {scale:>5g}x {row['events']:>11,} events {row['seconds']:>8.1f} s "
                          f"({row['seconds'] / baseline['seconds']:.1f}x the {baseline['target']} "
                          f"{baseline['scale']:g}x time) peak {row['peak_mib']:>6,} MiB "
                          f"{row['events_per_second']:>9,} events/s; load average {os.getloadavg()[0]:.1f}",
                          flush=True)
                    print(f"{'':>14}sample generated beforehand in {row['sample_seconds']:.1f} s, "
                          f"peak {row['sample_peak_mib']:,} MiB", flush=True)
                for step in row["steps"][:args.steps]:
                    print(f"{'':>14}{step['peak_mib']:>7,} MiB {step['seconds']:>6.0f} s  {step['step']}: job process "
                          f"{step['job_mib']:,} MiB (+{step['job_growth_mib']:,}); largest processes, MiB: "
                          f"{step['largest']}", flush=True)
    print(f"load average at end {os.getloadavg()[0]:.1f}")
    if args.out:
        args.out.write_text(json.dumps({"load_average_start": load[0], "points": rows}, indent=2))


if __name__ == "__main__":
    main()
