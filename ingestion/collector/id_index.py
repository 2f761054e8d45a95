"""The event ids the collector stored, remembered across restarts for a window of days.

Durable de-duplication, and why it is built this way:

- One process, the landing process (`landing_service.py`), decides for every id and writes every
  landing file. Workers never write. So claiming an id and storing its event happen in one place,
  in one round of one group commit, and two requests carrying the same id (concurrent retries on
  two workers) are ordered by that process: the second finds the id claimed by the round in
  flight and is answered "duplicate" only once that round is on disk.
- The ids live in memory (a set per UTC day) and in a journal on disk, `collector/ids/<day>.ids`,
  one JSON array of ids per round. A round is: write and fsync the event (and profile) lines; then
  append the round's ids to the journal; then answer. An id is never journaled before its event is
  on disk, so a journaled id is a stored event: answering "duplicate" is always true.
- The journal is fsync'd before a landing file is closed (`durable`), not at every round: until
  then the file itself, still open in `landing/incoming/`, holds the round's ids durably, and
  recovery at start reads every open file and journals its ids before moving it. A file is renamed
  into `events/` only once every id in it is journaled and fsync'd. (One fsync per round instead of
  two halves the time a round takes, which is what a request waits for.) An append or fsync that
  fails keeps the ids since the last good fsync to be appended again (a failed fsync may have lost
  them), and no file is closed until that works.
- Crash points (kill -9, power loss), given that order:
  * before the lines are fsync'd: nothing answered; the torn tail is cut at restart and the ids are
    neither stored nor remembered, so the retry stores them;
  * after the lines' fsync, before the journal is written or fsync'd: the events are stored but
    perhaps not journaled. They are in a file still open in `landing/incoming/`, which recovery
    journals before moving it: the retry is answered "duplicate";
  * after the journal, before the reply: the retry is answered "duplicate".
  A journal line torn by a crash is skipped; its ids are in an open file, so recovery journals them.
- SQLite was measured first (WAL, one row per id): a random-key B-tree insert plus update cost about
  20 microseconds per id on this machine, ten times the budget of 10M events a minute, while a set
  lookup costs a fraction of a microsecond and the journal is appended sequentially.
- The window: an id is remembered for `days` whole UTC days after the day it was stored (default 7,
  `COLLECTOR_DEDUP_DAYS`), so a retry up to at least 7 days later is recognised. Older journals are
  deleted. Memory is about 100 bytes per remembered id (a million events a day: about 0.7 GB for 7
  days). Past the window a resent event is stored again; the loader still merges on `event_id`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import orjson

from ingestion.paths import fsync

log = logging.getLogger("ingestion.collector")


class IdIndex:
    def __init__(self, directory: Path, days: float):
        self.directory, self.days = directory, days
        self.by_day: dict[date, set[str]] = {}
        self._journal_day: date | None = None
        self._fd = -1
        self._lock = threading.Lock()  # the landing process's writer threads all journal here
        self._unjournaled: list[str] = []  # ids whose append failed: appended again first
        self._unsynced: list[str] = []  # ids appended since the last fsync
        directory.mkdir(parents=True, exist_ok=True)

    def __contains__(self, event_id: str) -> bool:
        return any(event_id in ids for ids in self.by_day.values())

    def isdisjoint(self, event_ids: set[str]) -> bool:
        """None of these ids is remembered (a set operation per day, in C, rather than a lookup per id)."""
        return all(ids.isdisjoint(event_ids) for ids in self.by_day.values())

    def __len__(self) -> int:
        return sum(map(len, self.by_day.values()))

    def oldest_kept(self, today: date) -> date:
        return today - timedelta(days=int(self.days) + (self.days % 1 > 0))

    def load(self, today: date | None = None) -> int:
        """Read the journals of the window (deleting older ones); returns the ids remembered."""
        today = today or datetime.now(UTC).date()
        oldest = self.oldest_kept(today)
        for path in sorted(self.directory.glob("*.ids")):
            day = date.fromisoformat(path.stem)
            if day < oldest:
                path.unlink()
                continue
            ids = self.by_day.setdefault(day, set())
            for line in path.read_bytes().splitlines():
                try:
                    ids.update(orjson.loads(line))
                except orjson.JSONDecodeError:
                    continue  # a line torn by a crash: its ids are in an open landing file, recovered separately
        return len(self)

    def journal(self, ids: list[str], now: datetime | None = None) -> None:
        """Append the ids of one round to today's journal (in a writer's thread), without fsync:
        `durable` makes them so. An append that fails is logged and retried at the next call."""
        with self._lock:
            pending = self._unjournaled + ids
            if not pending:
                return
            try:
                self._append(pending, now)
            except OSError as exc:
                log.error("cannot append to the id journal (%s); files stay open until it works again", exc)
                self._failed(pending)
            else:
                self._unsynced += pending
                self._unjournaled = []

    def durable(self) -> bool:
        """Whether every id journaled so far is appended and fsync'd: a landing file may be closed
        (moved where loaders read) only then. Retries a failed append first."""
        with self._lock:
            pending, self._unjournaled = self._unjournaled, []
            try:
                if pending:
                    self._append(pending)
                    self._unsynced, pending = self._unsynced + pending, []
                if self._unsynced and self._fd >= 0:
                    os.fsync(self._fd)
                self._unsynced = []
            except OSError as exc:
                log.error("cannot write the id journal (%s); files stay open until it works again", exc)
                self._failed(pending)
                return False
            return True

    def _append(self, ids: list[str], now: datetime | None = None) -> None:
        day = (now or datetime.now(UTC)).date()
        if day != self._journal_day:
            if self._unsynced and self._fd >= 0:
                os.fsync(self._fd)  # the previous day's lines, before its journal is closed
                self._unsynced = []
            self.close()
            path = self.directory / f"{day.isoformat()}.ids"
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            fsync(self.directory)
            self._journal_day = day
        view = memoryview(orjson.dumps(ids, option=orjson.OPT_APPEND_NEWLINE))
        while view:
            view = view[os.write(self._fd, view):]

    def _failed(self, pending: list[str]) -> None:
        """After a failed append or fsync: what was appended since the last good fsync may be lost, so
        it is appended again (to a journal opened anew) with what failed."""
        self.close()
        self._unjournaled, self._unsynced = self._unsynced + pending, []

    def remember(self, ids: Iterable[str], now: datetime | None = None) -> None:
        """Take journaled ids into the in-memory set (on the event loop, after `journal`)."""
        day = (now or datetime.now(UTC)).date()
        self.by_day.setdefault(day, set()).update(ids)

    def expire(self, today: date | None = None) -> int:
        """Forget the days that left the window and delete their journals; returns ids forgotten."""
        oldest = self.oldest_kept(today or datetime.now(UTC).date())
        forgotten = 0
        for day in [d for d in self.by_day if d < oldest]:
            forgotten += len(self.by_day.pop(day))
            (self.directory / f"{day.isoformat()}.ids").unlink(missing_ok=True)
        return forgotten

    def close(self) -> None:
        """Close the journal's file (without fsync: `durable` first where that matters)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd, self._journal_day = -1, None
