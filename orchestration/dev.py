"""`make dev`: the Dagster UI (webserver, daemon, code server) and the event collector together.

Events posted to the collector land in `data/landing/events`; the daemon's landing-files sensor
launches a micro-batch for them, so a developer sees an event reach the real-time mart from one
terminal. Ctrl-C stops both. Without `COLLECTOR_WRITE_KEYS`, each tenant of the sample app
database gets the write key `dev-<tenant>` (printed at start).
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import time

from orchestration.environment import REPO_ROOT, current_environment, tool
from orchestration.main import ensure_dagster_home
from orchestration.processes import interruptible_children


def dev_write_keys(app_db) -> str:
    """`dev-<tenant>=<tenant>` for every tenant of the app database; empty before any sample exists."""
    if not app_db.exists():
        return ""
    with sqlite3.connect(f"file:{app_db}?mode=ro", uri=True) as conn:
        tenants = [tenant for (tenant,) in conn.execute("select tenant_id from tenants order by tenant_id")]
    return ",".join(f"dev-{tenant}={tenant}" for tenant in tenants)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ui-port", type=int, default=3000)
    parser.add_argument("--collector-port", type=int, default=8100)
    args = parser.parse_args()
    env = current_environment()
    ensure_dagster_home(env)  # also exports DAGSTER_HOME to both children
    child_env = dict(os.environ)
    if not child_env.get("COLLECTOR_WRITE_KEYS") and not child_env.get("COLLECTOR_WRITE_KEYS_FILE"):
        child_env["COLLECTOR_WRITE_KEYS"] = dev_write_keys(env.layout.app_db)
        if not child_env["COLLECTOR_WRITE_KEYS"]:
            print("no tenants yet: run `make run` once, or set COLLECTOR_WRITE_KEYS=key=tenant[,...]")
            return 2
        print(f"collector write keys (Authorization: Bearer <key>): {child_env['COLLECTOR_WRITE_KEYS']}")
    interruptible_children()
    children = [
        subprocess.Popen([tool("dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(args.ui_port)],
                         cwd=REPO_ROOT, env=child_env, start_new_session=True),
        subprocess.Popen([sys.executable, "-m", "ingestion.collector", "--port", str(args.collector_port)],
                         cwd=REPO_ROOT, env=child_env, start_new_session=True),
    ]
    print(f"Dagster UI: http://127.0.0.1:{args.ui_port}   collector: http://127.0.0.1:{args.collector_port}/v1/batch")
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping and all(child.poll() is None for child in children):
        time.sleep(0.5)
    # one ended or we were asked to stop: stop the others gracefully (`dagster dev` on Ctrl-C)
    for child, stop_signal in zip(children, (signal.SIGINT, signal.SIGTERM), strict=True):
        if child.poll() is None:
            os.killpg(child.pid, stop_signal)
    for child in children:
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
    return 0 if stopping else 1


if __name__ == "__main__":
    sys.exit(main())
