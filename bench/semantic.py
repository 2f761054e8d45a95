"""Benchmark of the metrics server on loopback: latency under 100 concurrent clients, and overhead.

Reads the published snapshot of a data directory that the main job has filled (`make run` first;
the default sample). Starts the server in its own process, then measures:

- a dashboard query (one metric by day over 90 days): warm (cached) and cold (every request a
  query not seen before), each with 100 concurrent clients; cold both from the rollup and, as the
  baseline, from a second server with rollups off (MetricFlow compiles every query);
- a complex query (three metrics, two dimensions, monthly, filtered), cold, 100 concurrent clients,
  from a rollup and from MetricFlow;
- a complex query no rollup can answer (two event metrics by event type and the user's country,
  weekly, a `contains` filter), cold, 100 concurrent clients, against the same SQL (as the server
  reports it) run directly in DuckDB by 100 threads in the same run;
- one cold query at a time, against the same SQL run directly in DuckDB: the layer's overhead.

    make bench-semantic            # or: python -m bench.semantic --data-dir data
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlencode

import httpx
import orjson

from bench.loopback import free_port
from semantic import snapshots
from semantic.auth import issue_token

SECRET = "bench-secret-that-is-long-enough-for-hs256"
CLIENTS = 100


def dashboard(end: date) -> dict:
    return {"measures": ["orders.revenue"], "timeDimensions": [{
        "dimension": "orders.metric_time", "granularity": "day",
        "dateRange": [(end - timedelta(days=89)).isoformat(), end.isoformat()]}]}


def complex_query(end: date, devices: list[str]) -> dict:
    return {"measures": ["orders.revenue", "orders.orders", "orders.average_order_value"],
            "dimensions": ["orders.tenant", "orders.user__country"],
            "timeDimensions": [{"dimension": "orders.metric_time", "granularity": "month",
                                "dateRange": [(end - timedelta(days=89)).isoformat(), end.isoformat()]}],
            "filters": [{"member": "orders.user__device", "operator": "equals", "values": devices}]}


def no_rollup_query(end: date, plan_letters: str) -> dict:
    """Event metrics by event type and the user's country, weekly, with a `contains` filter: no rollup
    has these dimensions, and `contains` is a filter rollups do not apply."""
    return {"measures": ["events.events", "events.active_users"],
            "dimensions": ["events.event__event_type", "events.user__country"],
            "timeDimensions": [{"dimension": "events.metric_time", "granularity": "week",
                                "dateRange": [(end - timedelta(days=60)).isoformat(), end.isoformat()]}],
            "filters": [{"member": "events.user__plan", "operator": "contains", "values": [plan_letters]}]}


def concurrent_direct(conn, sqls: list[str]) -> list[float]:
    """The same statements straight in DuckDB, CLIENTS threads at a time, each on its own cursor."""
    from concurrent.futures import ThreadPoolExecutor

    def run(sql: str) -> float:
        cursor = conn.cursor()
        try:
            started = time.perf_counter()
            cursor.execute(sql).fetchall()
            return time.perf_counter() - started
        finally:
            cursor.close()

    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(run, sqls))


def percentiles(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return f"p50 {q[49]:7.1f} ms  p95 {q[94]:7.1f} ms  p99 {q[98]:7.1f} ms  (n={len(ms)})"


class Connection:
    """One keep-alive HTTP/1.1 connection with just what the benchmark needs.

    The load generator shares two cores with the server: a minimal client keeps its own CPU
    cost (and so its effect on the figures) small.
    """

    def __init__(self, host: str, port: int, token: str):
        self.host, self.port, self.token = host, port, token
        self.reader = self.writer = None

    async def get(self, target: str) -> dict:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(f"GET {target} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: {self.token}\r\n\r\n"
                          .encode())
        status = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        body = orjson.loads(await self.reader.readexactly(length))
        if b" 200 " not in status:
            raise SystemExit(f"query failed: {status!r} {body}")
        return body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def _load(connection: Connection, query: dict) -> float:
    target = "/cubejs-api/v1/load?" + urlencode({"query": orjson.dumps(query).decode(), "queryType": "multi"})
    started = time.perf_counter()
    while (await connection.get(target)).get("error") == "Continue wait":
        pass
    return time.perf_counter() - started


async def concurrent(port: int, token: str, queries: list[dict]) -> list[float]:
    """CLIENTS clients share the queries between them; each sends its next one when the last returns."""
    pending = list(queries)
    samples: list[float] = []

    async def worker():
        connection = Connection("127.0.0.1", port, token)
        try:
            while pending:
                samples.append(await _load(connection, pending.pop()))
        finally:
            await connection.close()

    await asyncio.gather(*(worker() for _ in range(CLIENTS)))
    return samples


class Server:
    """The metrics server in its own process(es), with or without rollups."""

    def __init__(self, data_dir: Path, workers: int, rollups: bool):
        self.port = free_port()
        env = {**os.environ, "PLATFORM_DATA_DIR": str(data_dir.resolve()), "SEMANTIC_API_SECRET": SECRET,
               "SEMANTIC_ROLLUPS": "on" if rollups else "off"}
        self.process = subprocess.Popen([sys.executable, "-m", "semantic.server", "--port", str(self.port),
                                         "--workers", str(workers)], env=env)

    def wait_ready(self) -> int:
        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz").status_code == 200:
                    return self.port
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"the metrics server on port {self.port} did not become ready")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def one_at_a_time(port: int, token: str, queries: list[dict], conn) -> tuple[list[float], list[float]]:
    """Each query through the server, then the SQL the server ran, straight in DuckDB."""
    base = f"http://127.0.0.1:{port}/cubejs-api/v1"
    layer, direct = [], []
    with httpx.Client(headers={"Authorization": token}) as client:
        for query in queries:
            text = orjson.dumps(query).decode()
            started = time.perf_counter()
            while client.get(f"{base}/load", params={"query": text}).json().get("error"):
                pass
            layer.append(time.perf_counter() - started)
            sql = client.get(f"{base}/sql", params={"query": text}).json()["sql"]["sql"][0]
            started = time.perf_counter()
            conn.execute(sql).fetchall()
            direct.append(time.perf_counter() - started)
    return layer, direct


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2, help="server processes")
    args = parser.parse_args()
    published = args.data_dir.resolve() / "published"
    snapshot = snapshots.current(published)
    if snapshot is None:
        raise SystemExit(f"nothing published under {published}: run `make run` first")
    conn, _ = snapshots.connect_current(published)
    end = conn.execute("select max(date_day) from marts.metrics_daily").fetchone()[0]
    devices = [d for (d,) in conn.execute("select distinct device from marts.dim_users order by 1").fetchall()]

    servers = [Server(args.data_dir, args.workers, rollups=True), Server(args.data_dir, args.workers, rollups=False)]
    try:
        with_rollups, without = (server.wait_ready() for server in servers)
        token = issue_token(SECRET, role="admin")
        print(f"metrics server on the published snapshot {snapshot.version} ({args.data_dir}); "
              f"{CLIENTS} concurrent clients, {args.workers} server process(es)")

        warm_query = dashboard(end)
        for port in (with_rollups, without):  # every worker process of both servers up and answering
            asyncio.run(concurrent(port, token, [warm_query] * 4 * CLIENTS))
        warm = asyncio.run(concurrent(with_rollups, token, [warm_query] * args.requests))
        print(f"dashboard, warm                         : {percentiles(warm)}")
        for label, port in (("rollup", with_rollups), ("MetricFlow, no rollups", without)):
            cold_queries = [dashboard(end - timedelta(days=i + 1)) for i in range(args.requests)]
            cold = asyncio.run(concurrent(port, token, cold_queries))
            print(f"dashboard, cold ({label:<22}): {percentiles(cold)}")
        combos = [[d] for d in devices] + [[a, b] for a in devices for b in devices if a < b]
        complex_queries = [complex_query(end - timedelta(days=i // len(combos)), combos[i % len(combos)])
                           for i in range(min(args.requests, 300))]
        for label, port in (("rollup", with_rollups), ("MetricFlow, no rollups", without)):
            complex_cold = asyncio.run(concurrent(port, token, complex_queries))
            print(f"complex, cold   ({label:<22}): {percentiles(complex_cold)}")
        letters = ["a", "e", "i", "o", "r", "s", "t", "n", "ro", "ee", "pr", "ba", "st", "fr"]
        beyond = [no_rollup_query(end - timedelta(days=i // len(letters)), letters[i % len(letters)])
                  for i in range(min(args.requests, 300))]
        served = asyncio.run(concurrent(with_rollups, token, beyond))
        with httpx.Client(headers={"Authorization": token}) as client:
            sqls = [client.get(f"http://127.0.0.1:{with_rollups}/cubejs-api/v1/sql",
                               params={"query": orjson.dumps(q).decode()}).json()["sql"]["sql"][0] for q in beyond]
        direct = concurrent_direct(conn, sqls)
        print(f"no rollup fits, cold (through the server): {percentiles(served)}")
        print(f"no rollup fits, the same SQL in DuckDB   : {percentiles(direct)}")

        # One at a time: the layer (HTTP + compile or rollup + run) against the same SQL straight in DuckDB.
        single = {}
        for kind, port, queries in (
                ("dashboard (rollup)", with_rollups, [dashboard(end - timedelta(days=5000 + i)) for i in range(20)]),
                ("dashboard (MetricFlow)", without, [dashboard(end - timedelta(days=6000 + i)) for i in range(20)]),
                ("complex (rollup)", with_rollups,
                 [complex_query(end - timedelta(days=5000 + i), devices) for i in range(20)]),
                ("complex (MetricFlow)", without,
                 [complex_query(end - timedelta(days=6000 + i), devices) for i in range(20)])):
            layer, direct = one_at_a_time(port, token, queries, conn)
            single[kind] = max(layer)
            print(f"{kind:<22} one cold query at a time: median {statistics.median(layer) * 1000:6.1f} ms through "
                  f"the server, {statistics.median(direct) * 1000:6.1f} ms for the same SQL in DuckDB: overhead "
                  f"x{statistics.median(layer) / statistics.median(direct):.1f}")
        warm_p95 = statistics.quantiles(warm, n=100, method="inclusive")[94]
        print(f"goals: warm p95 <= 100 ms with {CLIENTS} clients: {'MET' if warm_p95 <= 0.1 else 'MISSED'}; "
              f"cold single-metric-by-day <= 1 s (slowest alone {single['dashboard (rollup)'] * 1000:.0f} ms): "
              f"{'MET' if single['dashboard (rollup)'] <= 1 else 'MISSED'}; "
              f"complex cold <= 5 s (slowest alone {single['complex (rollup)'] * 1000:.0f} ms from the rollup, "
              f"{single['complex (MetricFlow)'] * 1000:.0f} ms compiled): "
              f"{'MET' if max(single['complex (rollup)'], single['complex (MetricFlow)']) <= 5 else 'MISSED'}")
    finally:
        for server in servers:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
