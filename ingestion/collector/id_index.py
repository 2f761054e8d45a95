"""The event ids the collector stored, remembered across restarts for a window of days.

Durable de-duplication, and why it is built this way:

- One process, the landing process (`landing_service.py`), decides for every id and writes every
  landing file. Workers never write. So claiming an id and storing its event happen in one place,
  in one round of one group commit, and two requests carrying the same id (concurrent retries on
  two workers) are ordered by that process: the second finds the id claimed by the round in
  flight and is answered "duplicate" only once that round is on disk.
- The ids live in memory (a set per UTC day) and in a journal on disk, `collector/ids/<day>.ids`,
  one JSON array of ids per round. A round is: write and fsync the event (and profile) lines; then
  append and fsync the round's ids to the journal; then answer. An id is never journaled before its
  event is on disk, so a journaled id is a stored event: answering "duplicate" is always true.
- Crash points (kill -9, power loss), given that order:
  * before the lines are fsync'd: nothing answered; the torn tail is cut at restart and the ids are
    neither stored nor remembered, so the retry stores them;
  * after the lines' fsync, before the journal's: the events are stored but not journaled. They are
    in a file still open in `landing/incoming/` (a file is renamed into `events/` only once every id
    in it is journaled), and recovery at start reads every open file, journals its ids and only then
    moves it: the retry is answered "duplicate";
  * after the journal, before the reply: the retry is answered "duplicate".
  A journal line torn by a crash is skipped; its ids are in the open file, so recovery journals them.
- SQLite was measured first (WAL, one row per id): a random-key B-tree insert plus update cost about
  20 microseconds per id on this machine, ten times the budget of 10M events a minute, while a set
  lookup costs a fraction of a microsecond and the journal is appended sequentially.
- The window: an id is remembered for `days` whole UTC days after the day it was stored (default 7,
  `COLLECTOR_DEDUP_DAYS`), so a retry up to at least 7 days later is recognised. Older journals are
  deleted. Memory is about 100 bytes per remembered id (a million events a day: about 0.7 GB for 7
  days). Past the window a resent event is stored again; the loader still merges on `event_id`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import orjson

from ingestion.paths import fsync


class IdIndex:
    def __init__(self, directory: Path, days: float):
        self.directory, self.days = directory, days
        self.by_day: dict[date, set[str]] = {}
        self._journal_day: date | None = None
        self._fd = -1
        directory.mkdir(parents=True, exist_ok=True)

    def __contains__(self, event_id: str) -> bool:
        return any(event_id in ids for ids in self.by_day.values())

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
        """Append the ids of one round to today's journal and fsync it (in the writer's thread)."""
        if not ids:
            return
        day = (now or datetime.now(UTC)).date()
        if day != self._journal_day:
            self.close()
            path = self.directory / f"{day.isoformat()}.ids"
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            fsync(self.directory)
            self._journal_day = day
        data = orjson.dumps(ids) + b"\n"
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        os.fsync(self._fd)

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
        if self._fd >= 0:
            os.close(self._fd)
            self._fd, self._journal_day = -1, None
