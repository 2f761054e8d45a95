"""The collector's settings: one object, built once from the environment by the entry point.

    PLATFORM_DATA_DIR            data directory (default: the repository's data/; `ingestion.paths.data_dir_from`,
                                 as every part of the platform reads it)
    COLLECTOR_WRITE_KEYS         sha256:<hex>=tenant[,...]   or   COLLECTOR_WRITE_KEYS_FILE (`write_keys.py`)
    COLLECTOR_RATE_LIMIT         events per write key, e.g. 1000/second or 50/second;100000/hour (default off)
    COLLECTOR_TLS_CERT_FILE, COLLECTOR_TLS_KEY_FILE   serve HTTPS with this PEM certificate and key
    COLLECTOR_WORKERS            worker processes (default: one per core)
    COLLECTOR_MAX_EVENT_BYTES    largest event, as sent (default 32 KiB, Segment's limit)
    COLLECTOR_MIN_TIMESTAMP      earliest accepted event time, ISO 8601 (default 2000-01-01T00:00:00Z)
    COLLECTOR_DEDUP_DAYS         how long an acknowledged event id is remembered (default 7)
    COLLECTOR_MIN_FREE_BYTES     free space below which the landing zone counts as full (default 64 MiB)
    COLLECTOR_ROTATE_SECONDS, COLLECTOR_ROTATE_BYTES   when an open landing file is closed (2 s, 64 MiB)
    COLLECTOR_LANDING_WRITERS    rounds the landing process writes (and fsyncs) at once, each to its own files (2)
    COLLECTOR_MAX_BODY_BYTES, COLLECTOR_MAX_BATCH_EVENTS   request limits (8 MiB after gunzip, 20,000 events)
    PRIVACY_*                    consent, hashing of user ids, IP addresses (`ingestion/privacy.py`, shared
                                 with the pipeline)

Worker processes are started by uvicorn and rebuild the same object from the same environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ingestion.collector.write_keys import WriteKey, WriteKeys, write_keys_from
from ingestion.events.schema import parse_timestamp
from ingestion.paths import DEFAULT_DATA_DIR, DataLayout, data_dir_from
from ingestion.privacy import PrivacySettings, privacy_settings_from
from ingestion.rate_limits import Rates, rates_from
from ingestion.tls import TlsFiles, tls_from


class SettingsError(ValueError):
    """A setting that cannot be used; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path = DEFAULT_DATA_DIR
    write_keys: WriteKeys = field(default_factory=lambda: WriteKeys({}))
    rate_limit: Rates = ()  # per write key, in events; a key's own rate_limit replaces it
    tls: TlsFiles | None = None
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
    # a batch is validated this many events at a time, other requests being served in between (a
    # thread would hold the GIL against the event loop for the whole batch: a 20,000-event batch
    # takes about 60 ms)
    intake_slice_events: int = 500
    privacy: PrivacySettings = field(default_factory=PrivacySettings)

    @property
    def layout(self) -> DataLayout:
        return DataLayout(self.data_dir)

    def rates_of(self, key: WriteKey) -> Rates:
        """The rate limits a write key's events are counted against (none: unlimited)."""
        return self.rate_limit if key.rates is None else key.rates

    @classmethod
    def from_environment(cls, env: dict[str, str]) -> Settings:
        numbers = {"workers": ("COLLECTOR_WORKERS", int), "max_event_bytes": ("COLLECTOR_MAX_EVENT_BYTES", int),
                   "dedup_days": ("COLLECTOR_DEDUP_DAYS", float), "min_free_bytes": ("COLLECTOR_MIN_FREE_BYTES", int),
                   "rotate_seconds": ("COLLECTOR_ROTATE_SECONDS", float),
                   "rotate_bytes": ("COLLECTOR_ROTATE_BYTES", int),
                   "landing_writers": ("COLLECTOR_LANDING_WRITERS", int),
                   "max_body_bytes": ("COLLECTOR_MAX_BODY_BYTES", int),
                   "max_batch_events": ("COLLECTOR_MAX_BATCH_EVENTS", int)}
        try:
            # PrivacySettingsError, like the others' errors, is a ValueError naming the variable
            values: dict = {"data_dir": data_dir_from(env),
                            "write_keys": write_keys_from(env), "rate_limit": rates_from(env, "COLLECTOR_RATE_LIMIT"),
                            "tls": tls_from(env, "COLLECTOR_TLS_CERT_FILE", "COLLECTOR_TLS_KEY_FILE"),
                            "privacy": privacy_settings_from(env)}
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
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
