"""A throwaway PostgreSQL cluster for the tests: initdb and pg_ctl from Debian's server package, on a
free loopback port, removed afterwards. `make test` installs the package when it is missing.

Every step has a time limit, and a server that is missing or cannot start fails the test that
needs it with one line saying what to do, instead of hanging or dumping a traceback.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench.loopback import free_port

INSTALL_HINT = "install Debian's PostgreSQL server (`apt-get install postgresql`; `make test` does)"
STEP_SECONDS = 60


class ClusterError(RuntimeError):
    """The cluster cannot be had; the message is one line naming what to do."""


# Where the server's programs are: PATH, then Debian's versioned folders (newest first).
SEARCH = (*os.environ.get("PATH", "").split(os.pathsep), "/usr/lib/postgresql/*/bin")


def binary(name: str, search: tuple[str, ...] = SEARCH) -> str:
    """A server program, from the first folder of `search` (glob patterns allowed) that has it."""
    for pattern in search:
        for folder in sorted(glob.glob(pattern), reverse=True):
            path = os.path.join(folder, name)
            if os.access(path, os.X_OK):
                return path
    raise ClusterError(f"PostgreSQL's {name} was not found: {INSTALL_HINT}")


def _run(command: list[str], what: str) -> None:
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=STEP_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        raise ClusterError(f"PostgreSQL {what} did not finish in {STEP_SECONDS} s") from None
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ClusterError(f"PostgreSQL {what} failed: {last[0]}")


@contextlib.contextmanager
def cluster(database: str = "analytics", user: str = "analytics", search: tuple[str, ...] = SEARCH,
            port: int | None = None) -> Iterator[dict[str, str]]:
    """A running cluster with `database`; yields the PG* variables that reach it."""
    initdb, pg_ctl = binary("initdb", search), binary("pg_ctl", search)
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # the server refuses root
    # outside pytest's private temp tree, which the postgres user may not enter
    data = Path(tempfile.mkdtemp(prefix="pg-cluster-"))
    if as_user:
        shutil.chown(data, "postgres")
    port = port or free_port()
    try:
        _run([*as_user, initdb, "-D", str(data), "-U", user, "--auth=trust", "--no-sync"], "initdb")
        _run([*as_user, pg_ctl, "-D", str(data), "-l", str(data / "log"), "-w", "-t", str(STEP_SECONDS), "start",
              "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off"], "server start")
        _run([*as_user, binary("createdb", search), "-h", "127.0.0.1", "-p", str(port), "-U", user, database],
             "createdb")
        yield {"PGHOST": "127.0.0.1", "PGPORT": str(port), "PGUSER": user, "PGPASSWORD": "", "PGDATABASE": database}
    finally:
        with contextlib.suppress(ClusterError):
            _run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], "server stop")
        shutil.rmtree(data, ignore_errors=True)
