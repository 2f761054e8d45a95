"""The event collector as a real server process on loopback, for the tests that post events to it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
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


@contextmanager
def collector(layout: DataLayout, rotate_seconds: float = 0.3) -> Iterator[Running]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PLATFORM_DATA_DIR": str(layout.root), "COLLECTOR_ROTATE_SECONDS": str(rotate_seconds),
           "COLLECTOR_WRITE_KEYS": ",".join(f"{k}={t}" for k, t in KEYS.items())}
    proc = subprocess.Popen([sys.executable, "-m", "ingestion.collector", "--port", str(port)], cwd=REPO_ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the collector did not start"
            time.sleep(0.1)
        yield Running(url, proc)
    finally:
        if proc.poll() is None:
            proc.terminate()  # a graceful stop closes the open files into events/
            proc.wait(timeout=30)
