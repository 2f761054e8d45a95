"""The collector benchmark's baseline: a server that only decodes each batch, appends its events as
JSON lines and fsyncs them before answering (group commit), with as many uvicorn worker processes
as the collector, started the same way (`ingestion.collector.workers`: a listening socket each).
No validation, no mapping, no de-duplication, no metrics: the floor the collector's own work is
measured against.

With `--dedup` it hands its lines (and each message's `messageId`) to the collector's own landing
process instead of writing them itself: the baseline plus the collector's durable de-duplication
(one process that claims every id, appends, fsyncs and journals the ids, `ingestion/collector/
id_index.py`), still without validation, mapping or metrics. The benchmark measures it to tell what
the de-duplication alone costs beside the baseline's whole request.

With `--least` it maps each batch with `bench/least_mapping.py` (the least per-event work of turning
the benchmark's Segment calls into our records) instead of decoding and encoding it as is, and
stores those lines itself: the ceiling of a collector that maps in Python. `--least --claims` also
claims each id with `bench/least_claims.py` (the least cross-process de-duplication, not durable)
and stores only the lines of the ids it claimed: the ceiling of one that maps and de-duplicates.

    python -m bench.baseline_collector --port 8101 --workers 2 --dir /tmp/baseline
    python -m bench.baseline_collector --port 8103 --least --dir /tmp/least
    python -m bench.baseline_collector --port 8104 --least --claims --dir /tmp/claims
    PLATFORM_DATA_DIR=/tmp/dedup COLLECTOR_WRITE_KEYS=k=t001 python -m bench.baseline_collector --port 8102 --dedup
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

import msgspec
import orjson


class Envelope(msgspec.Struct):
    batch: list[msgspec.Raw]


_decoder = msgspec.json.Decoder(Envelope)
_event = msgspec.json.Decoder()


def lines(body: bytes) -> tuple[list, list[bytes]]:
    """A batch's events, decoded, and each as a JSON line: all the baseline does with a request's body."""
    events = [_event.decode(raw) for raw in _decoder.decode(body).batch]
    return events, [orjson.dumps(e) + b"\n" for e in events]


class Baseline:
    def __init__(self, directory: Path, landing: Path | None = None, least: bool = False, claims: str = ""):
        self.directory, self.lines, self.claims = directory, lines, None
        if least:
            from bench.least_mapping import lines as mapped

            self.lines = mapped
        if claims:
            from bench.least_claims import Claims

            self.claims = Claims(claims)
        self.landing_socket, self.landing = landing, None
        self.fd = -1
        self.pending: list[bytes] = []
        self.waiters: list[asyncio.Future] = []
        self.wake: asyncio.Event | None = None

    async def flush_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.wake.wait()
            self.wake.clear()
            lines, waiters, self.pending, self.waiters = self.pending, self.waiters, [], []
            await loop.run_in_executor(None, self.write, b"".join(lines))
            for waiter in waiters:
                waiter.set_result(None)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]
        os.fsync(self.fd)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            message = await receive()
            if self.landing_socket is not None:
                from ingestion.collector.landing_client import LandingClient

                self.landing = LandingClient(self.landing_socket)
            self.fd = os.open(self.directory / f"baseline-{os.getpid()}.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            self.wake = asyncio.Event()
            task = asyncio.ensure_future(self.flush_forever())
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            task.cancel()
            os.close(self.fd)
            await send({"type": "lifespan.shutdown.complete"})
            return message
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        status, reply = 200, b'{"success":true}'
        if scope["path"] == "/v1/batch":
            try:
                events, encoded = self.lines(body)
            except (ValueError, msgspec.ValidationError):
                return await self.reply(send, 400, b'{"success":false}')
            if self.claims is not None:
                encoded = [line for line, new in zip(encoded, self.claims.claim(events), strict=True) if new]
            if self.landing is not None:
                return await self.through_landing(events, encoded, send)
            waiter = asyncio.get_running_loop().create_future()
            self.pending.append(b"".join(encoded))
            self.waiters.append(waiter)
            self.wake.set()
            await waiter
        await self.reply(send, status, reply)

    @staticmethod
    async def reply(send, status: int, body: bytes) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def through_landing(self, events: list, encoded: list[bytes], send) -> None:
        from ingestion.collector.protocol import Stored

        reply = await self.landing.store([e["messageId"] for e in events], encoded, [], [], [])
        status = 200 if isinstance(reply, Stored) else 503
        await self.reply(send, status, orjson.dumps({"success": status == 200}))


def app():
    landing = os.environ.get("BASELINE_LANDING_SOCKET")
    return Baseline(Path(os.environ["BASELINE_DIR"]), Path(landing) if landing else None,
                    least=os.environ.get("BASELINE_LEAST") == "1", claims=os.environ.get("BASELINE_CLAIMS", ""))


def main() -> None:
    from ingestion.collector.workers import serve

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--dedup", action="store_true", help="store through the collector's landing process "
                        "(PLATFORM_DATA_DIR, COLLECTOR_WRITE_KEYS as for the collector)")
    parser.add_argument("--least", action="store_true", help="map each batch with bench/least_mapping.py")
    parser.add_argument("--claims", action="store_true", help="with --least: claim each id with "
                        "bench/least_claims.py, storing only the lines of the ids claimed")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    os.environ["BASELINE_DIR"] = str(args.dir)
    os.environ["BASELINE_LEAST"] = "1" if args.least else "0"
    claims = f"/dev/shm/bench-least-claims-{os.getpid()}" if args.claims else ""
    os.environ["BASELINE_CLAIMS"] = claims
    os.environ["PYTHONHASHSEED"] = "0"  # the workers hash ids alike (least_claims.py)
    landing = None
    if args.dedup:
        from ingestion.collector.__main__ import lock_data_dir, settings_from_environment, start_landing
        from ingestion.collector.landing_service import socket_path

        settings = settings_from_environment()
        landing = start_landing(lock_data_dir(settings))
        os.environ["BASELINE_LANDING_SOCKET"] = str(socket_path(settings))
    try:
        serve("bench.baseline_collector:app", "127.0.0.1", args.port, args.workers, factory=True, log_level="warning")
    finally:
        if claims:
            Path(claims).unlink(missing_ok=True)
        if landing is not None:
            landing.terminate()
            landing.wait(timeout=60)


if __name__ == "__main__":
    main()
