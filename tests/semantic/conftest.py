"""A real metrics server on loopback over the tiny sample's published snapshot (`published`, shared
by the session: tests that publish or write give a server their own copy, as `live_server` does)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from bench import live
from bench.loopback import free_port
from ingestion.paths import DataLayout
from orchestration.environment import SEMANTIC_MANIFEST
from semantic import snapshots
from semantic.auth import issue_token
from semantic.publication import Version
from tests.conftest import REPO_ROOT
from tests.semantic.keyring import Keyring, keyring, serving
from tests.tls import Certificate, self_signed

SECRET = "test-secret-that-is-long-enough-for-hs256"


@dataclass(frozen=True)
class Server:
    url: str
    layout: DataLayout
    port: int
    verify: ssl.SSLContext | bool = True  # what clients verify its TLS certificate with, when it has one
    pid: int = 0

    def token(self, tenant_id: str | None = None, role: str = "tenant", ttl_seconds: int = 3600) -> str:
        return issue_token(SECRET, tenant_id, role, ttl_seconds)

    @property
    def admin(self) -> str:
        return self.token(role="admin")


def _http_ready(url: str, verify: ssl.SSLContext | bool = True) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2, verify=verify).status_code == 200
    except httpx.HTTPError:
        return False


def _tcp_ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def start_server(layout: DataLayout, log: Path, module: str = "semantic.server",
                 continue_wait: float = 10, extra_env: dict[str, str] | None = None,
                 sigterm_ignored: bool = False) -> Iterator[Server]:
    """Run one of the semantic servers (REST or SQL wire) in its own process until the session ends;
    `sigterm_ignored`: started as by a parent that ignores SIGTERM (which the server inherits)."""
    port = free_port()
    # the audit log beside the server's log: the shared published data stays as built
    env = {**os.environ, "PLATFORM_DATA_DIR": str(layout.root), "SEMANTIC_API_SECRET": SECRET,
           "SEMANTIC_CONTINUE_WAIT": str(continue_wait), "SEMANTIC_AUDIT_LOG": str(log.with_suffix(".audit")),
           **(extra_env or {})}
    with open(log, "w") as out:
        ignore = (lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN)) if sigterm_ignored else None
        proc = subprocess.Popen([sys.executable, "-m", module, "--port", str(port)], cwd=REPO_ROOT,
                                env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=ignore)
    # with a certificate (SEMANTIC_TLS_CERT_FILE), HTTPS trusting it (it signs itself)
    certificate = env.get("SEMANTIC_TLS_CERT_FILE")
    verify = ssl.create_default_context(cafile=certificate) if certificate else True
    url = f"{'https' if certificate else 'http'}://127.0.0.1:{port}"
    ready = (lambda: _http_ready(url, verify)) if module == "semantic.server" else (lambda: _tcp_ready(port))
    try:
        deadline = time.monotonic() + 90
        while not ready():
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"{module} did not become ready"
            time.sleep(0.3)
        yield Server(url, layout, port, verify, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError(f"{module} did not stop within 30 s of SIGTERM:\n{log.read_text()[-3000:]}") from None


def publish(layout: DataLayout, changes: snapshots.Changes | None = None) -> Version:
    """Publish the layout's warehouse as the pipeline does: a new snapshot with its rollups (of
    everything, or of the `changes` only, as a micro-batch does)."""
    return live.publish(layout, SEMANTIC_MANIFEST, changes)


def publish_minute(layout: DataLayout, tenant: str, events: int, revenue: float = 0.0,
                   minute: datetime | None = None) -> tuple[datetime, Version]:
    """The real-time mart's row of one tenant and minute (now's by default) replaced, as a micro-batch
    merges it, and published as a micro-batch publishes it: `events` events, `revenue` of it at
    checkout (one checkout if any)."""
    minute = live.write_minute(layout.warehouse, tenant, events, revenue, minute)
    return minute, publish(layout, live.PER_MINUTE)


@pytest.fixture(scope="session")
def server(published, tmp_path_factory) -> Iterator[Server]:
    yield from start_server(published, tmp_path_factory.mktemp("server") / "server.log")


@pytest.fixture(scope="session")
def impatient_server(published, tmp_path_factory) -> Iterator[Server]:
    """Answers "Continue wait" to anything not already computed: every new query takes a cycle."""
    yield from start_server(published, tmp_path_factory.mktemp("server") / "impatient.log", continue_wait=0)


@pytest.fixture(scope="session")
def sql_endpoint(published, tmp_path_factory) -> Iterator[Server]:
    """The Postgres-wire SQL endpoint."""
    yield from start_server(published, tmp_path_factory.mktemp("server") / "pgwire.log", module="semantic.pgwire")


@dataclass(frozen=True)
class Secured:
    """The REST server and the SQL endpoint with every guard on: TLS, a key set (a file and a URL) beside
    the HS256 secret, a rate limit of 8 requests or statements a minute per token, the audit log."""

    rest: Server
    sql: Server
    metrics_url: str  # the SQL endpoint's HTTP port (/metrics, /healthz)
    keys: Keyring
    certificate: Certificate
    audit_dir: Path
    jwks_url: str


@pytest.fixture(scope="session")
def secured(published, tmp_path_factory) -> Iterator[Secured]:
    root = tmp_path_factory.mktemp("secured")
    ring, certificate = keyring(root / "keys"), self_signed(root / "tls")
    with serving(root / "keys" / "url-jwks.json") as jwks_url, contextlib.ExitStack() as stack:
        env = {"SEMANTIC_JWKS_FILE": str(root / "keys" / "jwks.json"), "SEMANTIC_JWKS_URL": jwks_url,
               "SEMANTIC_JWKS_REFRESH_SECONDS": "1", "SEMANTIC_RATE_LIMIT": "8/minute",
               "SEMANTIC_AUDIT_LOG": str(root / "audit"), **certificate.env("SEMANTIC")}
        metrics_port = free_port()
        run = contextlib.contextmanager(start_server)
        rest = stack.enter_context(run(published, root / "rest.log", extra_env=env))
        sql = stack.enter_context(run(published, root / "sql.log", module="semantic.pgwire",
                                      extra_env={**env, "SEMANTIC_SQL_METRICS_PORT": str(metrics_port)}))
        yield Secured(rest, sql, f"https://127.0.0.1:{metrics_port}", ring, certificate, root / "audit", jwks_url)


@pytest.fixture(scope="session")
def live_server(published, tmp_path_factory) -> Iterator[Server]:
    """A server over a private copy of the published sample, which tests publish new data into (with
    `publish_minute`); with small WebSocket bounds, so that tests can reach them."""
    root = tmp_path_factory.mktemp("live") / "data"
    root.mkdir()
    shutil.copyfile(published.warehouse, root / "warehouse.duckdb")
    shutil.copytree(published.root / "published", root / "published")
    yield from start_server(DataLayout(root), root.parent / "live.log", extra_env={
        "SEMANTIC_WS_CONNECTIONS": "12", "SEMANTIC_WS_CONNECTIONS_PER_TOKEN": "3",
        "SEMANTIC_WS_SUBSCRIPTIONS_PER_TOKEN": "4"})
