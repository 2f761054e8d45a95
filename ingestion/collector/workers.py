"""HTTP worker processes that each listen on the port with a socket of their own (SO_REUSEPORT).

Why not uvicorn's `--workers`: its processes share one listening socket, and the one that wakes
first accepts every connection waiting. Connections opened together (an SDK's pool, a load
balancer's, the benchmark's 16) then mostly land on one process: measured here with 16 connections
and two workers, one of them served nearly all requests in about half the runs, leaving a core idle
for validation, the collector's costly part. Here each worker binds its own socket with SO_REUSEPORT
and the kernel spreads new connections across them by address. uvicorn serves each socket
(`Server.run(sockets=...)`, its public API); this module is the small supervisor around them: it
starts the workers, restarts one that dies, and on SIGTERM or SIGINT lets each finish gracefully.
A port in use is refused before any worker starts, since SO_REUSEPORT alone would let a second
server silently share it.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import time

import uvicorn

log = logging.getLogger("ingestion.collector")

# a worker that dies sooner than this after its start failed to start: the supervisor gives up
STARTUP_SECONDS = 5.0


def _listening_socket(host: str, port: int, reuse_port: bool = True) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _free_port(host: str, port: int) -> int:
    """The port (a free one for 0), or exit naming why it cannot be served."""
    try:
        with _listening_socket(host, port, reuse_port=False) as probe:
            return probe.getsockname()[1]
    except OSError as exc:
        raise SystemExit(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def _worker(app: str, host: str, port: int, options: dict) -> None:
    sock = _listening_socket(host, port)
    sock.listen(2048)
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, **options)).run(sockets=[sock])


def serve(app: str, host: str, port: int, workers: int, **options) -> None:
    """Serve uvicorn's `app` (an import string; `options` are `uvicorn.Config`'s) from `workers`
    processes until SIGTERM or SIGINT, then wait for each to finish its requests."""
    port = _free_port(host, port)
    context = multiprocessing.get_context("spawn")
    stopping = False

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    def start() -> tuple[multiprocessing.Process, float]:
        process = context.Process(target=_worker, args=(app, host, port, options), daemon=False)
        process.start()
        return process, time.monotonic()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    running = [start() for _ in range(workers)]
    try:
        while not stopping:
            time.sleep(0.2)
            for i, (process, started) in enumerate(running):
                if process.is_alive() or stopping:
                    continue
                if time.monotonic() - started < STARTUP_SECONDS:
                    raise SystemExit(f"an HTTP worker exited at its start (code {process.exitcode})")
                log.error("HTTP worker %d exited (code %s): starting another", process.pid, process.exitcode)
                running[i] = start()
    finally:
        for process, _ in running:
            if process.is_alive():
                process.terminate()  # uvicorn's graceful shutdown
        for process, _ in running:
            process.join(timeout=options.get("timeout_graceful_shutdown", 10) + 5)
            if process.is_alive():
                process.kill()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
