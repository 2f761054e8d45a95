"""The serving side's settings: one object, read once from the environment by each server's entry
point (the metrics server, the SQL endpoint).

    PLATFORM_DATA_DIR          the data directory (`ingestion.paths.data_dir_from`)
    DBT_TARGET, PG*            the warehouse the data was published in (`warehouse.WarehouseTarget`)
    SEMANTIC_API_SECRET        the HS256 secret of the API tokens (CUBEJS_API_SECRET is read too)
    SEMANTIC_TOKEN_MAX_SECONDS the longest a token may be valid from now (default 90 days): a token
                               without `exp`, or with one further out, is refused
    SEMANTIC_WORKERS           threads that compile and run queries (default 4)
    SEMANTIC_CONTINUE_WAIT     seconds a request waits before Cube's "Continue wait" (default 10)
    SEMANTIC_ROLLUPS           off: every query compiled by MetricFlow (the benchmark's baseline)
    PLATFORM_NOW               the moment the SQL endpoint's now() means (`ingestion.paths.pinned_now_from`)

The variables the pipeline shares with the servers are parsed by the same functions it uses, and
nothing here imports the pipeline (dlt, Dagster): the servers start without it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ingestion.paths import data_dir_from, pinned_now_from
from semantic.warehouse import WarehouseTarget

# The governed metric definitions as MetricFlow reads them, written by `dbt parse` (`make manifest`).
SEMANTIC_MANIFEST = Path(__file__).resolve().parents[1] / "dbt_project" / "target" / "semantic_manifest.json"
DEFAULT_TOKEN_MAX_SECONDS = 90 * 24 * 3600


class SettingsError(ValueError):
    """A setting that cannot be used; the message names the variable."""


def _number(env: Mapping[str, str], name: str, default: float, kind=float):
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected a {kind.__name__}") from None
    if value < 0:
        raise SettingsError(f"{name}={raw!r}: must not be negative")
    return value


def api_secret(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    secret = env.get("SEMANTIC_API_SECRET") or env.get("CUBEJS_API_SECRET")
    if not secret:
        raise SettingsError("set SEMANTIC_API_SECRET (the HS256 secret that signs API tokens)")
    return secret


@dataclass(frozen=True)
class ServingSettings:
    data_dir: Path
    warehouse: WarehouseTarget
    secret: str
    max_token_seconds: int = DEFAULT_TOKEN_MAX_SECONDS
    workers: int = 4
    continue_wait: float = 10.0
    rollups: bool = True
    semantic_manifest: Path = SEMANTIC_MANIFEST
    now: datetime | None = None  # PLATFORM_NOW, else the clock

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> ServingSettings:
        env = os.environ if env is None else env
        data_dir = data_dir_from(env)
        return cls(
            data_dir=data_dir,
            warehouse=WarehouseTarget.from_environment(env, data_dir),
            secret=api_secret(env),
            max_token_seconds=_number(env, "SEMANTIC_TOKEN_MAX_SECONDS", DEFAULT_TOKEN_MAX_SECONDS, int),
            workers=max(1, _number(env, "SEMANTIC_WORKERS", 4, int)),
            continue_wait=_number(env, "SEMANTIC_CONTINUE_WAIT", 10.0),
            rollups=env.get("SEMANTIC_ROLLUPS", "on") != "off",
            now=pinned_now_from(env),
        )

    @property
    def published_dir(self) -> Path:
        return self.data_dir / "published"

    def publication(self):
        return self.warehouse.publication(self.published_dir)

    def service(self):
        """The metrics service these settings describe."""
        from semantic.service import MetricsService

        return MetricsService(self.publication(), self.semantic_manifest, workers=self.workers,
                              use_rollups=self.rollups)
