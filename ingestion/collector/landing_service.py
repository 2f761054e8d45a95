"""The landing process: the one writer of the landing zone and keeper of the acknowledged ids.

The HTTP workers validate requests and hand the result to this process over a Unix socket
(`protocol.py`). It claims each id, appends the lines of every request that arrived since its last
round, fsyncs once (group commit), journals the ids, and answers every request of the round
together: a worker replies 2xx only after that answer. Rounds are written by `landing_writers`
writers (threads, each with files of its own), so that a round can start while another is in its
fsync (0.2 to 8 ms here, depending on what else writes to the disk); one starts beside another
only when enough waits (`_worth_a_round`), as each fsync costs CPU too. Why one process: claiming
an id and storing its event must be one decision to hold across workers and restarts (see
`id_index.py`), and one writer per file is the landing zone's contract. Its own work is per
request, not per event: a request's ids are claimed with set operations and its lines appended as
one block (per event only when some ids were seen before); validation, the expensive part, runs in
the workers. It runs on uvloop, as the workers do under uvicorn, and answers from callbacks.

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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import msgspec
import uvloop

from ingestion.collector import metrics
from ingestion.collector.id_index import IdIndex
from ingestion.collector.landing_writer import LandingUnavailable, LandingWriter, RoundResult, recover
from ingestion.collector.protocol import (
    Frames,
    Health,
    Refused,
    Status,
    Store,
    Stored,
    frame,
    lines,
    request_decoder,
)
from ingestion.collector.settings import Settings

log = logging.getLogger("ingestion.collector")


# a round starts beside another only with this many requests or bytes waiting (or beside a large one)
ROUND_REQUESTS = 4
ROUND_BYTES = 1 << 20


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
    requests: int = 0
    done: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def __post_init__(self):
        self.done.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved even without waiters

    def __bool__(self) -> bool:
        return bool(self.events or self.profiles or self.quarantine)


@dataclass
class _Slot:
    """A writer and the thread it runs in; `busy` while that thread writes a round or rotates."""

    writer: LandingWriter
    thread: ThreadPoolExecutor
    busy: bool = False


class _Connection(asyncio.Protocol):
    """A worker's connection: requests in, each answered when decided (in any order)."""

    def __init__(self, service: LandingService):
        self.service, self.frames = service, Frames(request_decoder)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.service.connections += 1

    def data_received(self, data: bytes) -> None:
        try:
            requests = self.frames.feed(data)
        except (ValueError, msgspec.DecodeError):
            log.error("a worker sent a frame that is not a request: closing its connection")
            self.transport.close()
            return
        for request in requests:
            if isinstance(request, Status):
                self.answer(self.service.health(request))
            else:
                self.service.store(request, self.answer)

    def answer(self, reply) -> None:
        if not self.transport.is_closing():
            self.transport.write(frame(reply))

    def connection_lost(self, exc) -> None:
        self.service.connections -= 1


