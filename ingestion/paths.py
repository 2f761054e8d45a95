"""Where the sources of the embedded default live under the runtime data directory.

One place names the layout of `data/` (app database, landing zone, quarantine) so that the
generator, the loaders and later the HTTP collector agree on it without sharing anything else.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

# The runtime data directory of a clone: data/ beside the code (git-ignored).
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1] / "data"


def data_dir_from(env: Mapping[str, str]) -> Path:
    """The data directory every part of the platform uses: PLATFORM_DATA_DIR, else data/ in the clone.
    The one place that reads the variable."""
    return Path(env.get("PLATFORM_DATA_DIR") or DEFAULT_DATA_DIR).resolve()


def pinned_now_from(env: Mapping[str, str]) -> datetime | None:
    """PLATFORM_NOW: the moment every part of the platform takes as now (an ISO timestamp, UTC
    unless it names an offset), or None for the clock. The one place that reads the variable."""
    value = env.get("PLATFORM_NOW")
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"PLATFORM_NOW must be an ISO timestamp such as 2026-11-01T06:00:00Z, not {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def fsync(path: Path) -> None:
    """Flush a file, or a folder's entries (a rename into it), to disk: what was acknowledged or
    published must survive a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes) -> None:
    """Write, fsync, then rename into place: readers see the whole file or nothing. The temporary
    name ends in `.tmp`, which no reader's pattern matches."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass(frozen=True)
class DataLayout:
    """The runtime file layout below one data directory (git-ignored, never in the source tree)."""

    root: Path

    @property
    def app_db(self) -> Path:
        """The operational SQLite database that stands in for the product's app database."""
        return self.root / "app" / "app.sqlite"

    @property
    def landing(self) -> Path:
        return self.root / "landing"

    @property
    def events_dir(self) -> Path:
        """Closed, immutable JSON-lines files of product events; writers rename into here atomically."""
        return self.landing / "events"

    @property
    def incoming_dir(self) -> Path:
        """Files the collector is still appending to; closed ones are renamed into `events_dir`."""
        return self.landing / "incoming"

    @property
    def profiles_dir(self) -> Path:
        """Closed JSON-lines files of profile calls (Segment's identify, group, alias) the collector kept."""
        return self.landing / "profiles"

    @property
    def collector_dir(self) -> Path:
        """The collector's own state: its lock, the event ids it acknowledged, its metrics files."""
        return self.root / "collector"

    @property
    def marketing_dir(self) -> Path:
        """One CSV file per channel and day of marketing spend."""
        return self.landing / "marketing"

    @property
    def quarantine_dir(self) -> Path:
        return self.landing / "quarantine"

    @property
    def ground_truth(self) -> Path:
        """What the generator injected (anomalies, experiment lifts, faults), for scoring later work."""
        return self.root / "sample" / "ground_truth.json"

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def dlt_dir(self) -> Path:
        """dlt's local pipeline state and load packages (pending packages survive an interrupted run)."""
        return self.root / "dlt"

    def ensure(self) -> None:
        for path in (self.app_db.parent, self.events_dir, self.marketing_dir, self.quarantine_dir,
                     self.ground_truth.parent, self.dlt_dir):
            path.mkdir(parents=True, exist_ok=True)
