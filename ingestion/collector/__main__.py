"""`python -m ingestion.collector --port 8100`: the collector on the data directory's landing zone.

Write keys come from `COLLECTOR_WRITE_KEYS` (`key=tenant,key2=tenant2`) or the JSON object in the
file `COLLECTOR_WRITE_KEYS_FILE` ({"key": "tenant"}); the data directory from `PLATFORM_DATA_DIR`.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ingestion.collector.app import Settings, create_app
from ingestion.paths import DataLayout


def write_keys(env: dict[str, str]) -> dict[str, str]:
    if env.get("COLLECTOR_WRITE_KEYS_FILE"):
        keys = json.loads(Path(env["COLLECTOR_WRITE_KEYS_FILE"]).read_text())
    else:
        keys = {}
        for i, pair in enumerate(p for p in env.get("COLLECTOR_WRITE_KEYS", "").split(",") if p.strip()):
            key, sep, tenant = pair.strip().partition("=")
            if not sep or not key or not tenant:
                raise SystemExit(f"COLLECTOR_WRITE_KEYS entry {i + 1} ({pair!r}): expected key=tenant")
            keys[key] = tenant
    if not keys:
        raise SystemExit("no write keys: set COLLECTOR_WRITE_KEYS=key=tenant[,...] or COLLECTOR_WRITE_KEYS_FILE")
    return keys


def app_from_environment():
    env = dict(os.environ)
    data_dir = Path(env.get("PLATFORM_DATA_DIR", Path(__file__).resolve().parents[2] / "data"))
    settings = Settings(rotate_seconds=float(env.get("COLLECTOR_ROTATE_SECONDS", Settings.rotate_seconds)),
                        rotate_bytes=int(env.get("COLLECTOR_ROTATE_BYTES", Settings.rotate_bytes)))
    return create_app(DataLayout(data_dir.resolve()), write_keys(env), settings)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="Collect product events over HTTP into the landing zone.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args()
    write_keys(dict(os.environ))  # fail at start, not at the first request
    uvicorn.run("ingestion.collector.__main__:app_from_environment", factory=True, host=args.host, port=args.port,
                log_level="warning", timeout_graceful_shutdown=10)


if __name__ == "__main__":
    main()
