"""One Superset for the test session, started as `make bi` starts it (`python -m semantic.superset.run`, in
the environment `make bi-install` builds from bi/uv.lock) over the shared SQL endpoint and tiny sample."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.loopback import free_port
from semantic.superset import run
from semantic.superset.provision import SupersetApi
from tests.conftest import REPO_ROOT
from tests.semantic.conftest import SECRET, Server


@dataclass(frozen=True)
class Superset:
    url: str
    port: int
    state_dir: Path
    endpoint: Server
    log: Path
    output: list[str]  # what `make bi` printed

    @property
    def users(self) -> dict:
        return json.loads((self.state_dir / "users.json").read_text())

    def password(self, username: str) -> str:
        found = [self.users["admin"], *self.users["users"]]
        return next(u["password"] for u in found if u["username"] == username)

    def api(self, username: str = run.ADMIN_USERNAME) -> SupersetApi:
        return SupersetApi(self.url, username, self.password(username))

    def tenant_users(self) -> dict[str, dict[str, str]]:
        """tenant -> {"analyst": username, "viewer": username}"""
        found: dict[str, dict[str, str]] = {}
        for user in self.users["users"]:
            tenant, kind = user["username"].rsplit("_", 1)
            found.setdefault(tenant, {})[kind] = user["username"]
        return found


def bi_env(endpoint: Server, state_dir: Path) -> dict[str, str]:
    return {**os.environ, "PLATFORM_DATA_DIR": str(endpoint.layout.root), "SUPERSET_STATE_DIR": str(state_dir),
            "SEMANTIC_API_SECRET": SECRET}


def make_bi(port: int, sql_port: int, env: dict[str, str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "semantic.superset.run", "--port", str(port),
                             "--sql-port", str(sql_port)], cwd=REPO_ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)


def install() -> float:
    """`make bi-install`: Superset's locked environment (a no-op once installed); the seconds it took."""
    started = time.monotonic()
    subprocess.run(["make", "-s", "bi-install"], cwd=REPO_ROOT, check=True)
    return time.monotonic() - started


def start(endpoint: Server, state_dir: Path) -> Iterator[Superset]:
    install()
    port = free_port()
    proc = make_bi(port, endpoint.port, bi_env(endpoint, state_dir))
    output: list[str] = []
    try:
        deadline = time.monotonic() + 240
        for line in proc.stdout:
            output.append(line.rstrip())
            if line.startswith(run.READY):
                break
            assert time.monotonic() < deadline, "\n".join(output)
        assert any(line.startswith(run.READY) for line in output), "\n".join(output) + _tail(state_dir)
        yield Superset(f"http://127.0.0.1:{port}", port, state_dir, endpoint, state_dir / "superset.log", output)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _tail(state_dir: Path) -> str:
    log = state_dir / "superset.log"
    return log.read_text()[-4000:] if log.exists() else ""
