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
    SEMANTIC_CORS_ORIGINS      the web origins whose pages may call the API from a browser (the reports'
                               question page): a comma-separated list, or * for any; default any
                               loopback origin (http://127.0.0.1:<port>, http://localhost:<port>)
    PLATFORM_NOW               the moment the SQL endpoint's now() means, and what questions' relative
                               dates ("last month") count from (`ingestion.paths.pinned_now_from`)

The variables the pipeline shares with the servers are parsed by the same functions it uses, and
nothing here imports the pipeline (dlt, Dagster): the servers start without it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ingestion.paths import data_dir_from, pinned_now_from
from semantic.warehouse import WarehouseTarget

# The governed metric definitions as MetricFlow reads them, written by `dbt parse` (`make manifest`).
SEMANTIC_MANIFEST = Path(__file__).resolve().parents[1] / "dbt_project" / "target" / "semantic_manifest.json"
DEFAULT_TOKEN_MAX_SECONDS = 90 * 24 * 3600
LOOPBACK_ORIGINS = r"https?://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?"


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


def _now(env: Mapping[str, str]) -> datetime | None:
    try:
        return pinned_now_from(env)
    except ValueError as exc:  # the pipeline's parser: a SettingsError here, which every entry point reports
        raise SettingsError(str(exc)) from None


def _origins(value: str | None) -> str:
    """SEMANTIC_CORS_ORIGINS as one regular expression of allowed origins."""
    if not value:
        return LOOPBACK_ORIGINS
    if value.strip() == "*":
        return ".*"
    origins = [o.strip().rstrip("/") for o in value.split(",") if o.strip()]
    bad = [o for o in origins if not o.startswith(("http://", "https://"))]
    if bad:
        raise SettingsError(f"SEMANTIC_CORS_ORIGINS: {bad[0]!r} is not an origin (http(s)://host[:port])")
    return "|".join(re.escape(o) for o in origins)


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
    cors_origins: str = LOOPBACK_ORIGINS  # a regular expression of the origins allowed

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None, require_secret: bool = True) -> ServingSettings:
        """The settings; `require_secret=False` for tools that read the published data in-process
        and check no token (`python -m semantic.ask`)."""
        env = os.environ if env is None else env
        data_dir = data_dir_from(env)
        return cls(
            data_dir=data_dir,
            warehouse=WarehouseTarget.from_environment(env, data_dir),
            secret=api_secret(env) if require_secret else env.get("SEMANTIC_API_SECRET", ""),
            max_token_seconds=_number(env, "SEMANTIC_TOKEN_MAX_SECONDS", DEFAULT_TOKEN_MAX_SECONDS, int),
            workers=max(1, _number(env, "SEMANTIC_WORKERS", 4, int)),
            continue_wait=_number(env, "SEMANTIC_CONTINUE_WAIT", 10.0),
            rollups=env.get("SEMANTIC_ROLLUPS", "on") != "off",
            now=_now(env),
            cors_origins=_origins(env.get("SEMANTIC_CORS_ORIGINS")),
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
