"""The collector's settings: one object, built once from the environment by the entry point.

    PLATFORM_DATA_DIR            data directory (default: the repository's data/)
    COLLECTOR_WRITE_KEYS         key=tenant[,key2=tenant2]   or   COLLECTOR_WRITE_KEYS_FILE: {"key": "tenant"}
    COLLECTOR_WORKERS            worker processes (default: one per core)
    COLLECTOR_MAX_EVENT_BYTES    largest event, as sent (default 32 KiB, Segment's limit)
    COLLECTOR_MIN_TIMESTAMP      earliest accepted event time, ISO 8601 (default 2000-01-01T00:00:00Z)
    COLLECTOR_DEDUP_DAYS         how long an acknowledged event id is remembered (default 7)
    COLLECTOR_MIN_FREE_BYTES     free space below which the landing zone counts as full (default 64 MiB)
    COLLECTOR_ROTATE_SECONDS, COLLECTOR_ROTATE_BYTES   when an open landing file is closed (2 s, 64 MiB)
    COLLECTOR_LANDING_WRITERS    rounds the landing process writes (and fsyncs) at once, each to its own files (2)
    COLLECTOR_MAX_BODY_BYTES, COLLECTOR_MAX_BATCH_EVENTS   request limits (8 MiB after gunzip, 20,000 events)

Worker processes are started by uvicorn and rebuild the same object from the same environment.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ingestion.events.schema import parse_timestamp
from ingestion.paths import DataLayout

REPO_DATA_DIR = Path(__file__).resolve().parents[2] / "data"


class SettingsError(ValueError):
    """A setting that cannot be used; the message names the variable."""


def write_keys_from(env: dict[str, str]) -> dict[str, str]:
    if env.get("COLLECTOR_WRITE_KEYS_FILE"):
        keys = json.loads(Path(env["COLLECTOR_WRITE_KEYS_FILE"]).read_text())
    else:
        keys = {}
        for i, pair in enumerate(p for p in env.get("COLLECTOR_WRITE_KEYS", "").split(",") if p.strip()):
            key, sep, tenant = pair.strip().partition("=")
            if not sep or not key or not tenant:
                raise SettingsError(f"COLLECTOR_WRITE_KEYS entry {i + 1} ({pair!r}): expected key=tenant")
            keys[key] = tenant
    if not keys:
        raise SettingsError("no write keys: set COLLECTOR_WRITE_KEYS=key=tenant[,...] or COLLECTOR_WRITE_KEYS_FILE")
    return keys


@dataclass(frozen=True)
class Settings:
    data_dir: Path = REPO_DATA_DIR
    write_keys: dict[str, str] = field(default_factory=dict)
    workers: int = os.cpu_count() or 1
    max_body_bytes: int = 8 << 20
    max_batch_events: int = 20_000
    max_event_bytes: int = 32 << 10
    min_timestamp: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    dedup_days: float = 7.0
    min_free_bytes: int = 64 << 20
    rotate_bytes: int = 64 << 20
    rotate_seconds: float = 2.0
    landing_writers: int = 2
    max_pending_bytes: int = 256 << 20
    retry_after_seconds: int = 1
    # how long a request waits for another request that is storing the same event ids
    wait_for_claims_seconds: float = 5.0
    # a batch is validated this many events at a time, other requests being served in between (a
    # thread would hold the GIL against the event loop for the whole batch: a 20,000-event batch
    # takes about 60 ms)
    intake_slice_events: int = 500

    @property
    def layout(self) -> DataLayout:
        return DataLayout(self.data_dir)

    @classmethod
    def from_environment(cls, env: dict[str, str]) -> Settings:
        numbers = {"workers": ("COLLECTOR_WORKERS", int), "max_event_bytes": ("COLLECTOR_MAX_EVENT_BYTES", int),
                   "dedup_days": ("COLLECTOR_DEDUP_DAYS", float), "min_free_bytes": ("COLLECTOR_MIN_FREE_BYTES", int),
                   "rotate_seconds": ("COLLECTOR_ROTATE_SECONDS", float),
                   "rotate_bytes": ("COLLECTOR_ROTATE_BYTES", int),
                   "landing_writers": ("COLLECTOR_LANDING_WRITERS", int),
                   "max_body_bytes": ("COLLECTOR_MAX_BODY_BYTES", int),
                   "max_batch_events": ("COLLECTOR_MAX_BATCH_EVENTS", int)}
        values: dict = {"data_dir": Path(env.get("PLATFORM_DATA_DIR") or REPO_DATA_DIR).resolve(),
                        "write_keys": write_keys_from(env)}
        for name, (variable, kind) in numbers.items():
            if env.get(variable):
                try:
                    values[name] = kind(env[variable])
                except ValueError:
                    raise SettingsError(f"{variable}={env[variable]!r}: expected {kind.__name__}") from None
                if values[name] <= 0:
                    raise SettingsError(f"{variable}={env[variable]!r}: must be above 0")
        if env.get("COLLECTOR_MIN_TIMESTAMP"):
            try:
                values["min_timestamp"] = parse_timestamp(env["COLLECTOR_MIN_TIMESTAMP"])
            except ValueError as exc:
                raise SettingsError(f"COLLECTOR_MIN_TIMESTAMP={env['COLLECTOR_MIN_TIMESTAMP']!r}: {exc}") from None
        return cls(**values)
