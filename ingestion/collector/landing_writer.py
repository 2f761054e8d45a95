"""The collector's durable append: JSON lines, fsync'd before anyone is told they are stored.

Requests hand their lines to `LandingWriter.append` and wait. One flusher writes everything that
has queued up since its last round and fsyncs once (group commit), then releases all of those
requests together, so a 2xx always means the lines are on disk. If a write or fsync fails (disk
full, directory not writable), the file is cut back to where the round started and every request
of the round gets the error: nothing is acknowledged that was not stored, and nothing half
written stays behind.

Open files live in `landing/incoming/` (loaders never look there). A file is closed when it
reaches `max_bytes` or `max_age` seconds, fsync'd, and renamed atomically into `landing/events/`,
where the loaders pick it up. After a crash (kill -9), `recover` finishes the files left open:
a last line without its newline was never acknowledged (its round never completed), so it is cut
off, and the rest is moved into `events/` like any closed file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ingestion.paths import DataLayout, fsync


class LandingUnavailable(OSError):
    """The landing zone cannot store lines right now (disk full, not writable): answer 503."""


@dataclass
class Recovered:
    files: int = 0
    cut_bytes: int = 0


def recover(layout: DataLayout) -> Recovered:
    """Close the files a crashed collector left open: keep complete lines, move them to `events/`."""
    found = Recovered()
    layout.incoming_dir.mkdir(parents=True, exist_ok=True)
    layout.events_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(layout.incoming_dir.glob("*.jsonl")):
        with open(path, "r+b") as f:
            data = f.read()
            keep = data.rfind(b"\n") + 1
            if keep < len(data):
                f.truncate(keep)
                f.flush()
                os.fsync(f.fileno())
                found.cut_bytes += len(data) - keep
        if keep == 0:
            path.unlink()
            continue
        os.replace(path, layout.events_dir / path.name)
        found.files += 1
    fsync(layout.events_dir)
    return found


@dataclass
class _Stream:
    """One open landing file (events, or the quarantine) and where it stood."""

    directory: Path
    closed_dir: Path
    prefix: str
    sequence: int = 0
    path: Path | None = None
    fd: int = -1
    size: int = 0
    opened_at: float = 0.0

    def ensure_open(self) -> None:
        if self.fd < 0:
            self.sequence += 1
            self.path = self.directory / f"{self.prefix}-{self.sequence:06d}.jsonl"
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self.size, self.opened_at = 0, time.monotonic()

    def write(self, data: bytes) -> None:
        """Append and fsync; on failure cut the file back to where it was and raise."""
        start = self.size
        try:
            self.ensure_open()
            view = memoryview(data)
            while view:
                written = os.write(self.fd, view)
                view = view[written:]
            os.fsync(self.fd)
        except OSError as exc:
            with contextlib.suppress(OSError):  # if this fails too, recovery at restart cuts the partial line
                os.ftruncate(self.fd, start)
                os.fsync(self.fd)
            with contextlib.suppress(OSError):  # the next round starts a new file
                self.close(sync=False)
            raise LandingUnavailable(exc.errno, f"cannot write {self.path}: {exc.strerror}") from exc
        self.size += len(data)

    def close(self, sync: bool = True) -> Path | None:
        """Close and move into the closed directory; an empty file is simply removed."""
        if self.fd < 0:
            return None
        fd, self.fd = self.fd, -1
        try:
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        if self.size == 0:
            self.path.unlink(missing_ok=True)
            return None
        target = self.closed_dir / self.path.name
        os.replace(self.path, target)
        fsync(self.closed_dir)
        return target


@dataclass
class _Round:
    events: list[bytes] = field(default_factory=list)
    quarantined: list[bytes] = field(default_factory=list)
    waiters: list[asyncio.Future] = field(default_factory=list)
    size: int = 0


class LandingWriter:
    """Group-committing appender of event lines and quarantine lines; one per collector process."""

    def __init__(self, layout: DataLayout, max_bytes: int = 64 << 20, max_age: float = 5.0,
                 max_pending_bytes: int = 256 << 20):
        self.layout, self.max_bytes, self.max_age = layout, max_bytes, max_age
        self.max_pending_bytes = max_pending_bytes
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        prefix = f"collector-{stamp}-{os.getpid()}"
        layout.incoming_dir.mkdir(parents=True, exist_ok=True)
        layout.events_dir.mkdir(parents=True, exist_ok=True)
        layout.quarantine_dir.mkdir(parents=True, exist_ok=True)
        self.events = _Stream(layout.incoming_dir, layout.events_dir, prefix)
        self.quarantine = _Stream(layout.quarantine_dir, layout.quarantine_dir, prefix + "-quarantine")
        self._round = _Round()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._stopping = False
        self.closed_files = 0

    @property
    def pending_bytes(self) -> int:
        """Bytes queued and not yet on disk: the backlog that backpressure watches."""
        return self._round.size

    @property
    def falling_behind(self) -> bool:
        return self.pending_bytes > self.max_pending_bytes

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._flush_forever())

    async def append(self, events: list[bytes], quarantined: list[bytes]) -> None:
        """Queue lines (each ending in a newline) and return once they are fsync'd."""
        if not events and not quarantined:
            return
        waiter = asyncio.get_running_loop().create_future()
        current = self._round
        current.events += events
        current.quarantined += quarantined
        current.size += sum(map(len, events)) + sum(map(len, quarantined))
        current.waiters.append(waiter)
        self._wake.set()
        await waiter

    async def _flush_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._stopping:
                # a quiet second ends the wait too: files that have grown old still get closed
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=min(1.0, self.max_age))
            self._wake.clear()
            work, self._round = self._round, _Round()
            if self._stopping and not work.waiters:
                return
            try:
                await loop.run_in_executor(None, self._write, work)
            except Exception as exc:
                failure = exc if isinstance(exc, LandingUnavailable) else LandingUnavailable(0, str(exc))
                for waiter in work.waiters:
                    if not waiter.done():
                        waiter.set_exception(failure)
                continue
            for waiter in work.waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def _write(self, work: _Round) -> None:
        """One round: write and fsync, then close files that are full or old (in a worker thread)."""
        if work.events:
            self.events.write(b"".join(work.events))
        if work.quarantined:
            self.quarantine.write(b"".join(work.quarantined))
        for stream in (self.events, self.quarantine):
            due = stream.fd >= 0 and (stream.size >= self.max_bytes
                                      or time.monotonic() - stream.opened_at >= self.max_age)
            if due and stream.close() is not None and stream is self.events:
                self.closed_files += 1

    async def close(self) -> None:
        """Flush what is queued, stop, and close the open files into `events/`."""
        if self._task is not None:
            self._stopping = True
            self._wake.set()
            await self._task
        for stream in (self.events, self.quarantine):
            if stream.close() is not None and stream is self.events:
                self.closed_files += 1
