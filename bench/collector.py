"""Benchmark of the event collector on loopback: accepted events per minute through /v1/batch,
acknowledgement latency, and zero loss (every acknowledged event stored exactly once).

A bounded load generator (pre-encoded batches, a fixed number of concurrent clients) posts to one
collector process in a temporary data directory, then the stored landing files are counted.

    make bench-collector            # or: python -m bench.collector --events 1200000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

from bench.loopback import free_port
from ingestion.paths import DataLayout

REQUIRED_PER_MINUTE = 1_000_000  # the users' requirement
GOAL_PER_MINUTE = 5_000_000


def batches(count: int, size: int) -> list[tuple[list[str], bytes]]:
    """Pre-encoded batch bodies (and their event ids), so the generator measures the server."""
    out = []
    for b in range(count):
        events = [{"event_id": f"bench-{b}-{i}", "event_type": "page_view", "timestamp": "2026-11-20T10:00:00Z",
                   "tenant_id": "t001", "user_id": f"u{i % 5000}", "session_id": f"s{b}-{i // 20}",
                   "properties": {"path": f"/p/{i % 50}"}, "context": {"device": "mobile"}} for i in range(size)]
        out.append(([e["event_id"] for e in events], orjson.dumps({"batch": events})))
    return out


async def post_all(url: str, work: list[tuple[list[str], bytes]], clients: int) -> tuple[list[float], list[str]]:
    latencies: list[float] = []
    acknowledged: list[str] = []
    pending = list(reversed(work))

    async def client():
        async with httpx.AsyncClient(headers={"Authorization": "Bearer bench-key",
                                              "Content-Type": "application/json"}, timeout=60) as http:
            while pending:
                ids, body = pending.pop()
                started = time.perf_counter()
                reply = await http.post(url, content=body)
                latencies.append(time.perf_counter() - started)
                if reply.status_code == 200 and reply.json()["accepted"] == len(ids):
                    acknowledged.extend(ids)

    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, acknowledged


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_200_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    work = batches(args.events // args.batch_size, args.batch_size)
    with tempfile.TemporaryDirectory(prefix="bench-collector-") as tmp:
        layout = DataLayout(Path(tmp) / "data")
        port = free_port()
        env = {**os.environ, "PLATFORM_DATA_DIR": str(layout.root), "COLLECTOR_WRITE_KEYS": "bench-key=t001"}
        server = subprocess.Popen([sys.executable, "-m", "ingestion.collector", "--port", str(port)], env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{base}/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            started = time.perf_counter()
            latencies, acknowledged = asyncio.run(post_all(f"{base}/v1/batch", work, args.clients))
            seconds = time.perf_counter() - started
        finally:
            server.terminate()
            server.wait(timeout=60)
        stored = [line for path in layout.events_dir.glob("collector-*.jsonl")
                  for line in path.read_bytes().splitlines()]
        stored_ids = {orjson.loads(line)["event_id"] for line in stored}
    per_minute = len(acknowledged) / seconds * 60
    q = statistics.quantiles([s * 1000 for s in latencies], n=100, method="inclusive")
    print(f"collector on loopback: {len(acknowledged):,} events acknowledged in {seconds:.1f} s with {args.clients} "
          f"clients, batches of {args.batch_size} (one server process, 2 cores shared with the generator)")
    print(f"throughput: {per_minute:,.0f} events per minute (requirement {REQUIRED_PER_MINUTE:,}: "
          f"{'MET' if per_minute >= REQUIRED_PER_MINUTE else 'MISSED'}; goal {GOAL_PER_MINUTE:,}: "
          f"{'MET' if per_minute >= GOAL_PER_MINUTE else 'MISSED'})")
    print(f"acknowledgement latency per batch: p50 {q[49]:.1f} ms  p99 {q[98]:.1f} ms  (n={len(latencies)})")
    lost = set(acknowledged) - stored_ids
    whole = not lost and len(stored) == len(stored_ids)
    print(f"zero loss: {len(stored):,} lines stored, {len(stored_ids):,} distinct, {len(lost)} acknowledged but "
          f"missing, {len(stored) - len(stored_ids)} duplicates: {'MET' if whole else 'MISSED'}")
    return 0 if whole else 1


if __name__ == "__main__":
    sys.exit(main())
