"""A real metrics server on loopback over the tiny sample's published snapshot (`published`, shared
by the session: tests that publish or write give a server their own copy)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bench.loopback import free_port
from ingestion.paths import DataLayout
from orchestration.environment import SEMANTIC_MANIFEST
from semantic import rollups
from semantic.auth import issue_token
from semantic.publication import DuckDbSnapshots, Version
from tests.conftest import REPO_ROOT

SECRET = "test-secret-that-is-long-enough-for-hs256"


@dataclass(frozen=True)
class Server:
    url: str
    layout: DataLayout
    port: int

    def token(self, tenant_id: str | None = None, role: str = "tenant", ttl_seconds: int = 3600) -> str:
        return issue_token(SECRET, tenant_id, role, ttl_seconds)

    @property
    def admin(self) -> str:
        return self.token(role="admin")


def _http_ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _tcp_ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def start_server(layout: DataLayout, log: Path, module: str = "semantic.server",
                 continue_wait: float = 10, extra_env: dict[str, str] | None = None) -> Iterator[Server]:
    """Run one of the semantic servers (REST or SQL wire) in its own process until the session ends."""
    port = free_port()
    env = {**os.environ, "PLATFORM_DATA_DIR": str(layout.root), "SEMANTIC_API_SECRET": SECRET,
           "SEMANTIC_CONTINUE_WAIT": str(continue_wait), **(extra_env or {})}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", module, "--port", str(port)], cwd=REPO_ROOT,
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    ready = (lambda: _http_ready(url)) if module == "semantic.server" else (lambda: _tcp_ready(port))
    try:
        deadline = time.monotonic() + 90
        while not ready():
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"{module} did not become ready"
            time.sleep(0.3)
        yield Server(url, layout, port)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def publish(layout: DataLayout) -> Version:
    """Publish the layout's warehouse as the pipeline does: a new snapshot with its rollups."""
    publication = DuckDbSnapshots(layout.warehouse, layout.root / "published")
    return publication.publish(build=rollups.builder(SEMANTIC_MANIFEST))


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