class LandingService:
    def __init__(self, settings: Settings):
        self.settings, self.layout = settings, settings.layout
        self.index = IdIndex(self.layout.collector_dir / "ids", settings.dedup_days)
        self.slots: list[_Slot] = []
        self.current: _Round | None = None
        self.in_flight: list[_Round] = []  # rounds being written
        self.tasks: set[asyncio.Task] = set()
        self.problem, self.free_bytes = "", 0
        self.connections = 0
        self.stopping = asyncio.Event()

    @property
    def pending_bytes(self) -> int:
        return (self.current.size if self.current else 0) + sum(work.size for work in self.in_flight)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.layout.collector_dir.mkdir(parents=True, exist_ok=True)
        await loop.run_in_executor(None, self.index.load)
        recovered = await loop.run_in_executor(None, recover, self.layout, self.index)
        if recovered.files:
            log.warning("closed %d files left open by a crash (%d ids journaled, %d torn bytes cut)",
                        recovered.files, recovered.ids, recovered.cut_bytes)
        metrics.RECOVERED_FILES.inc(recovered.files)
        self.slots = [_Slot(LandingWriter(self.layout, self.index, self.settings.rotate_bytes,
                                          self.settings.rotate_seconds, str(k)),
                            ThreadPoolExecutor(1, thread_name_prefix=f"landing-writer-{k}"))
                      for k in range(self.settings.landing_writers)]
        self.current = _Round()
        await self._probe()

    # -- requests ---------------------------------------------------------------------------
    def store(self, request: Store, answer: Callable[[Stored | Refused], None]) -> None:
        """Claim a request's ids and `answer` it: at once when nothing is to be written, else when
        its round is on disk. Callbacks rather than a task per request: this runs for every one."""
        if self.problem:
            return answer(Refused(request.request, "unavailable", self.problem))
        if self.pending_bytes > self.settings.max_pending_bytes:
            return answer(Refused(request.request, "busy", "the landing zone is behind; retry shortly"))
        ids = request.event_ids + request.profile_ids
        wanted = set(ids)
        # ids claimed by a round being written: claim again once it is done (stored: duplicates; failed: ours)
        claiming = next((r for r in self.in_flight if not r.claimed.isdisjoint(wanted)), None)
        if claiming is not None:
            claiming.done.add_done_callback(lambda _: self.store(request, answer))
            return None
        work = self.current
        if len(wanted) == len(ids) and work.claimed.isdisjoint(wanted) and self.index.isdisjoint(wanted):
            # none of them stored or claimed before (the common case): the request is claimed whole
            work.claimed |= wanted
            work.ids += ids
            for target, block in ((work.events, request.events), (work.profiles, request.profiles)):
                if block:
                    target.append(block)
                    work.size += len(block)
            events, profiles, duplicates, waits = len(request.event_ids), len(request.profile_ids), 0, False
        else:
            events, profiles, duplicates, waits = self._claim_each(request, work)
        if request.quarantine:
            work.quarantine.append(request.quarantine)
            work.size += len(request.quarantine)
        if not (events or profiles or request.quarantine or waits):
            return answer(Stored(request.request, 0, 0, duplicates, False))
        work.requests += 1
        self._dispatch()

        def stored(done: asyncio.Future) -> None:
            if done.exception() is not None:
                return answer(Refused(request.request, "unavailable", str(done.exception())))
            result: RoundResult = done.result()
            return answer(Stored(request.request, events, profiles, duplicates,
                                 bool(request.quarantine) and not result.quarantine_error, result.quarantine_error))

        work.done.add_done_callback(stored)
        return None

    def _claim_each(self, request: Store, work: _Round) -> tuple[int, int, int, bool]:
        """Claim a request's ids one by one, some being stored or claimed already: (events, profiles
        claimed, duplicates, whether one is claimed by this round already: then the request waits for it)."""
        index = self.index
        duplicates, waits = 0, False
        stored = []
        for kind_ids, block, target in ((request.event_ids, request.events, work.events),
                                        (request.profile_ids, request.profiles, work.profiles)):
            kept = []
            for event_id, line in zip(kind_ids, lines(block), strict=True):
                if event_id in work.claimed:
                    duplicates, waits = duplicates + 1, True  # stored by this round if the round succeeds
                elif event_id in index:
                    duplicates += 1
                else:
                    work.claimed.add(event_id)
                    work.ids.append(event_id)
                    kept.append(line)
            if kept:
                target.append(b"".join(kept))
                work.size += len(target[-1])
            stored.append(len(kept))
        return stored[0], stored[1], duplicates, waits

    def health(self, request: Status) -> Health:
        writers = [slot.writer for slot in self.slots]
        problem = self.problem or next((w.rotation_error for w in writers if w.rotation_error), "")
        return Health(request.request, not self.problem, problem, self.free_bytes, self.pending_bytes,
                      sum(w.open_files for w in writers), sum(w.closed_files for w in writers), len(self.index))

    # -- the group commit ---------------------------------------------------------------------
    def _dispatch(self) -> None:
        """Start a round if requests wait, a writer is free and it is worth it (`_worth_a_round`).
        Called when a request is claimed and when a round ends, rather than by a task woken for
        every request. With several writers a round starts while others are still in their fsync,
        so that a request waits for its own round only, not also for the one before it."""
        if not self.current:
            return
        free = next((slot for slot in self.slots if not slot.busy), None)
        if free is not None and self._worth_a_round():
            work, self.current = self.current, _Round()
            self.in_flight.append(work)
            self._start(free, self._write(free, work))

    async def rotate_forever(self) -> None:
        """Close the files due by age while no round comes (a round closes them otherwise)."""
        while True:
            await asyncio.sleep(min(0.5, self.settings.rotate_seconds))
            if not self.current:
                for slot in self.slots:
                    if not slot.busy:
                        self._start(slot, self._rotate(slot))

    def _worth_a_round(self) -> bool:
        """Whether to start a round now rather than when the one being written ends: each round costs
        an fsync (CPU in the kernel too), so a second one starts only for enough requests, or beside
        a large round (a 20,000-event batch takes tens of ms to write), not for every request."""
        current = self.current
        return (not self.in_flight or current.requests >= ROUND_REQUESTS or current.size >= ROUND_BYTES
                or any(work.size >= ROUND_BYTES for work in self.in_flight))

    def _start(self, slot: _Slot, job) -> None:
        slot.busy = True
        task = asyncio.ensure_future(job)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _write(self, slot: _Slot, work: _Round) -> None:
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(slot.thread, slot.writer.write_round, work.events, work.profiles,
                                                work.quarantine, work.ids)
        except LandingUnavailable as exc:
            self.problem = str(exc)
            log.error("round of %d lines not stored: %s", len(work.ids), exc)
            work.done.set_exception(exc)
        else:
            self.index.remember(work.ids)
            work.done.set_result(result)
        finally:
            self.in_flight.remove(work)
            slot.busy = False
            metrics.PENDING_BYTES.set(self.pending_bytes)
            self._dispatch()

    async def _rotate(self, slot: _Slot) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(slot.thread, slot.writer.rotate)
        finally:
            slot.busy = False
            self._dispatch()

    async def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        self.free_bytes, self.problem = await loop.run_in_executor(None, self.slots[0].writer.probe,
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

    # -- the socket ---------------------------------------------------------------------------
    def connection(self) -> asyncio.Protocol:
        return _Connection(self)

    async def run(self, ready) -> None:
        await self.start()
        path = socket_path(self.settings)
        path.unlink(missing_ok=True)  # a crashed predecessor's; the lock says none is running
        loop = asyncio.get_running_loop()
        server = await loop.create_unix_server(self.connection, path=str(path))
        loop.add_signal_handler(signal.SIGTERM, self._stop)
        loop.add_signal_handler(signal.SIGINT, self._stop)
        rotation = asyncio.ensure_future(self.rotate_forever())
        maintenance = asyncio.ensure_future(self.maintain(os.getppid()))
        ready()
        await self.stopping.wait()
        # the workers stop first and close their connections; wait for them (and a parent's death)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._no_connections(), timeout=15)
        while self.current or self.in_flight or self.tasks:  # the last rounds
            self._dispatch()
            await asyncio.sleep(0.01)
        rotation.cancel()
        maintenance.cancel()
        server.close()
        for slot in self.slots:
            await loop.run_in_executor(slot.thread, slot.writer.close)
        path.unlink(missing_ok=True)

    async def _no_connections(self) -> None:
        while self.connections:
            await asyncio.sleep(0.05)

    def _stop(self) -> None:
        self.stopping.set()


def main() -> None:
    """`python -m ingestion.collector.landing_service`: started by the entry point, never by hand."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s landing %(levelname)s %(message)s")
    settings = Settings.from_environment(dict(os.environ))

    def ready():
        sys.stdout.write("ready\n")
        sys.stdout.flush()

    uvloop.run(LandingService(settings).run(ready))


if __name__ == "__main__":
    main()
