"""dbt started from the warm process: a dbt command without dbt's 5 s of imports.

dagster-dbt runs dbt as a subprocess, and every dbt process imports dbt, its adapter and their
dependencies again before doing anything: about 5 s, a third of a micro-batch's dbt step. The
warm process behind `WarmRunLauncher` has those modules imported already, so it also serves dbt
commands: `orchestration/bin/dbt` (the resource's executable) runs this module, which hands the
command to the warm process over a Unix socket, with its own stdin, stdout and stderr. The warm
process forks, and the fork runs dbt's own command line on exactly those streams, environment
and working directory, then reports the exit code. Signals (dagster-dbt interrupts dbt on a
cancelled run) are passed on to the fork.

Outside a warm run (the command-line runner, a shell), or if the socket does not answer, this
module simply becomes the usual `dbt` executable.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys

SOCKET_ENV, PYTHON_ENV = "WARM_DBT_SOCKET", "WARM_DBT_PYTHON"
STREAMS = (0, 1, 2)


def serve_one(conn: socket.socket) -> None:
    """In the warm process: take one command from `conn` and start dbt for it in a fork."""
    message, fds, _, _ = socket.recv_fds(conn, 1 << 20, len(STREAMS))
    try:
        request = json.loads(message)
        if len(fds) != len(STREAMS):
            raise ValueError(f"expected {len(STREAMS)} streams, got {len(fds)}")
    except ValueError:
        for fd in fds:
            os.close(fd)
        raise
    if os.fork():
        for fd in fds:
            os.close(fd)
        return
    code = 1
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the warm process's handler is not dbt's
    try:
        if os.fork():  # the warm process reaps the first fork at once; dbt runs in the second
            os._exit(0)
        conn.sendall(f"pid {os.getpid()}\n".encode())
        for fd, target in zip(fds, STREAMS, strict=True):
            os.dup2(fd, target)
            os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        sys.stdout.reconfigure(line_buffering=True)  # dagster-dbt reads the events as they come
        code = _run_dbt(request["args"])
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            conn.sendall(f"exit {code}\n".encode())
        finally:
            os._exit(code)


def _run_dbt(args: list[str]) -> int:
    from dbt.cli.main import cli

    try:
        cli.main(args=args, prog_name="dbt", standalone_mode=True)
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    finally:
        # What a normal exit does for dbt's multiprocessing locks; the fork ends with os._exit,
        # which must not run the warm process's own exit handlers (they remove its socket).
        from multiprocessing import util

        util._exit_function()
    return 0


def reap_children() -> None:
    """The first forks exit at once; collect them so they do not linger as zombies."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main(args: list[str]) -> int:
    """In `orchestration/bin/dbt`: the command through the warm process, else the usual dbt."""
    conn = connect(os.environ[SOCKET_ENV])
    if conn is None:  # the warm process is gone (replaced, stopped): dbt the usual way
        os.execvp("dbt", ["dbt", *args])
    with conn:
        return run_via(conn, args)


def connect(path: str) -> socket.socket | None:
    conn = socket.socket(socket.AF_UNIX)
    try:
        conn.connect(path)
    except OSError:
        conn.close()
        return None
    return conn


def run_via(conn: socket.socket, args: list[str]) -> int:
    """Run a dbt command in a fork of the warm process at the other end of `conn`, on this
    process's streams, environment and working directory; its exit code."""
    request = json.dumps({"args": args, "env": dict(os.environ), "cwd": os.getcwd()}).encode()
    socket.send_fds(conn, [request], list(STREAMS))
    forwarded = {}
    try:
        for line in conn.makefile("r"):
            kind, value = line.split()
            if kind == "pid":
                dbt_pid = int(value)
                for signum in (signal.SIGINT, signal.SIGTERM):
                    forwarded[signum] = signal.signal(signum, lambda received, _, pid=dbt_pid: os.kill(pid, received))
            elif kind == "exit":
                return int(value)
    finally:
        for signum, handler in forwarded.items():
            signal.signal(signum, handler)
    print("warm dbt: the command ended without an exit code", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
