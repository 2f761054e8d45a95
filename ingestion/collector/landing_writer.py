"""The landing zone's files, written by the landing process alone: append, fsync, rotate, recover.

One round of the group commit (`write_round`) appends every request's event and profile lines,
fsyncs them, journals their ids (`id_index.py`, fsync'd before a file is closed), then appends the
quarantine lines. The event and profile lines of a round are stored together or not at all: when a
write or fsync fails (disk full, directory gone), both files are cut back to where the round
started and the round fails, so nothing half written stays behind and nothing unstored is
acknowledged. A failing quarantine does not fail the round: the stored events stay stored and the
reply says the quarantine was not kept.

Open files live in `landing/incoming/` (loaders never look there). A file is closed when it reaches
`max_bytes` or `max_age` seconds, and renamed atomically into `landing/events/` (profiles into
`landing/profiles/`), but only once every id in it is journaled and the journal fsync'd: the
journal is what recognises a retry, and recovery journals the ids of every file still open.
Closing happens after the round's replies are decided, so a rename that fails (a folder made
unwritable) never turns stored events into an error: the file stays open and is renamed at a
later round.

After a crash (kill -9), `recover` finishes the files left open: a last line without its newline was
never acknowledged (its round never completed), so it is cut off; the ids of the rest are journaled
and the file is moved like any closed file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from ingestion.collector.id_index import IdIndex
from ingestion.paths import DataLayout, fsync

log = logging.getLogger("ingestion.collector")
PROFILES_PREFIX = "profiles-"


class LandingUnavailable(OSError):
    """The landing zone cannot store lines right now (disk full, not writable): answer 503."""


@dataclass
class Recovered:
    files: int = 0
    cut_bytes: int = 0
    ids: int = 0


def _line_ids(data: bytes) -> list[str]:
    ids = []
    for line in data.splitlines():
        record = orjson.loads(line)
        ids.append(record.get("event_id") or record.get("message_id"))
    return [i for i in ids if isinstance(i, str)]


def recover(layout: DataLayout, index: IdIndex) -> Recovered:
    """Close the files a crashed collector left open: cut a torn last line, journal the ids of the
    rest, then move each file to where closed files go. Only the landing process calls this, under
    the data directory's lock, so no file here has a live writer."""
    found = Recovered()
    for directory in (layout.incoming_dir, layout.events_dir, layout.profiles_dir):
        directory.mkdir(parents=True, exist_ok=True)
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
        ids = _line_ids(data[:keep])
        index.journal(ids)
        if not index.durable():
            raise LandingUnavailable(f"cannot journal the ids of {path} (see the error above)")
        index.remember(ids)
        found.ids += len(ids)
        target = layout.profiles_dir if path.name.startswith(PROFILES_PREFIX) else layout.events_dir
        os.replace(path, target / path.name)
        fsync(target)
        found.files += 1
    return found


@dataclass
class _Stream:
    """One open landing file (events, profiles or the quarantine) and where it stood."""

    directory: Path
    closed_dir: Path
    prefix: str
    sequence: int = 0
    path: Path | None = None
    fd: int = -1
    size: int = 0
    opened_at: float = 0.0

    def write(self, data: bytes) -> None:
        if self.fd < 0:
            self.sequence += 1
            self.path = self.directory / f"{self.prefix}-{self.sequence:06d}.jsonl"
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self.size, self.opened_at = 0, time.monotonic()
            fsync(self.directory)  # the new name survives a crash along with what is fsync'd into it
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]
        self.size += len(data)

    def cut_back(self, size: int) -> None:
        """Undo a failed round: back to `size` bytes, or drop the file if the round opened it."""
        if self.fd < 0:
            return
        try:
            os.ftruncate(self.fd, size)
            os.fsync(self.fd)
            self.size = size
        except OSError:  # if this fails too, recovery at restart cuts the partial line
            self.size = size
        if size == 0:
            self.close()

    def due(self, max_bytes: int, max_age: float) -> bool:
        return self.fd >= 0 and (self.size >= max_bytes or time.monotonic() - self.opened_at >= max_age)

    def close(self) -> Path | None:
        """Move into the closed directory (while still open, so a failed rename leaves it writable),
        then close; an empty file is simply removed. Raises OSError if the rename fails."""
        if self.fd < 0:
            return None
        if self.size == 0:
            os.close(self.fd)
            self.fd = -1
            with contextlib.suppress(OSError):
                self.path.unlink()
            return None
        target = self.closed_dir / self.path.name
        if self.directory != self.closed_dir:
            os.replace(self.path, target)
            fsync(self.closed_dir)
        os.close(self.fd)
        self.fd = -1
        return target


