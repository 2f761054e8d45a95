"""Benchmark of the event collector against a baseline server, on loopback, in one run.

Both servers get the same Segment batches (`/v1/batch`, Basic auth, `page` and `Product Added`
calls with unique message ids) from the same load generator, with the same number of worker
processes (the collector adds its landing process, which does the writing):

1. throughput: `--clients` connections post batches of `--batch-size` (100) for `--seconds`:
   events acknowledged per minute and the acknowledgement latency (p50, p99), for the collector and
   for the baseline (`bench/baseline_collector.py`: decode, append, fsync, nothing else). The servers
   run side by side and take turns, in `--rounds` windows each, so that a change in what else runs
   on the machine falls on all of them alike (one 20 s window each, on a shared machine, once gave
   the baseline half the throughput it had a minute before);
2. mixed: small batches (10 events) from `--clients` connections while one connection keeps posting
   20,000-event batches: the small batches' p99, next to their p99 without the large ones;
3. zero loss: every acknowledged event is in the landing zone exactly once;
4. where the CPU goes: (1) again for the baseline storing through the collector's landing process
   (`baseline_collector.py --dedup`: the durable de-duplication, without validation or mapping), and
   the CPU time of validating and mapping one batch in this process (`intake.take_in`), and of the
   baseline's decoding and encoding of it, beside the CPU per batch a ratio of 0.8x to the baseline allows;
5. the ceiling: (1) again for the baseline mapping the calls onto our records with the least per-event
   work (`baseline_collector.py --least`, `least_mapping.py`: the collector's own lines, checked here,
   and nothing else), as bench-ml's oracle bounds its detectors: no collector that maps each event in
   Python does less per event; and for that server also claiming each id with the least cross-process
   de-duplication (`--least --claims`, `least_claims.py`: a table in shared memory, not durable).

The load generator writes pre-encoded requests on keep-alive connections and reads the status line
and body, nothing else (measured: its own CPU time is printed), so that it is not what limits. The
machine's load average (1 minute) is printed with each server's figures, and the CPU time the
server's processes spent per batch of the throughput measurement: on a shared machine the two
servers may not get the same share of the cores, which the load tells, while CPU per batch does
not depend on that share.

    make bench-collector                  # or: python -m bench.collector --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

from bench.loopback import free_port

GOAL_PER_MINUTE = 10_000_000
GOAL_RATIO = 0.8
GOAL_P99_MS = 50.0
KEY, TENANT = "bench-key", "t001"
MARK = b"@@@@@@@@@@"  # replaced by the batch's number: every message id is unique
DEDUP = "+de-dup"  # the baseline storing through the collector's landing process
LEAST = "+least"  # the baseline mapping the calls with the least per-event work (`least_mapping.py`)
CLAIMS = "+claims"  # and claiming each id with the least cross-process de-duplication (`least_claims.py`)
THROUGHPUT_ONLY = (DEDUP, LEAST, CLAIMS)  # references, measured for throughput only
LANDING = b"ingestion.collector.landing_service"


def template(size: int, sent_at: str) -> bytes:
    """One batch body whose message ids carry MARK, half page calls and half `Product Added`."""
    messages = []
    for i in range(size):
        common = {"messageId": f"b{MARK.decode()}-{i}", "anonymousId": f"anon-{i % 977}", "userId": f"u{i % 5000}",
                  "timestamp": sent_at, "context": {"library": {"name": "bench"}, "device": {"type": "mobile"}}}
        if i % 2:
            messages.append({**common, "type": "track", "event": "Product Added",
                             "properties": {"product_id": f"p{i % 50}", "quantity": 1 + i % 3, "price": 9.5}})
        else:
            messages.append({**common, "type": "page", "name": "Home", "properties": {"path": f"/p/{i % 50}"}})
    return orjson.dumps({"batch": messages, "sentAt": sent_at})


@dataclass
class Load:
    latencies: list[float] = field(default_factory=list)
    acknowledged: list[int] = field(default_factory=list)  # batch numbers answered 200
    statuses: dict[int, int] = field(default_factory=dict)


class Generator:
    """Batches numbered from a shared counter, posted on keep-alive connections."""

    def __init__(self, port: int, first: int):
        self.port, self.next = port, first
        auth = base64.b64encode(f"{KEY}:".encode()).decode()
        self.head = (f"POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {auth}\r\n"
                     "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n").encode()

    async def connection(self, body: bytes, until: float, load: Load, pause: float = 0.0) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            while time.perf_counter() < until:
                number = self.next
                self.next += 1
                data = body.replace(MARK, b"%010d" % number)
                started = time.perf_counter()
                writer.write(self.head % len(data) + data)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = next(int(line[15:]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                await reader.readexactly(length)
                load.latencies.append(time.perf_counter() - started)
                load.statuses[status] = load.statuses.get(status, 0) + 1
                if status == 200:
                    load.acknowledged.append(number)
                if pause:
                    await asyncio.sleep(pause)
        finally:
            writer.close()


def cpu_seconds(pid: int, only: bytes | None = None) -> float:
    """CPU time (user + system) of a process and its descendants, from /proc (Linux); `only`: of those
    whose command line holds it."""
    tick, total, pids = os.sysconf("SC_CLK_TCK"), 0.0, [pid]
    while pids:
        current = pids.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
            command = Path(f"/proc/{current}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if only is None or only in command:
            total += (int(fields[11]) + int(fields[12])) / tick
        pids += [int(child) for child in children]
    return total


def quantiles_ms(latencies: list[float]) -> tuple[float, float]:
    if len(latencies) < 2:
        return math.nan, math.nan
    q = statistics.quantiles([s * 1000 for s in latencies], n=100, method="inclusive")
    return q[49], q[98]


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen
    data: Path

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=120)


def start(name: str, workers: int, root: Path) -> Server:
    port = free_port()
    data = root / name
    env = {**os.environ, "PLATFORM_DATA_DIR": str(data), "COLLECTOR_WRITE_KEYS": f"{KEY}={TENANT}",
           "COLLECTOR_WORKERS": str(workers)}
    if name == "collector":
        command = [sys.executable, "-m", "ingestion.collector", "--port", str(port)]
    else:
        command = [sys.executable, "-m", "bench.baseline_collector", "--port", str(port), "--workers", str(workers),
                   "--dir", str(data), *(["--dedup"] if name == DEDUP else []),
                   *(["--least"] if name in (LEAST, CLAIMS) else []), *(["--claims"] if name == CLAIMS else [])]
    process = subprocess.Popen(command, env=env)
    deadline = time.time() + 60
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            break
        except httpx.HTTPError:
            if time.time() > deadline or process.poll() is not None:
                raise SystemExit(f"{name} did not start") from None
            time.sleep(0.1)
    return Server(name, port, process, data)


async def throughput(port: int, clients: int, batch: bytes, seconds: float, first: int) -> tuple[Load, float, int]:
    generator, load = Generator(port, first), Load()
    started = time.perf_counter()
    await asyncio.gather(*(generator.connection(batch, started + seconds, load) for _ in range(clients)))
    return load, time.perf_counter() - started, generator.next


async def mixed(port: int, clients: int, small: bytes, large: bytes | None, seconds: float, first: int):
    generator, small_load, large_load = Generator(port, first), Load(), Load()
    until = time.perf_counter() + seconds
    jobs = [generator.connection(small, until, small_load, pause=0.01) for _ in range(clients)]
    if large is not None:
        jobs.append(generator.connection(large, until, large_load))
    await asyncio.gather(*jobs)
    return small_load, large_load, generator.next


@dataclass
class Measured:
    """A server's throughput windows, summed."""

    load: Load = field(default_factory=Load)
    seconds: float = 0.0
    first: int = 0  # the next batch number: ids stay unique across windows
    server_cpu: float = 0.0
    landing_cpu: float = 0.0
    client_cpu: float = 0.0
    loads: list[float] = field(default_factory=list)

    def window(self, server: Server, clients: int, batch: bytes, seconds: float) -> None:
        pid = server.process.pid
        self.loads.append(os.getloadavg()[0])
        server_cpu, landing_cpu = cpu_seconds(pid), cpu_seconds(pid, LANDING)
        cpu = resource.getrusage(resource.RUSAGE_SELF)
        load, elapsed, self.first = asyncio.run(throughput(server.port, clients, batch, seconds, self.first))
        used = resource.getrusage(resource.RUSAGE_SELF)
        self.server_cpu += cpu_seconds(pid) - server_cpu
        self.landing_cpu += cpu_seconds(pid, LANDING) - landing_cpu
        self.client_cpu += used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime
        self.seconds += elapsed
        self.load.latencies += load.latencies
        self.load.acknowledged += load.acknowledged
        for status, n in load.statuses.items():
            self.load.statuses[status] = self.load.statuses.get(status, 0) + n
        self.loads.append(os.getloadavg()[0])


