"""`python -m ingestion.collector --port 8100`: the collector on the data directory's landing zone.

The settings are read once, here, from the environment (`settings.py` lists the variables). The
entry point then:

1. takes the data directory's lock (`collector/collector.lock`): a second collector on the same data
   directory refuses to start, naming the process that holds it;
2. starts the landing process (the one writer of the landing zone, `landing_service.py`), which
   inherits the lock, so that the lock lasts as long as anything that writes;
3. serves HTTP from worker processes (`COLLECTOR_WORKERS`, one per core by default; `workers.py`
   says why each listens with a socket of its own), each rebuilding the same settings from the same
   environment.

On SIGTERM or Ctrl-C the workers finish their requests, then the landing process closes its files
into `landing/events/`.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import subprocess
import sys

from ingestion.collector.settings import Settings, SettingsError

APP = "ingestion.collector.__main__:app_from_environment"


def settings_from_environment() -> Settings:
    try:
        return Settings.from_environment(dict(os.environ))
    except SettingsError as exc:
        raise SystemExit(f"collector: {exc}") from None


def app_from_environment():
    """The ASGI app of one worker process (uvicorn's factory)."""
    from ingestion.collector.app import create_app

    return create_app(settings_from_environment())


def lock_data_dir(settings: Settings) -> int:
    """Take the data directory's lock or exit naming who holds it; returns the locked descriptor."""
    directory = settings.layout.collector_dir
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "collector.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = path.read_text().strip() or "unknown"
        os.close(fd)
        raise SystemExit(f"collector: another collector is running on {settings.data_dir} (process {holder}, "
                         f"lock {path}); stop it first, or set PLATFORM_DATA_DIR to another data directory") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def start_landing(lock_fd: int) -> subprocess.Popen:
    """The landing process, holding the lock too; returns once it serves its socket."""
    process = subprocess.Popen([sys.executable, "-m", "ingestion.collector.landing_service"], pass_fds=(lock_fd,),
                               stdout=subprocess.PIPE, text=True)
    if process.stdout.readline().strip() != "ready":
        process.wait()
        raise SystemExit("collector: the landing process did not start (see its error above)")
    return process


def main() -> None:
    from ingestion.collector.workers import serve

    parser = argparse.ArgumentParser(description="Collect product events over HTTP into the landing zone.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args()
    settings = settings_from_environment()
    lock_fd = lock_data_dir(settings)
    # every process writes its metrics here; emptied, as the counters start again with the collector
    metrics_dir = settings.layout.collector_dir / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    landing = start_landing(lock_fd)
    try:
        serve(APP, args.host, args.port, settings.workers, factory=True, log_level="warning",
              timeout_graceful_shutdown=10)
    finally:
        landing.terminate()
        landing.wait(timeout=60)


if __name__ == "__main__":
    main()