@dataclass
class RoundResult:
    quarantine_error: str = ""
    closed: list[Path] = field(default_factory=list)


class LandingWriter:
    """One writer of the landing process: its own files (`name` tells them apart from the other
    writers'), the shared id journal; `write_round` and `rotate` run in the writer's own thread."""

    def __init__(self, layout: DataLayout, index: IdIndex, max_bytes: int, max_age: float, name: str = "0"):
        self.layout, self.index, self.max_bytes, self.max_age = layout, index, max_bytes, max_age
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        for directory in (layout.incoming_dir, layout.events_dir, layout.profiles_dir, layout.quarantine_dir):
            directory.mkdir(parents=True, exist_ok=True)
        owner = f"{stamp}-{os.getpid()}-{name}"
        self.events = _Stream(layout.incoming_dir, layout.events_dir, f"collector-{owner}")
        self.profiles = _Stream(layout.incoming_dir, layout.profiles_dir, f"{PROFILES_PREFIX}{owner}")
        self.quarantine = _Stream(layout.quarantine_dir, layout.quarantine_dir, f"collector-{owner}-quarantine")
        self.closed_files = 0
        self.rotation_error = ""

    @property
    def open_files(self) -> int:
        return sum(s.fd >= 0 for s in (self.events, self.profiles, self.quarantine))

    def write_round(self, events: list[bytes], profiles: list[bytes], quarantine: list[bytes],
                    ids: list[str]) -> RoundResult:
        """Store one round; raises LandingUnavailable when its events and profiles were not stored."""
        streams = [(s, b"".join(lines)) for s, lines in ((self.events, events), (self.profiles, profiles)) if lines]
        starts = [(s, s.size if s.fd >= 0 else 0) for s, _ in streams]
        try:
            for stream, data in streams:
                stream.write(data)
            for stream, _ in streams:
                os.fsync(stream.fd)
        except OSError as exc:
            for stream, start in starts:
                stream.cut_back(start)
            where = next((s.path for s, _ in streams if s.path is not None), self.layout.incoming_dir)
            raise LandingUnavailable(exc.errno, f"cannot write {where}: {exc.strerror}") from exc
        self.index.journal(ids)
        result = RoundResult()
        if quarantine:
            start = self.quarantine.size if self.quarantine.fd >= 0 else 0
            try:
                self.quarantine.write(b"".join(quarantine))
                os.fsync(self.quarantine.fd)
            except OSError as exc:
                self.quarantine.cut_back(start)
                result.quarantine_error = f"cannot write the quarantine ({exc.strerror})"
        result.closed = self.rotate()
        return result

    def rotate(self, force: bool = False) -> list[Path]:
        """Close the files that are full or old (all of them if `force`), once their ids are durable."""
        closed: list[Path] = []
        due = [s for s in (self.events, self.profiles, self.quarantine)
               if s.fd >= 0 and (force or s.due(self.max_bytes, self.max_age))]
        if not due or not self.index.durable():
            return closed
        for stream in due:
            try:
                path = stream.close()
            except OSError as exc:
                self.rotation_error = f"cannot move {stream.path.name} into {stream.closed_dir}: {exc.strerror}"
                log.error("%s; kept open, retried at the next round", self.rotation_error)
                continue
            self.rotation_error = ""
            if path is not None:
                closed.append(path)
                self.closed_files += stream is not self.quarantine
        return closed

    def probe(self, min_free_bytes: int) -> tuple[int, str]:
        """Free bytes and the problem that keeps the landing zone from being written ("" if none). A failing
        rotation is not such a problem (events are still stored): it is `rotation_error`."""
        try:
            stats = os.statvfs(self.layout.incoming_dir)
        except OSError as exc:
            return 0, f"{self.layout.incoming_dir}: {exc.strerror}"
        free = stats.f_bavail * stats.f_frsize
        if stats.f_flag & os.ST_RDONLY:
            return free, f"{self.layout.landing} is on a read-only file system"
        if free < min_free_bytes:
            return free, f"{self.layout.landing} is full: {free:,} bytes free, below the minimum of {min_free_bytes:,}"
        probe = self.layout.incoming_dir / ".probe"
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, b"probe\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            probe.unlink()
        except OSError as exc:
            return free, f"cannot write in {self.layout.incoming_dir}: {exc.strerror}"
        return free, ""

    def close(self) -> list[Path]:
        closed = self.rotate(force=True)
        self.index.close()
        return closed
