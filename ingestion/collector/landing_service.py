"""The landing process: the one writer of the landing zone and keeper of the acknowledged ids.

The HTTP workers validate requests and hand the result to this process over a Unix socket
(`protocol.py`). It claims each id, appends the lines of every request that arrived since its last
round, fsyncs once (group commit), journals the ids, and answers every request of the round
together: a worker replies 2xx only after that answer. Why one process: claiming an id and storing
its event must be one decision to hold across workers and restarts (see `id_index.py`), and one
writer per file is the landing zone's contract. Its own work per event is a set lookup and a copy,
so it is not what limits throughput; validation, the expensive part, runs in the workers.

Started by the collector's entry point, which holds the data directory's lock and passes it on, so
the lock is held as long as this process lives. It exits when its parent dies (kill -9 of the
entry point) after finishing its round, and on SIGTERM once the workers have disconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ingestion.collector import metrics
from ingestion.collector.id_index import IdIndex
from ingestion.collector.landing_writer import LandingUnavailable, LandingWriter, RoundResult, recover
from ingestion.collector.protocol import Health, Refused, Status, Store, Stored, frame, read_frame, request_decoder
from ingestion.collector.settings import Settings

log = logging.getLogger("ingestion.collector")


def socket_path(settings: Settings):
    return settings.layout.collector_dir / "landing.sock"


@dataclass
class _Round:
    events: list[bytes] = field(default_factory=list)
    profiles: list[bytes] = field(default_factory=list)
    quarantine: list[bytes] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    claimed: set[str] = field(default_factory=set)
    size: int = 0
    done: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def __post_init__(self):
        self.done.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved even without waiters

    def __bool__(self) -> bool:
        return bool(self.events or self.profiles or self.quarantine)


class LandingService:
    def __init__(self, settings: Settings):
        self.settings, self.layout = settings, settings.layout
        self.index = IdIndex(self.layout.collector_dir / "ids", settings.dedup_days)
        self.writer: LandingWriter | None = None
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="landing-writer")
        self.current: _Round | None = None
        self.writing: _Round | None = None
        self.wake = asyncio.Event()
        self.problem, self.free_bytes = "", 0
        self.connections = 0
        self.stopping = asyncio.Event()
        self.closing = False  # set once the workers are gone: the flusher ends when idle

    @property
    def pending_bytes(self) -> int:
        return (self.current.size if self.current else 0) + (self.writing.size if self.writing else 0)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.layout.collector_dir.mkdir(parents=True, exist_ok=True)
        await loop.run_in_executor(self.thread, self.index.load)
        recovered = await loop.run_in_executor(self.thread, recover, self.layout, self.index)
        if recovered.files:
            log.warning("closed %d files left open by a crash (%d ids journaled, %d torn bytes cut)",
                        recovered.files, recovered.ids, recovered.cut_bytes)
        metrics.RECOVERED_FILES.inc(recovered.files)
        self.writer = LandingWriter(self.layout, self.index, self.settings.rotate_bytes, self.settings.rotate_seconds)
        self.current = _Round()
        await self._probe()

    # -- requests ---------------------------------------------------------------------------
    async def store(self, request: Store) -> Stored | Refused:
        if self.problem:
            return Refused(request.request, "unavailable", self.problem)
        if self.pending_bytes > self.settings.max_pending_bytes:
            return Refused(request.request, "busy", "the landing zone is behind; retry shortly")
        ids = request.event_ids + request.profile_ids
        # ids claimed by the round being written: wait for its outcome (stored: a duplicate; failed: ours to store)
        while self.writing is not None and not self.writing.claimed.isdisjoint(ids):
            with contextlib.suppress(Exception):
                await asyncio.shield(self.writing.done)
        work, index = self.current, self.index
        duplicates, waits = 0, False
        stored = {"events": 0, "profiles": 0}
        for kind, kind_ids, lines, target in (("events", request.event_ids, request.event_lines, work.events),
                                              ("profiles", request.profile_ids, request.profile_lines, work.profiles)):
            for event_id, line in zip(kind_ids, lines, strict=True):
                if event_id in work.claimed:
                    duplicates, waits = duplicates + 1, True  # stored by this round if the round succeeds
                elif event_id in index:
                    duplicates += 1
                else:
                    work.claimed.add(event_id)
                    work.ids.append(event_id)
                    target.append(line)
                    work.size += len(line)
                    stored[kind] += 1
        work.quarantine += request.quarantine_lines
        work.size += sum(map(len, request.quarantine_lines))
        if not (stored["events"] or stored["profiles"] or request.quarantine_lines or waits):
            return Stored(request.request, 0, 0, duplicates, False)
        metrics.PENDING_BYTES.set(self.pending_bytes)
        self.wake.set()
        try:
            result: RoundResult = await asyncio.shield(work.done)
        except LandingUnavailable as exc:
            return Refused(request.request, "unavailable", str(exc))
        return Stored(request.request, stored["events"], stored["profiles"], duplicates,
                      bool(request.quarantine_lines) and not result.quarantine_error, result.quarantine_error)

    def health(self, request: Status) -> Health:
        writer = self.writer
        problem = self.problem or (writer.rotation_error if writer else "")
        return Health(request.request, not self.problem, problem, self.free_bytes, self.pending_bytes,
                      writer.open_files if writer else 0, writer.closed_files if writer else 0, len(self.index))

    # -- the group commit ---------------------------------------------------------------------
    async def flush_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=min(0.5, self.settings.rotate_seconds))
            self.wake.clear()
            if not self.current:
                if self.closing:
                    return
                await loop.run_in_executor(self.thread, self.writer.rotate)
                continue
            work, self.current = self.current, _Round()
            self.writing = work
            try:
                result = await loop.run_in_executor(self.thread, self.writer.write_round, work.events,
                                                    work.profiles, work.quarantine, work.ids)
            except LandingUnavailable as exc:
                self.problem = str(exc)
                log.error("round of %d lines not stored: %s", len(work.ids), exc)
                work.done.set_exception(exc)
            else:
                self.index.remember(work.ids)
                work.done.set_result(result)
            finally:
                self.writing = None
                metrics.PENDING_BYTES.set(self.pending_bytes)

    async def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        self.free_bytes, self.problem = await loop.run_in_executor(self.thread, self.writer.probe,
                                                                   self.settings.min_free_bytes)
        metrics.WRITABLE.set(0 if self.problem else 1)
        metrics.FREE_BYTES.set(self.free_bytes)
        metrics.REMEMBERED_IDS.set(len(self.index))

    async def maintain(self, parent: int) -> None:
        """Every second: probe the landing zone, forget ids past the window, notice a dead parent."""
        while not self.stopping.is_set():
            await asyncio.sleep(1)
            await self._probe()
            self.index.expire()
            if os.getppid() != parent:
                log.error("the collector's entry point is gone: stopping")
                self.stopping.set()
                self.wake.set()

    # -- the socket ---------------------------------------------------------------------------
    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        lock = asyncio.Lock()
        tasks: set[asyncio.Task] = set()

        async def answer(request) -> None:
            reply = self.health(request) if isinstance(request, Status) else await self.store(request)
            async with lock:
                writer.write(frame(reply))
                await writer.drain()

        try:
            while True:
                request = request_decoder.decode(await read_frame(reader))
                task = asyncio.ensure_future(answer(request))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            self.connections -= 1
            writer.close()
            self.wake.set()

    async def run(self, ready) -> None:
        await self.start()
        path = socket_path(self.settings)
        path.unlink(missing_ok=True)  # a crashed predecessor's; the lock says none is running
        server = await asyncio.start_unix_server(self.serve, path=str(path))
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop)
        loop.add_signal_handler(signal.SIGINT, self._stop)
        flusher = asyncio.ensure_future(self.flush_forever())
        maintenance = asyncio.ensure_future(self.maintain(os.getppid()))
        ready()
        await self.stopping.wait()
        # the workers stop first and close their connections; wait for them (and a parent's death)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._no_connections(), timeout=15)
        self.closing = True
        self.wake.set()
        await flusher
        maintenance.cancel()
        server.close()
        await asyncio.get_running_loop().run_in_executor(self.thread, self.writer.close)
        path.unlink(missing_ok=True)

    async def _no_connections(self) -> None:
        while self.connections:
            await asyncio.sleep(0.05)

    def _stop(self) -> None:
        self.stopping.set()
        self.wake.set()


def main() -> None:
    """`python -m ingestion.collector.landing_service`: started by the entry point, never by hand."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s landing %(levelname)s %(message)s")
    settings = Settings.from_environment(dict(os.environ))

    def ready():
        sys.stdout.write("ready\n")
        sys.stdout.flush()

    asyncio.run(LandingService(settings).run(ready))


if __name__ == "__main__":
    main()
