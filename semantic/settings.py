"""The serving side's settings: one object, read once from the environment by each server's entry
point (the metrics server, the SQL endpoint, the MCP server, `semantic.ask` and the Cube export).

    PLATFORM_DATA_DIR          the data directory (`ingestion.paths.data_dir_from`)
    DBT_TARGET, PG*            the warehouse the data was published in (`warehouse.WarehouseTarget`)
    SEMANTIC_API_SECRET        the HS256 secret of the API tokens (CUBEJS_API_SECRET is read too)
    SEMANTIC_JWKS_FILE, SEMANTIC_JWKS_URL, SEMANTIC_JWKS_REFRESH_SECONDS
                               key sets whose keys tokens name by `kid` (RS256, rotation: `keys.py`)
    SEMANTIC_RATE_LIMIT        requests (REST) and statements (SQL) per token, e.g. 20/second;1000/hour
                               (default off; `ingestion.rate_limits`)
    SEMANTIC_AUDIT_LOG         the folder of the API access log (default <data dir>/audit; off: none)
    SEMANTIC_TLS_CERT_FILE, SEMANTIC_TLS_KEY_FILE   serve TLS (HTTPS, and SSLRequest on the SQL endpoint)
    SEMANTIC_SQL_METRICS_PORT  the SQL endpoint's HTTP port for /metrics and /healthz (default none)
    SEMANTIC_STATUS_PARTS      the parts the status page (/status) probes besides this server, as
                               name=health URL,... (e.g. collector=http://127.0.0.1:8100/health)
    PLATFORM_FRESHNESS_MAX_HOURS  how old published data may get before it counts as stale (default 26)
    SEMANTIC_TOKEN_MAX_SECONDS the longest a token may be valid from now (default 90 days): a token
                               without `exp`, or with one further out, is refused
    SEMANTIC_WORKERS           threads that compile and run queries (default 4)
    SEMANTIC_CONTINUE_WAIT     seconds a request waits before Cube's "Continue wait" (default 10)
    SEMANTIC_EXPORT_MAX_ROWS   the most rows one export (/cubejs-api/v1/export) may have (default 5,000,000):
                               a larger one is refused, with this limit named, before anything is sent
    SEMANTIC_ROLLUPS           off: every query compiled by MetricFlow (the benchmark's baseline)
    SEMANTIC_WS_CONNECTIONS    WebSocket connections per server process (default 1000)
    SEMANTIC_WS_CONNECTIONS_PER_TOKEN     of them with one token (default 20)
    SEMANTIC_WS_SUBSCRIPTIONS_PER_TOKEN   subscriptions of one token over all its connections (default 100)
    SEMANTIC_WS_SEND_BUFFER_BYTES         replies waiting for a slow client before it is dropped (default 4 MiB)
    SEMANTIC_CORS_ORIGINS      the web origins whose pages may call the API from a browser (the reports'
                               question page): a comma-separated list, or * for any; default any
                               loopback origin (http://127.0.0.1:<port>, http://localhost:<port>)
    PLATFORM_NOW               the moment the SQL endpoint's now() means, and what questions' relative
                               dates ("last month") count from (`ingestion.paths.pinned_now_from`)
    SEMANTIC_MCP_TOKEN         the token whose tenant the MCP server answers for over stdio

The variables the pipeline shares with the servers are parsed by the same functions it uses, and
nothing here imports the pipeline (dlt, Dagster): the servers start without it.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from pathlib import Path

from ingestion.paths import data_dir_from, pinned_now_from
from ingestion.rate_limits import Rates, rates_from
from ingestion.tls import TlsFiles, tls_from
from semantic.keys import KeySet
from semantic.warehouse import WarehouseTarget

# The governed metric definitions as MetricFlow reads them, written by `dbt parse` (`make manifest`).
SEMANTIC_MANIFEST = Path(__file__).resolve().parents[1] / "dbt_project" / "target" / "semantic_manifest.json"
DEFAULT_TOKEN_MAX_SECONDS = 90 * 24 * 3600
DEFAULT_EXPORT_MAX_ROWS = 5_000_000
LOOPBACK_ORIGINS = r"https?://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?"
# On SIGTERM, how long the HTTP servers let requests in flight (open WebSockets, exports) finish:
# a deployment's stop must not wait on a client that never hangs up.
SHUTDOWN_SECONDS = 10


def stop_on_sigterm() -> None:
    """SIGTERM stops the server even when the process that started it ignored the signal (an
    ignored signal is inherited across exec: seen from test runners and shell background jobs), as
    process managers (systemd, Docker, Kubernetes) stop servers with it."""
    if signal.getsignal(signal.SIGTERM) == signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


# MetricFlow compiles for DuckDB, Postgres, Redshift, Snowflake, BigQuery, Databricks, Trino, Athena and
# Vertica (metricflow.protocols.sql_client.SqlEngine): there is no Spark engine, and dbt-metricflow does
# not take dbt-spark's adapter. Databricks SQL is Spark SQL on Databricks' own service.
SPARK_NOT_SERVED = ("DBT_TARGET=spark: the metrics server cannot serve from Spark (MetricFlow has no Spark SQL "
                    "engine); serve from duckdb or postgres")


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


def freshness_limit_from(env: Mapping[str, str]) -> timedelta:
    """PLATFORM_FRESHNESS_MAX_HOURS: how old published data may get (the status page, the freshness
    alerts of `orchestration/alerting.py`); default a day and two hours (the batch runs daily at 02:00)."""
    value = env.get("PLATFORM_FRESHNESS_MAX_HOURS", "26")
    try:
        hours = float(value)
    except ValueError:
        hours = -1.0
    if not 0 < hours < float("inf"):
        raise SettingsError(f"PLATFORM_FRESHNESS_MAX_HOURS must be a number of hours above 0, not {value!r}")
    return timedelta(hours=hours)


def _status_parts(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """SEMANTIC_STATUS_PARTS: `name=url,...`, the parts the status page probes."""
    raw = env.get("SEMANTIC_STATUS_PARTS", "").strip()
    parts: dict[str, str] = {}
    for entry in filter(None, (e.strip() for e in raw.split(","))):
        name, _, url = entry.partition("=")
        name, url = name.strip(), url.strip()
        if not name or not url.startswith(("http://", "https://")):
            raise SettingsError(f"SEMANTIC_STATUS_PARTS: {entry!r} is not name=http(s)://host:port/path")
        if name in parts:
            raise SettingsError(f"SEMANTIC_STATUS_PARTS: {name!r} is named twice")
        parts[name] = url
    return tuple(parts.items())


def _audit_dir(env: Mapping[str, str], data_dir: Path) -> Path | None:
    value = env.get("SEMANTIC_AUDIT_LOG", "").strip()
    if value.lower() == "off":
        return None
    return Path(value).resolve() if value else data_dir / "audit"


@dataclass(frozen=True)
class SubscriptionLimits:
    """The bounds of the WebSocket subscriptions (see `subscriptions.py`)."""

    connections: int = 1000
    connections_per_token: int = 20
    subscriptions_per_token: int = 100
    send_buffer_bytes: int = 4 * 1024 * 1024

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> SubscriptionLimits:
        return cls(**{f.name: max(1, _number(env, f"SEMANTIC_WS_{f.name.upper()}", f.default, int))
                      for f in fields(cls)})


def _now(env: Mapping[str, str]) -> datetime | None:
    try:
        return pinned_now_from(env)
    except ValueError as exc:  # the pipeline's parser: a SettingsError here, which every entry point reports
        raise SettingsError(str(exc)) from None


def _names_a_key(env: Mapping[str, str]) -> bool:
    return any(env.get(name) for name in ("SEMANTIC_API_SECRET", "CUBEJS_API_SECRET", "SEMANTIC_JWKS_FILE",
                                           "SEMANTIC_JWKS_URL"))


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
    keys: KeySet
    max_token_seconds: int = DEFAULT_TOKEN_MAX_SECONDS
    workers: int = 4
    continue_wait: float = 10.0
    export_max_rows: int = DEFAULT_EXPORT_MAX_ROWS
    rollups: bool = True
    subscriptions: SubscriptionLimits = field(default_factory=SubscriptionLimits)
    semantic_manifest: Path = SEMANTIC_MANIFEST
    now: datetime | None = None  # PLATFORM_NOW, else the clock
    rate_limit: Rates = ()  # per token
    audit_dir: Path | None = None
    tls: TlsFiles | None = None
    sql_metrics_port: int | None = None
    status_parts: tuple[tuple[str, str], ...] = ()  # (name, health URL) the status page probes
    freshness_limit: timedelta = timedelta(hours=26)
    cors_origins: str = LOOPBACK_ORIGINS  # a regular expression of the origins allowed
    mcp_token: str | None = field(default=None, repr=False)  # SEMANTIC_MCP_TOKEN: the stdio MCP server's caller

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None, require_secret: bool = True) -> ServingSettings:
        """The settings; `require_secret=False` for tools that read the published data in-process
        and check no token (`python -m semantic.ask`)."""
        env = os.environ if env is None else env
        data_dir = data_dir_from(env)
        try:
            keys = KeySet.from_environment(env) if require_secret or _names_a_key(env) else KeySet()
            guards = {"rate_limit": rates_from(env, "SEMANTIC_RATE_LIMIT"), "audit_dir": _audit_dir(env, data_dir),
                      "tls": tls_from(env, "SEMANTIC_TLS_CERT_FILE", "SEMANTIC_TLS_KEY_FILE")}
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        metrics_port = _number(env, "SEMANTIC_SQL_METRICS_PORT", None, int)
        warehouse = WarehouseTarget.from_environment(env, data_dir)
        if warehouse.target == "spark":
            raise SettingsError(SPARK_NOT_SERVED)
        return cls(
            data_dir=data_dir,
            warehouse=warehouse,
            keys=keys,
            sql_metrics_port=metrics_port,
            **guards,
            max_token_seconds=_number(env, "SEMANTIC_TOKEN_MAX_SECONDS", DEFAULT_TOKEN_MAX_SECONDS, int),
            workers=max(1, _number(env, "SEMANTIC_WORKERS", 4, int)),
            continue_wait=_number(env, "SEMANTIC_CONTINUE_WAIT", 10.0),
            export_max_rows=max(1, _number(env, "SEMANTIC_EXPORT_MAX_ROWS", DEFAULT_EXPORT_MAX_ROWS, int)),
            rollups=env.get("SEMANTIC_ROLLUPS", "on") != "off",
            subscriptions=SubscriptionLimits.from_environment(env),
            now=_now(env),
            cors_origins=_origins(env.get("SEMANTIC_CORS_ORIGINS")),
            status_parts=_status_parts(env),
            freshness_limit=freshness_limit_from(env),
            mcp_token=env.get("SEMANTIC_MCP_TOKEN") or None,
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
