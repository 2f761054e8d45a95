"""The warm process behind `WarmRunLauncher`: imports the code location once, then forks one process per run.

    python -m orchestration.warm_worker MODULE [MODULE ...]

It imports the modules, checks that no thread was started (forking a process with threads can
copy a lock another thread held), answers `ready <dbt socket>`, then reads one request per line on stdin: a
JSON string holding `dagster api execute_run`'s argument. For each it forks twice, so the run is
no child of this process (nothing to reap, and it outlives a restart of the launcher), and
answers `started <pid>` with the run process's id. The run process is exactly `dagster api
execute_run <argument>`, without the seconds of imports: they were done before the fork.

It also serves the dbt commands of those runs on a Unix socket (`orchestration/warm_dbt.py`).
"""

from __future__ import annotations

import importlib
import json
import os
import selectors
import signal
import socket
import sys
import tempfile
import threading
import traceback

from orchestration import warm_dbt


def start_run(argument: str) -> int:
    """Fork the process that executes the run; its pid once it runs."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_end)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        try:
            os.setsid()  # its own session: a Ctrl-C for the launcher is not one for the run
            if os.fork():
                os._exit(0)
            os.write(write_end, str(os.getpid()).encode())
            os.close(write_end)
            _execute(argument)
        finally:
            os._exit(1)  # never back into the request loop
    os.close(write_end)
    os.waitpid(child, 0)
    with os.fdopen(read_end) as pipe:
        return int(pipe.read())


def _execute(argument: str) -> None:
    """Run `dagster api execute_run`; stdin and stdout are the launcher's pipe, so the run gets neither."""
    from dagster._cli.api import api_cli

    with open(os.devnull) as devnull:
        os.dup2(devnull.fileno(), 0)
    os.dup2(2, 1)
    code = 1
    try:
        api_cli.main(args=["execute_run", argument], prog_name="dagster api", standalone_mode=True)
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main(modules: list[str]) -> int:
    # Stopped with SIGTERM by the launcher: unwind, so the socket's folder is removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        for module in modules:
            importlib.import_module(module)
        if threading.active_count() != 1:
            names = ", ".join(t.name for t in threading.enumerate() if t is not threading.main_thread())
            raise RuntimeError(f"importing {', '.join(modules)} started threads ({names}): forking is unsafe")
    except BaseException as exc:  # the launcher falls back to a fresh process and says why
        reason = "".join(traceback.format_exception_only(exc)).strip().replace("\n", " ")
        print(f"error {reason}", flush=True)
        return 1
    with tempfile.TemporaryDirectory(prefix="warm-dbt-") as private, socket.socket(socket.AF_UNIX) as dbt:
        dbt.bind(os.path.join(private, "dbt.sock"))  # in a folder only this user can enter
        dbt.listen()
        # Inherited by every run forked from here, and so by the dbt commands of its steps.
        os.environ.update({warm_dbt.SOCKET_ENV: dbt.getsockname(), warm_dbt.PYTHON_ENV: sys.executable})
        print(f"ready {dbt.getsockname()}", flush=True)
        serve(dbt)
    return 0


def serve(dbt: socket.socket) -> None:
    """Start runs asked for on stdin (one JSON line each) and dbt commands asked for on `dbt`."""
    selector = selectors.DefaultSelector()
    selector.register(sys.stdin.fileno(), selectors.EVENT_READ, "launcher")
    selector.register(dbt, selectors.EVENT_READ, "dbt")
    pending = b""
    while True:
        for key, _ in selector.select(timeout=5):
            if key.data == "dbt":
                conn, _ = dbt.accept()
                with conn:
                    conn.settimeout(10)  # a client that connects and sends nothing must not stall launches
                    try:
                        warm_dbt.serve_one(conn)
                    except (OSError, ValueError, KeyError) as exc:  # a bad request is refused, not fatal
                        print(f"warm dbt: refused a request: {exc!r}", file=sys.stderr, flush=True)
                continue
            chunk = os.read(sys.stdin.fileno(), 1 << 16)
            if not chunk:
                return  # the launcher has gone
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in filter(None, lines):
                print(f"started {start_run(json.loads(line))}", flush=True)
        warm_dbt.reap_children()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
