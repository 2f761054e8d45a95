"""The event collector as a real server (entry point, worker processes, landing process) on
loopback, for the tests that post events to it."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from ingestion.paths import DataLayout
from tests.conftest import REPO_ROOT

KEYS = {"key-t001": "t001", "key-t002": "t002"}


@dataclass(frozen=True)
class Running:
    url: str
    process: subprocess.Popen

    def kill_9(self) -> None:
        """kill -9 of the whole collector (entry point, workers and landing process), as a crash does."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        time.sleep(0.2)  # let the kernel reap the group


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def collector_env(layout: DataLayout, rotate_seconds: float = 0.3, workers: int = 2, **settings: str) -> dict:
    return {**os.environ, "PLATFORM_DATA_DIR": str(layout.root), "COLLECTOR_ROTATE_SECONDS": str(rotate_seconds),
            "COLLECTOR_WORKERS": str(workers), "COLLECTOR_WRITE_KEYS": ",".join(f"{k}={t}" for k, t in KEYS.items()),
            **settings}


def start(layout: DataLayout, port: int | None = None, **options) -> subprocess.Popen:
    """The entry point in a session of its own (so that `kill_9` reaches every process of it); its
    output goes to a temporary file (`output(process)`), which a chatty run cannot fill up."""
    port = port or free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process, closed with it
    process = subprocess.Popen([sys.executable, "-m", "ingestion.collector", "--port", str(port)], cwd=REPO_ROOT,
                               env=collector_env(layout, **options), stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    process.log = log
    return process


def output(process: subprocess.Popen) -> str:
    process.log.seek(0)
    return process.log.read().decode(errors="replace")


@contextmanager
def collector(layout: DataLayout, rotate_seconds: float = 0.3, **options) -> Iterator[Running]:
    port = free_port()
    proc = start(layout, port, rotate_seconds=rotate_seconds, **options)
    # with a certificate (COLLECTOR_TLS_CERT_FILE), HTTPS trusting it (it signs itself)
    certificate = options.get("COLLECTOR_TLS_CERT_FILE")
    verify = ssl.create_default_context(cafile=certificate) if certificate else True
    url = f"{'https' if certificate else 'http'}://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, output(proc)[-3000:]
            try:
                if httpx.get(f"{url}/health", timeout=1, verify=verify).status_code in (200, 503):
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the collector did not start"
            time.sleep(0.05)
        yield Running(url, proc)
    finally:
        if proc.poll() is None:
            proc.terminate()  # a graceful stop closes the open files into events/
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                raise