def stored_ids(server: Server) -> list[str]:
    return [orjson.loads(line)["event_id"] for path in (server.data / "landing" / "events").glob("*.jsonl")
            for line in path.read_bytes().splitlines()]


@dataclass
class IntakeCpu:
    """CPU seconds per batch, in this process, of what each server does with a batch's events."""

    collector: float  # splitting, validating and mapping it as a collector's worker does (`app.py`)
    least: float  # the least mapping of it (`bench/least_mapping.py`)
    baseline: float  # decoding and encoding it as the baseline does
    same_lines: bool  # the least mapping's lines are the collector's own


def intake_cpu(body: bytes, repeat: int = 300) -> IntakeCpu:
    from datetime import UTC, datetime

    from bench import least_mapping
    from bench.baseline_collector import lines
    from ingestion.collector.intake import Rules, split_batch, take_in, valid_utf8
    from ingestion.collector.settings import Settings
    from ingestion.privacy import Privacy

    settings, body = Settings(), body.replace(MARK, b"%010d" % 0)
    privacy = Privacy(settings.privacy)

    def collector(received: datetime):
        raws, envelope = split_batch(body)
        rules = Rules(TENANT, received, settings.min_timestamp, settings.max_event_bytes, privacy)
        return take_in(raws, None, rules, envelope.sentAt, lambda i: f"batch[{i}]", valid_utf8(body))

    received = datetime.now(UTC)
    intake, (ids, least_lines) = collector(received), least_mapping.lines(body, received, TENANT)
    same = intake.event_ids == ids and intake.event_lines == least_lines and not intake.profile_ids
    seconds = []
    for work in (lambda: collector(datetime.now(UTC)), lambda: least_mapping.lines(body), lambda: lines(body)):
        started = time.process_time()
        for _ in range(repeat):
            work()
        seconds.append((time.process_time() - started) / repeat)
    return IntakeCpu(*seconds, same)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="per measurement")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--rounds", type=int, default=5, help="throughput windows per server, taken in turns")
    args = parser.parse_args()
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    batch, small, large = template(args.batch_size, now), template(10, now), template(20_000, now)
    rows, verdicts = [], []
    with tempfile.TemporaryDirectory(prefix="bench-collector-") as tmp:
        results, servers = {}, []
        try:
            for name in ("baseline", LEAST, CLAIMS, DEDUP, "collector"):
                servers.append(start(name, args.workers, Path(tmp)))
            measured = {server.name: Measured() for server in servers}
            for _ in range(args.rounds):
                for server in servers:
                    measured[server.name].window(server, args.clients, batch, args.seconds / args.rounds)
            for server in servers:
                m = measured[server.name]
                quiet = busy = big = Load()
                if server.name not in THROUGHPUT_ONLY:
                    quiet, _, m.first = asyncio.run(mixed(server.port, 4, small, None, args.seconds / 2, m.first))
                    busy, big, m.first = asyncio.run(mixed(server.port, 4, small, large, args.seconds, m.first))
                batches = max(len(m.load.latencies), 1)
                results[server.name] = (m.load, m.seconds, m.client_cpu / m.seconds, quiet, busy, big, server,
                                        (m.loads[0], m.loads[-1]), (m.server_cpu / batches, m.landing_cpu / batches))
        finally:
            for server in servers:
                server.stop()
        intake = intake_cpu(batch)
        for name, (load, seconds, client_cpu, quiet, busy, big, server, loads, server_cpu) in results.items():
            per_minute = len(load.acknowledged) * args.batch_size / seconds * 60
            p50, p99 = quantiles_ms(load.latencies)
            quiet_p99 = quantiles_ms(quiet.latencies)[1]
            busy_p99 = quantiles_ms(busy.latencies)[1]
            rows.append((name, per_minute, p50, p99, client_cpu, quiet_p99, busy_p99, len(big.acknowledged),
                         dict(sorted({**load.statuses}.items())), loads, server_cpu))
            if name == "collector":
                ids = stored_ids(server)
                expected = (len(load.acknowledged) * args.batch_size + (len(quiet.acknowledged)
                            + len(busy.acknowledged)) * 10 + len(big.acknowledged) * 20_000)
                distinct = len(set(ids))
                verdicts.append(("zero loss", f"{len(ids):,} stored, {distinct:,} distinct, {expected:,} acknowledged",
                                 len(ids) == distinct and distinct >= expected))
    print(f"collector benchmark: {args.workers} worker processes each, {args.clients} connections, batches of "
          f"{args.batch_size}, {args.seconds:.0f} s per measurement (throughput: {args.rounds} windows per server, "
          f"taken in turns), on a machine with {os.cpu_count()} cores (shared with the load generator)")
    print(f"{'server':<10} {'events/min':>14} {'p50 ms':>8} {'p99 ms':>8} {'client cores':>13} "
          f"{'small p99 ms':>13} {'+20k p99 ms':>12} {'20k acked':>10} {'load avg':>12} {'server us/batch':>16}"
          f" {'of it landing':>14}  statuses")
    for name, per_minute, p50, p99, client_cpu, quiet_p99, busy_p99, big_n, statuses, loads, (cpu, landing) in rows:
        print(f"{name:<10} {per_minute:>14,.0f} {p50:>8.1f} {p99:>8.1f} {client_cpu:>13.2f} {quiet_p99:>13.1f} "
              f"{busy_p99:>12.1f} {big_n:>10} {loads[0]:>5.2f}->{loads[1]:<5.2f} {cpu * 1e6:>16,.0f}"
              f" {landing * 1e6:>14,.0f}  {statuses}")
    baseline, least, claims, dedup, collector = rows
    print(f"load average (1, 5, 15 min) at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    ratio, least_ratio, claims_ratio = collector[1] / baseline[1], least[1] / baseline[1], claims[1] / baseline[1]
    base_us, least_us, claims_us, dedup_us, collector_us = (row[-1][0] * 1e6 for row in rows)
    print(f"{DEDUP}: the baseline storing through the collector's landing process (durable de-duplication, no "
          f"validation or mapping): {dedup[1] / baseline[1]:.2f}x the baseline, {dedup_us - base_us:+,.0f} us/batch")
    print(f"{LEAST}: the baseline mapping the calls with the least per-event work (bench/least_mapping.py; its lines "
          f"{'are' if intake.same_lines else 'are NOT'} the collector's), nothing else: {least_ratio:.2f}x the "
          f"baseline, "
          f"{least_us - base_us:+,.0f} us/batch: the ceiling of a collector that maps in Python, "
          f"{'below' if least_ratio < GOAL_RATIO else 'at or above'} the goal of {GOAL_RATIO}x")
    print(f"{CLAIMS}: {LEAST} also claiming each id in a table in shared memory under a lock (bench/least_claims.py: "
          f"the least cross-process de-duplication, not durable): {claims_ratio:.2f}x the baseline, "
          f"{claims_us - base_us:+,.0f} us/batch: the ceiling of a collector that maps and de-duplicates in Python, "
          f"{'below' if claims_ratio < GOAL_RATIO else 'at or above'} the goal of {GOAL_RATIO}x")
    print(f"CPU per batch that 0.8x allows (if throughput follows CPU per batch): {base_us / GOAL_RATIO:,.0f} us, "
          f"{base_us / GOAL_RATIO - base_us:,.0f} us above the baseline's; the collector's: {collector_us:,.0f} us, of "
          f"which de-duplication {dedup_us - base_us:,.0f} us (above). In this process, per batch: validating and "
          f"mapping it as the collector does {intake.collector * 1e6:,.0f} us, the least mapping "
          f"{intake.least * 1e6:,.0f} us, the baseline's decoding and encoding {intake.baseline * 1e6:,.0f} us")
    verdicts = [
        ("throughput", f"{collector[1]:,.0f} events/min (goal {GOAL_PER_MINUTE:,})", collector[1] >= GOAL_PER_MINUTE),
        ("against the baseline", f"{ratio:.2f}x (goal {GOAL_RATIO}x)", ratio >= GOAL_RATIO),
        ("p99 acknowledgement", f"{collector[3]:.1f} ms (goal {GOAL_P99_MS:.0f} ms)", collector[3] <= GOAL_P99_MS),
        ("small batches' p99 while 20k batches arrive", f"{collector[6]:.1f} ms (without them: {collector[5]:.1f} ms)",
         collector[6] <= GOAL_P99_MS),
        *verdicts]
    for what, figure, met in verdicts:
        print(f"{what}: {figure}: {'MET' if met else 'MISSED'}")
    return 0 if verdicts[-1][2] else 1


if __name__ == "__main__":
    sys.exit(main())
