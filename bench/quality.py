"""Benchmark: the wall time the quality gates add to the main job on the default sample.

Runs the main job (`python -m orchestration.main`) on a fresh default sample in a temporary data
directory, then reads each step's start and end from the run's Dagster records. The executor
runs one step at a time in one process, so the validation steps' durations are exactly the time
they add; the baseline is the same run without them.

    make bench-quality
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg

from orchestration.environment import REPO_ROOT

GOAL = 0.20  # the gates may add at most 20 % to the main job


def step_seconds(dagster_home: Path) -> tuple[str, dict[str, float]]:
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        run = instance.get_run_records(limit=1)[0].dagster_run
        stats = instance.get_run_step_stats(run.run_id)
    return run.run_id, {s.step_key: s.end_time - s.start_time for s in stats if s.end_time and s.start_time}


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        data_dir = Path(tmp) / "data"
        env = {**os.environ, "PLATFORM_DATA_DIR": str(data_dir), "PLATFORM_SAMPLE_SIZE": "default"}
        env.pop("DAGSTER_HOME", None)
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "orchestration.main"], cwd=REPO_ROOT, env=env,
                              capture_output=True, text=True)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"the main job failed:\n{proc.stdout[-4000:]}")
        run_id, steps = step_seconds(data_dir / "dagster")
    quality = {k: v for k, v in steps.items() if k.startswith("quality_")}
    added = sum(quality.values())
    run_steps = sum(steps.values())
    baseline = wall - added
    print(f"main job on the default sample (run {run_id}): {wall:.1f} s wall, {run_steps:.1f} s in steps")
    for key, seconds in sorted(steps.items(), key=lambda kv: -kv[1]):
        print(f"  {key:<28} {seconds:6.1f} s{'   <- quality gate' if key in quality else ''}")
    share = added / baseline
    print(f"quality gates: {added:.1f} s added to a {baseline:.1f} s job without them = {share:.1%} "
          f"(goal: at most {GOAL:.0%}) -> {'MET' if share <= GOAL else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
