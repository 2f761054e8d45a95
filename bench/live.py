"""Benchmark of the live path: from a publish of the real-time mart to the new figures on the live
page (`GET /live`, pushed over the WebSocket), against a dashboard that polls the REST API as fast
as a browser reasonably would (every 100 ms), on the same publishes.

On a copy of a published data directory (`make run` first; the copy keeps `data/` untouched), the
metrics server starts, Debian's Chromium opens the live page as a tenant, and a poller asks the
REST API for the same tenant's events today. Each round replaces the current minute's row of the
mart, as a micro-batch merges it, and publishes the change as a micro-batch does (the mart's rows
past its publish cursor, into the DuckLake). "Published" is when the `CURRENT` pointer moved (its
file's time); the page's time is when it drew the new total (`data-updated-at`, the browser's clock,
the same machine's). Prints p50, p95 and max of both, and the machine's load average.

    make bench-live            # or: python -m bench.live --data-dir data --rounds 20
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import httpx
import orjson

from bench.loopback import free_port
from ingestion.paths import DataLayout
from semantic import rollups, snapshots
from semantic.auth import issue_token
from semantic.publication import DuckDbSnapshots, Version

SECRET = secrets.token_hex(32)
TENANT = "t001"
GOAL_SECONDS = 1.0
POLL_SECONDS = 0.1
# what a micro-batch publishes of the real-time mart (its dbt model's publish cursor)
PER_MINUTE = snapshots.Changes(tables={"marts.metrics_per_minute": snapshots.Cursor(
    "metrics_per_minute_key", "last_loaded_at", "minute_at")})
EVENTS_TILE = "document.getElementById('live.live_events')"
TODAY = orjson.dumps({"measures": ["live.live_events"], "timezone": "UTC",
                      "timeDimensions": [{"dimension": "live.metric_time", "dateRange": "today"}]}).decode()


def write_minute(warehouse: Path, tenant: str, events: int, revenue: float = 0.0,
                 minute: datetime | None = None) -> datetime:
    """Replace the real-time mart's row of one tenant and minute (now's by default), as a micro-batch
    merges it: `events` events, `revenue` of it at checkout (one checkout if any). The minute."""
    minute = minute or datetime.now(UTC).replace(second=0, microsecond=0, tzinfo=None)
    key = f"{minute}|{tenant}"
    with duckdb.connect(str(warehouse)) as conn:
        conn.execute("delete from marts.metrics_per_minute where metrics_per_minute_key = ?", [key])
        conn.execute("insert into marts.metrics_per_minute (metrics_per_minute_key, minute_at, tenant_id, events, "
                     "visitors, sessions_started, page_views, signups, checkouts, revenue, errors, last_loaded_at) "
                     "values (?, ?, ?, ?, 1, 0, ?, 0, ?, ?, 0, ?)",
                     [key, minute, tenant, events, events - (revenue > 0), int(revenue > 0), revenue,
                      datetime.now(UTC).replace(tzinfo=None)])
    return minute


def publish(layout: DataLayout, manifest: Path, changes: snapshots.Changes | None = None) -> Version:
    """Publish the layout's warehouse as the pipeline does, rollups included: everything, or only
    `changes`, as a micro-batch does (`PER_MINUTE`)."""
    publication = DuckDbSnapshots(layout.warehouse, layout.root / "published")
    return publication.publish(changes=changes, build=rollups.builder(manifest))


class Poller(threading.Thread):
    """A dashboard polling the REST API: when it first saw each total."""

    def __init__(self, url: str, token: str):
        super().__init__(daemon=True)
        self.url, self.token = url, token
        self.seen: dict[int, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(headers={"Authorization": self.token}, timeout=30) as client:
            while not self.stop.wait(POLL_SECONDS):
                reply = client.get(f"{self.url}/cubejs-api/v1/load", params={"query": TODAY}).json()
                if "data" in reply:
                    self.seen.setdefault(int(reply["data"][0]["live.live_events"] or 0), time.time())


def _percentiles(values: list[float]) -> str:
    p95 = statistics.quantiles(values, n=100, method="inclusive")[94] if len(values) > 1 else values[0]
    return f"p50 {statistics.median(values):.2f} s, p95 {p95:.2f} s, max {max(values):.2f} s"


def wait(page, expression: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise SystemExit(f"the live page did not change within {timeout} s ({expression})")
        time.sleep(0.01)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    from orchestration.environment import SEMANTIC_MANIFEST
    from reports import browser

    source = args.data_dir.resolve()
    if snapshots.current(source / "published") is None:
        raise SystemExit(f"nothing published under {source / 'published'}: run `make run` first")
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        layout = DataLayout(Path(tmp) / "data")
        layout.root.mkdir()
        shutil.copyfile(source / "warehouse.duckdb", layout.warehouse)
        shutil.copytree(source / "published", layout.root / "published")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen([sys.executable, "-m", "semantic.server", "--port", str(port)], env={
            **os.environ, "PLATFORM_DATA_DIR": str(layout.root), "SEMANTIC_API_SECRET": SECRET})
        try:
            for _ in range(600):
                try:
                    if httpx.get(f"{url}/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            else:
                raise SystemExit("the metrics server did not become ready")
            token = issue_token(SECRET, TENANT, ttl_seconds=3600)
            poller = Poller(url, token)
            pushed, polled = [], []
            with browser.chromium() as chromium:
                page = chromium.new_page(viewport=browser.VIEWPORT)
                page.goto(f"{url}/live#token={token}")
                wait(page, f"{EVENTS_TILE}.textContent !== '–'", 60)
                poller.start()
                print(f"live page and a REST poller (every {POLL_SECONDS * 1000:.0f} ms) as tenant {TENANT}; "
                      f"{args.rounds} publishes of the real-time mart")
                for round_ in range(args.rounds):
                    shown = page.evaluate(f"{EVENTS_TILE}.textContent")
                    total = int(shown.replace(",", ""))
                    minute = datetime.now(UTC).replace(second=0, microsecond=0, tzinfo=None)
                    with duckdb.connect(str(layout.warehouse), read_only=True) as conn:
                        before = conn.execute("select coalesce(sum(events), 0) from marts.metrics_per_minute "
                                              "where tenant_id = ? and minute_at = ?", [TENANT, minute]).fetchone()[0]
                    write_minute(layout.warehouse, TENANT, before + 7, minute=minute)
                    publish(layout, SEMANTIC_MANIFEST, PER_MINUTE)
                    moved = (layout.root / "published" / snapshots.POINTER).stat().st_mtime
                    wait(page, f"{EVENTS_TILE}.textContent !== '{shown}'", 30)
                    pushed.append(float(page.evaluate(f"{EVENTS_TILE}.dataset.updatedAt")) / 1000 - moved)
                    deadline = time.monotonic() + 30
                    while total + 7 not in poller.seen and time.monotonic() < deadline:
                        time.sleep(0.01)
                    polled.append(poller.seen.get(total + 7, float("nan")) - moved)
                    print(f"  round {round_ + 1:>2}: page {pushed[-1]:.2f} s, REST poller {polled[-1]:.2f} s",
                          flush=True)
                    time.sleep(1)
                poller.stop.set()
            load = os.getloadavg()
            print(f"publish -> live page (pushed): {_percentiles(pushed)}")
            print(f"publish -> REST poller       : {_percentiles(polled)}")
            p95 = statistics.quantiles(pushed, n=100, method="inclusive")[94] if len(pushed) > 1 else pushed[0]
            print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores; goal: the page "
                  f"within {GOAL_SECONDS:.0f} s at p95: {'MET' if p95 <= GOAL_SECONDS else 'MISSED'}")
        finally:
            server.terminate()
            server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
