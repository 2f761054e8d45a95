"""`make bi`: Superset on 127.0.0.1:8088, provisioned from the semantic definitions, until Ctrl-C.

    SEMANTIC_API_SECRET=... make bi      (the SQL endpoint, `make serve-sql`, running on SEMANTIC_SQL_PORT)

1. Checks first, each with a message that says what to do: the SQL endpoint must answer on
   SEMANTIC_SQL_HOST:SEMANTIC_SQL_PORT (default 127.0.0.1:15432; the message names the port tried), and
   SUPERSET_PORT (default 8088) must be free. If Superset already answers there, it is provisioned
   again (nothing is duplicated) and this exits: it never starts a second one.
2. Superset's web server (gunicorn, in Superset's own environment `bi/.venv`) starts, migrating its
   metadata database under `<data dir>/superset/` (SUPERSET_STATE_DIR) first (`bi/app.py`), while
   this process builds the member catalog from the published data.
3. Provisioning (`provision.py`) over Superset's REST API, then the logins are printed. The demo users'
   passwords are generated once into `<data dir>/superset/users.json` (mode 600).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from ingestion.paths import data_dir_from
from semantic.settings import ServingSettings
from semantic.superset import definitions, provision, tenancy

REPO_ROOT = Path(__file__).resolve().parents[2]
BI_DIR = REPO_ROOT / "bi"
BI_PYTHON = BI_DIR / ".venv" / "bin" / "python"
READY = "Superset is ready"
ADMIN_USERNAME = "admin"
DEMO_TENANTS = 2


class BiError(RuntimeError):
    """`make bi` cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class BiSettings:
    data_dir: Path
    port: int
    sql_host: str
    sql_port: int
    secret: str
    state_dir: Path  # Superset's metadata database, secret key, users.json and log

    @classmethod
    def from_environment(cls, env=None, port: int | None = None, sql_port: int | None = None) -> BiSettings:
        env = os.environ if env is None else env
        if not env.get("SEMANTIC_API_SECRET"):
            raise BiError("set SEMANTIC_API_SECRET (the SQL endpoint's: Superset signs each user's token with it)")
        data_dir = data_dir_from(env)
        return cls(data_dir, port or int(env.get("SUPERSET_PORT", 8088)),
                   env.get("SEMANTIC_SQL_HOST", "127.0.0.1"), sql_port or int(env.get("SEMANTIC_SQL_PORT", 15432)),
                   env["SEMANTIC_API_SECRET"],
                   Path(env.get("SUPERSET_STATE_DIR") or data_dir / "superset").resolve())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def check_endpoint(host: str, port: int) -> None:
    try:
        with socket.create_connection((host, port), timeout=3):
            return
    except OSError as exc:
        raise BiError(f"the SQL endpoint is not reachable on {host}:{port} ({exc.strerror or exc}): start it with "
                      f"`make serve-sql`, or point SEMANTIC_SQL_HOST/SEMANTIC_SQL_PORT at it") from None


def superset_answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).text.strip() == "OK"
    except httpx.HTTPError:
        return False


