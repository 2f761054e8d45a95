"""The collector benchmark's baseline: a server that only decodes each batch, appends its events as
JSON lines and fsyncs them before answering (group commit), with as many uvicorn worker processes
as the collector, started the same way (`ingestion.collector.workers`: a listening socket each).
No validation, no mapping, no de-duplication, no metrics: the floor the collector's own work is
measured against.

    python -m bench.baseline_collector --port 8101 --workers 2 --dir /tmp/baseline
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


class Baseline:
    def __init__(self, directory: Path):
        self.directory = directory
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
            events = [_event.decode(raw) for raw in _decoder.decode(body).batch]
            waiter = asyncio.get_running_loop().create_future()
            self.pending.append(b"".join(orjson.dumps(e) + b"\n" for e in events))
            self.waiters.append(waiter)
            self.wake.set()
            await waiter
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(reply)).encode())]})
        await send({"type": "http.response.body", "body": reply})


def app():
    return Baseline(Path(os.environ["BASELINE_DIR"]))


def main() -> None:
    from ingestion.collector.workers import serve

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    os.environ["BASELINE_DIR"] = str(args.dir)
    serve("bench.baseline_collector:app", "127.0.0.1", args.port, args.workers, factory=True, log_level="warning")


if __name__ == "__main__":
    main()
