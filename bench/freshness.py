"""Benchmark of freshness: from the collector's acknowledgement to visible in the published
real-time mart, through the metrics API and on the live page, through the Dagster daemon's
landing-files sensor and micro-batch runs.

In a temporary data directory: the batch job builds the warehouse on a sample, then a Dagster code
server, the daemon (with the sensor on) and the collector start, and after one warm-up batch a
bounded load generator posts a batch of events every second, stamped with the time they are sent.
The code server runs on its own, as `dagster dev` and deployments run it: a daemon handed the
workspace's Python module itself replaces its code server every minute (a new process that imports
everything again), which no running platform does. A reader polls the published
snapshot, as the metrics server does, and notes when each batch becomes visible there; a poller asks
the metrics server for the tenant's live events today every 100 ms, and the live page is open in
Chromium; each notes when the batch's events were first counted. At the
end every acknowledged event must be in the warehouse exactly once. Then `bench.publish_scaling`
publishes micro-batches on that warehouse and on one `--factor` times larger.

    make bench-freshness            # or: python -m bench.freshness --sample tiny --seconds 60
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import httpx
import orjson

from bench import live, publish_scaling
from bench.loopback import free_port
from ingestion.paths import DataLayout
from orchestration.environment import tool
from orchestration.processes import interruptible_children
from semantic import snapshots
from semantic.auth import issue_token

REPO_ROOT = Path(__file__).resolve().parent.parent
REQUIRED_P95_S, GOAL_P95_S = 30.0, 10.0
TENANT, KEY = "t001", "bench-key"


def batch_body(number: int, size: int, prefix: str = "fresh", days_ago: int = 0) -> bytes:
    now = (datetime.now(UTC) - timedelta(days=days_ago)).isoformat().replace("+00:00", "Z")
    return orjson.dumps({"batch": [
        {"event_id": f"{prefix}-{number}-{i}", "event_type": "page_view", "timestamp": now, "tenant_id": TENANT,
         "user_id": f"{TENANT}-u{i % 50}", "session_id": f"fresh-{number}-{i // 20}", "properties": {"path": "/"},
         "context": {"device": "desktop"}} for i in range(size)]})


class Watcher(threading.Thread):
    """Polls the published snapshot; the first time a batch is wholly there is when it became visible."""

    def __init__(self, published_dir: Path, size: int):
        super().__init__(daemon=True)
        self.published_dir, self.size = published_dir, size
        self.visible_at: dict[int, float] = {}
        self.snapshots_seen = 0
        self.mismatches: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        version = None
        while not self.stop.is_set():
            current = snapshots.current(self.published_dir)
            if current is not None and current.version != version:
                version, seen = current.version, time.time()
                self.snapshots_seen += 1
                self._read(current, seen)
            time.sleep(0.2)

    def _read(self, snapshot: snapshots.Snapshot, seen: float) -> None:
        with snapshot.connect() as conn:
            counts = conn.execute("select split_part(event_id, '-', 2)::int, count(*) from marts.fct_events "
                                  "where event_id like 'fresh-%' group by 1").fetchall()
            in_mart = conn.execute("select coalesce(sum(events), 0) from marts.metrics_per_minute "
                                   "where minute_at >= current_date").fetchone()[0]
        total = sum(n for _, n in counts)
        if in_mart != total:  # the sample has no events today: the mart's count today is the benchmark's
            self.mismatches.append(f"snapshot {snapshot.version}: real-time mart has {in_mart} events today, "
                                   f"fct_events {total}")
        for number, n in counts:
            if n == self.size:
                self.visible_at.setdefault(number, seen)


class LivePage(threading.Thread):
    """The live page open in Chromium as the tenant (pushed over the WebSocket): when it first drew
    each total of today's events, by the browser's clock (the same machine's)."""

    def __init__(self, url: str, token: str):
        super().__init__(daemon=True)
        self.url, self.token = url, token
        self.seen: dict[int, float] = {}
        self.ready, self.stop = threading.Event(), threading.Event()

    def run(self) -> None:
        from reports import browser

        with browser.chromium() as chromium:
            page = chromium.new_page(viewport=browser.VIEWPORT)
            page.goto(f"{self.url}/live#token={self.token}")
            live.wait(page, f"{live.EVENTS_TILE}.textContent !== '–'", 120)  # the page's CSP forbids wait_for_function
            self.ready.set()
            while not self.stop.wait(0.02):
                shown, drawn = page.evaluate(f"[{live.EVENTS_TILE}.textContent, {live.EVENTS_TILE}.dataset.updatedAt]")
                if drawn:
                    self.seen.setdefault(int(shown.replace(",", "")), float(drawn) / 1000)


def visible_batches(seen: dict[int, float], size: int) -> dict[int, float]:
    """When batch n (of `size` events, sent in order) was first counted: a total of (n + 1) * size
    events today or more."""
    found: dict[int, float] = {}
    for total, at in sorted(seen.items(), key=lambda item: item[1]):
        for number in range(total // size):
            found.setdefault(number, at)
    return found


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def successful_microbatches(instance: dg.DagsterInstance) -> list[dg.RunRecord]:
    """Succeeded micro-batch runs, newest first."""
    return list(instance.get_run_records(dg.RunsFilter(job_name="events_microbatch_job",
                                                       statuses=[dg.DagsterRunStatus.SUCCESS])))


def warm_up(http: httpx.Client, url: str, home: Path, size: int, timeout: float = 300) -> float:
    """Post one batch dated yesterday (so today's counts stay the benchmark's) and wait for the
    micro-batch that takes it; its length.

    It is the code server's first micro-batch, which imports dlt, dbt, Great Expectations and
    MetricFlow once, so the load starts after it: the figures below are those of a running platform.
    """
    reply = http.post(f"{url}/v1/batch", content=batch_body(0, size, prefix="warmup", days_ago=1),
                      headers={"Content-Type": "application/json"})
    reply.raise_for_status()
    deadline = time.time() + timeout
    with dg.DagsterInstance.from_config(str(home)) as instance:
        while time.time() < deadline:
            records = successful_microbatches(instance)
            if records and records[0].end_time:
                return records[0].end_time - records[0].create_timestamp.timestamp()
            time.sleep(1)
    raise SystemExit("the warm-up batch's micro-batch did not succeed: see the services' log")


def microbatch_runs(home: Path, since: float) -> tuple[list[tuple[float, float]], dict[str, list[float]]]:
    """Each successful micro-batch created after `since`: when it was created and finished; and the
    times of its phases: each step, and the rest of the run (Dagster's own work between steps)."""
    phases: dict[str, list[float]] = {}
    runs = []
    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = [r for r in successful_microbatches(instance)
                   if r.create_timestamp.timestamp() >= since and r.end_time]
        for record in records:
            created = record.create_timestamp.timestamp()
            runs.append((created, record.end_time))
            started: dict[str, float] = {}
            in_steps = 0.0
            for entry in instance.all_logs(record.dagster_run.run_id):
                kind = entry.dagster_event_type
                if kind == dg.DagsterEventType.STEP_START:
                    started[entry.step_key] = entry.timestamp
                elif kind == dg.DagsterEventType.STEP_SUCCESS and entry.step_key in started:
                    phases.setdefault(entry.step_key, []).append(entry.timestamp - started[entry.step_key])
                    in_steps += entry.timestamp - started[entry.step_key]
            phases.setdefault("run outside steps", []).append(record.end_time - created - in_steps)
    return sorted(runs), phases


def stages(acked: dict[int, float], visible: dict[int, float], runs: list[tuple[float, float]],
           shown: dict[str, dict[int, float]]) -> dict[str, list[float]]:
    """Where each batch's time went: from its acknowledgement to the creation of the run that
    published it (the last created before the reader saw it: the landing file's rotation, the
    sensor's tick, the run before it), from there to the reader seeing the snapshot (the run up to
    its publish step), and from there to each client."""
    found: dict[str, list[float]] = {}
    for number, at in acked.items():
        if number not in visible:
            continue
        created = [start for start, _ in runs if at <= start <= visible[number]]
        if created:
            found.setdefault("acknowledged -> run created", []).append(created[-1] - at)
            found.setdefault("run created -> snapshot read", []).append(visible[number] - created[-1])
        for name, seen in shown.items():
            if number in seen:
                found.setdefault(f"snapshot read -> {name}", []).append(seen[number] - visible[number])
    return found


def summary(values: list[float]) -> str:
    return f"p50 {percentile(values, 0.5):.1f} s, p95 {percentile(values, 0.95):.1f} s, max {max(values):.1f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", default="default", choices=("tiny", "default"))
    parser.add_argument("--seconds", type=int, default=180, help="how long the load generator sends")
    parser.add_argument("--rate", type=int, default=500, help="events per second, sent as one batch a second")
    parser.add_argument("--factor", type=int, default=30,
                        help="then publish micro-batches on this warehouse and one this many times larger (1: skip)")
    args = parser.parse_args()
    interruptible_children()  # started in the background, the code server would add a minute to every run
    with tempfile.TemporaryDirectory(prefix="bench-freshness-") as tmp:
        layout = DataLayout(Path(tmp) / "data")
        home = layout.root / "dagster"
        env = {**os.environ, "PLATFORM_DATA_DIR": str(layout.root), "PLATFORM_SAMPLE_SIZE": args.sample,
               "DAGSTER_HOME": str(home), "COLLECTOR_WRITE_KEYS": f"{KEY}={TENANT}", "COLLECTOR_ROTATE_SECONDS": "1"}
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "orchestration.main"], cwd=REPO_ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        print(f"batch job on the {args.sample} sample: {time.perf_counter() - started:.0f} s", flush=True)
        port, api_port, code_port = free_port(), free_port(), free_port()
        workspace = Path(tmp) / "workspace.yaml"
        workspace.write_text(f"load_from:\n  - grpc_server:\n      host: 127.0.0.1\n      port: {code_port}\n"
                             "      location_name: orchestration.definitions\n")
        logs = open(Path(tmp) / "services.log", "w")  # noqa: SIM115 - closed below
        services = [subprocess.Popen(cmd, cwd=REPO_ROOT, env={**env, "SEMANTIC_API_SECRET": live.SECRET}, stdout=logs,
                                     stderr=subprocess.STDOUT, start_new_session=True) for cmd in (
            [tool("dagster"), "code-server", "start", "-m", "orchestration.definitions", "-h", "127.0.0.1",
             "-p", str(code_port)],
            [tool("dagster-daemon"), "run", "-w", str(workspace)],
            [sys.executable, "-m", "ingestion.collector", "--port", str(port)],
            [sys.executable, "-m", "semantic.server", "--port", str(api_port)])]
        url, api = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{api_port}"
        http = httpx.Client(headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
        try:
            deadline = time.time() + 120
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    if time.time() > deadline:
                        raise SystemExit(f"the collector did not answer on {url}: see {logs.name}") from None
                    time.sleep(0.2)
            first = warm_up(http, url, home, args.rate)
            print(f"first micro-batch (the warm-up batch; the code server's imports): {first:.1f} s", flush=True)
            watcher = Watcher(layout.root / "published", args.rate)
            watcher.start()
            token = issue_token(live.SECRET, TENANT, ttl_seconds=24 * 3600)
            poller, page = live.Poller(api, token), LivePage(api, token)
            page.start()
            if not page.ready.wait(180):
                raise SystemExit(f"the live page did not show today's events: see {logs.name}")
            poller.start()
            acked: dict[int, float] = {}
            begin = time.time()
            for number in range(args.seconds):
                time.sleep(max(0.0, begin + number - time.time()))
                reply = http.post(f"{url}/v1/batch", content=batch_body(number, args.rate),
                                  headers={"Content-Type": "application/json"})
                if reply.status_code == 200 and reply.json()["accepted"] == args.rate:
                    acked[number] = time.time()
            deadline = time.time() + 300
            while set(acked) - set(watcher.visible_at) and time.time() < deadline:
                time.sleep(1)
            for thread in (watcher, poller, page):
                thread.stop.set()
                thread.join()
        finally:
            http.close()
            for service in services:
                os.killpg(service.pid, signal.SIGTERM)
            for service in services:
                service.wait(timeout=120)
            logs.close()
        latencies = [watcher.visible_at[n] - t for n, t in acked.items() if n in watcher.visible_at]
        clients = {"the metrics API (polled every 100 ms)": visible_batches(poller.seen, args.rate),
                   "the live page": visible_batches(page.seen, args.rate)}
        missing = sorted(set(acked) - set(watcher.visible_at))
        with duckdb.connect(str(layout.warehouse), read_only=True) as conn:
            stored, distinct = conn.execute("select count(*), count(distinct event_id) from marts.fct_events "
                                            "where event_id like 'fresh-%'").fetchone()
        runs, phases = microbatch_runs(home, since=begin)
        print(f"load: {args.rate} events/s for {args.seconds} s; {len(acked)} batches acknowledged "
              f"({len(acked) * args.rate:,} events)")
        print(f"micro-batch runs: {len(runs)}; created to finished: "
              f"{summary([end - created for created, end in runs])}; "
              f"snapshots seen by the reader: {watcher.snapshots_seen}")
        print("  per phase of a run: " + "; ".join(f"{name} p50 {percentile(times, 0.5):.2f} s"
                                                  for name, times in phases.items()))
        print("  per stage of a batch:")
        for name, values in stages(acked, watcher.visible_at, runs, clients).items():
            print(f"    {name}: {summary(values)}")
        print(f"freshness (acknowledged -> visible in the published real-time mart): {summary(latencies)} "
              f"(requirement p95 <= {REQUIRED_P95_S:.0f} s, goal {GOAL_P95_S:.0f} s)")
        for name, shown in clients.items():
            values = [shown[n] - t for n, t in acked.items() if n in shown]
            if values:
                print(f"freshness (acknowledged -> {name}): {summary(values)} ({len(values)} of {len(acked)} "
                      "batches seen)")
            else:
                print(f"freshness (acknowledged -> {name}): no batch seen")
        load = os.getloadavg()
        print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores")
        print(f"zero loss: {len(acked) * args.rate:,} acknowledged, {distinct:,} distinct in fct_events, "
              f"{stored - distinct} duplicates, {len(missing)} batches never visible; "
              f"real-time mart disagreements: {len(watcher.mismatches)}")
        for line in watcher.mismatches[:5]:
            print(f"  {line}")
        ok = not missing and stored == distinct == len(acked) * args.rate and not watcher.mismatches
        if args.factor > 1:
            publish_scaling.report(layout.warehouse, args.factor)
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