def port_taken(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def accounts(state_dir: Path, tenants: list[str] | None = None) -> dict:
    """The admin, then (once the tenants are known) the demo users: an analyst and a viewer for each of
    two tenants. Passwords are made once and kept in `users.json`."""
    path = state_dir / "users.json"
    made = json.loads(path.read_text()) if path.exists() else {}
    if "admin" in made and ("users" in made or tenants is None):
        return made
    made.setdefault("admin", {"username": ADMIN_USERNAME, "password": secrets.token_urlsafe(12)})
    if tenants is not None:
        made["users"] = [{"username": f"{tenant}_{kind}", "password": secrets.token_urlsafe(12),
                          "roles": [tenancy.tenant_role(tenant), role]}
                         for tenant in sorted(tenants)[:DEMO_TENANTS]
                         for kind, role in (("analyst", provision.ANALYST_ROLE), ("viewer", provision.VIEWER_ROLE))]
    state_dir.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(json.dumps(made, indent=2))
    return made


def superset_env(settings: BiSettings, admin: dict) -> dict[str, str]:
    return {**os.environ, "SUPERSET_CONFIG_PATH": str(BI_DIR / "superset_config.py"),
            "PLATFORM_DATA_DIR": str(settings.data_dir), "SUPERSET_STATE_DIR": str(settings.state_dir),
            "SEMANTIC_API_SECRET": settings.secret,
            "SUPERSET_ADMIN_USERNAME": admin["username"], "SUPERSET_ADMIN_PASSWORD": admin["password"]}


def start_superset(settings: BiSettings, env: dict[str, str]) -> subprocess.Popen:
    if not BI_PYTHON.exists():
        raise BiError(f"Superset is not installed in {BI_DIR / '.venv'}: run `make bi` (it installs it first)")
    with open(settings.state_dir / "superset.log", "a") as out:
        return subprocess.Popen([str(BI_DIR / ".venv" / "bin" / "gunicorn"), "--workers", "1", "--threads", "8",
                                 "--timeout", "120", "--bind", f"127.0.0.1:{settings.port}", "--pythonpath",
                                 str(BI_DIR), "app:application"], env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_ready(settings: BiSettings, proc: subprocess.Popen, seconds: float = 300) -> None:
    """Until Superset answers its health check (its first start migrates the metadata database)."""
    deadline = time.monotonic() + seconds
    while not superset_answers(settings.url):
        if proc.poll() is not None:
            raise BiError(f"Superset stopped while starting: see {settings.state_dir / 'superset.log'}")
        if time.monotonic() > deadline:
            raise BiError(f"Superset did not answer on {settings.url} within {seconds:.0f} s: "
                          f"see {settings.state_dir / 'superset.log'}")
        time.sleep(0.3)


def catalog_and_tenants(settings: BiSettings):
    service = ServingSettings.from_environment({**os.environ, "PLATFORM_DATA_DIR": str(settings.data_dir),
                                                "SEMANTIC_API_SECRET": settings.secret}).service()
    return definitions.datasets(service.catalog), sorted(service.current().tenants)


def provision_running(settings: BiSettings, found, tenants, users: dict) -> provision.Provisioned:
    api = provision.SupersetApi(settings.url, users["admin"]["username"], users["admin"]["password"])
    try:
        return provision.provision(api, found, provision.endpoint_uri(settings.sql_host, settings.sql_port),
                                   tenants, users["users"])
    finally:
        api.close()


def report(settings: BiSettings, users: dict, result: provision.Provisioned, seconds: float) -> None:
    """The logins, any charts left without their metric, and last the line that says Superset is ready."""
    print(f"  log in as {users['admin']['username']} / {users['admin']['password']} (admin: every tenant)")
    for user in users["users"]:
        print(f"  log in as {user['username']} / {user['password']} ({', '.join(user['roles'])})")
    for metric, charts in sorted(result.stale_charts.items()):
        print(f"  metric {metric} is gone from the semantic layer; charts that used it: {', '.join(charts)}")
    print(f"{READY} on {settings.url} ({seconds:.1f} s): {len(result.datasets)} datasets, dashboard "
          f"{settings.url}/superset/dashboard/{definitions.DASHBOARD_SLUG}/", flush=True)


def run(settings: BiSettings) -> int:
    started = time.monotonic()
    check_endpoint(settings.sql_host, settings.sql_port)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    if superset_answers(settings.url):
        print(f"Superset is already running on {settings.url}: provisioning it again (nothing is duplicated); "
              f"stop that one to restart it", flush=True)
        found, tenants = catalog_and_tenants(settings)
        users = accounts(settings.state_dir, tenants)
        report(settings, users, provision_running(settings, found, tenants, users), time.monotonic() - started)
        return 0
    if port_taken(settings.port):
        raise BiError(f"port {settings.port} is taken by something that is not Superset: set SUPERSET_PORT")
    with ThreadPoolExecutor(1) as pool:
        catalog = pool.submit(catalog_and_tenants, settings)  # MetricFlow's while Superset starts
        proc = start_superset(settings, superset_env(settings, accounts(settings.state_dir)["admin"]))
        signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
        try:
            wait_ready(settings, proc)
            found, tenants = catalog.result()
            users = accounts(settings.state_dir, tenants)
            result = provision_running(settings, found, tenants, users)
            report(settings, users, result, time.monotonic() - started)
            return proc.wait()
        except BaseException:
            proc.terminate()
            proc.wait(timeout=30)
            raise


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Superset over the governed metrics (make bi)")
    parser.add_argument("--port", type=int, help="Superset's port (default SUPERSET_PORT, else 8088)")
    parser.add_argument("--sql-port", type=int, help="the SQL endpoint's port (default SEMANTIC_SQL_PORT, else 15432)")
    args = parser.parse_args(argv)
    try:
        sys.exit(run(BiSettings.from_environment(port=args.port, sql_port=args.sql_port)))
    except (BiError, provision.ProvisioningError) as exc:
        print(f"make bi: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
