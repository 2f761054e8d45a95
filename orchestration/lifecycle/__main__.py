"""`python -m orchestration.lifecycle retention|backup|restore|erase`: what `make retention`, `make backup`,
`make restore AT=...` and `make erase TENANT=... USER=...` run, at once and in this process.

The scheduled runs of the same go through Dagster (`orchestration/assets/lifecycle.py`), whose
`warehouse` pool keeps them from writing beside a pipeline run; from here, a warehouse another
process is writing is refused by DuckDB's lock, and said so.
"""

from __future__ import annotations

import argparse
import os
import pwd
import sys
from datetime import UTC, datetime

import duckdb

from orchestration.environment import current_environment


def _retention(env, args) -> list[str]:
    from orchestration.lifecycle import retention

    policy = retention.load_policy(env.retention_config)
    applied = retention.apply(policy, env.layout, env.warehouse_destination(), lambda: env.warehouse(read_only=False),
                              env.backups_dir, now=datetime.now(UTC), event_now=env.now())
    return [f"retention ({env.retention_config}):", *(f"  {k}: {v}" for k, v in applied.metadata().items())]


def _backup(env, args) -> list[str]:
    from orchestration.lifecycle import backup

    taken = backup.take(backup.Sources(env.layout, env.dbt_target, env.mlflow_dir), env.backups_dir)
    files = taken.manifest["files"].values()
    notes = [taken.manifest[part].get("note") for part in ("warehouse", "mlflow")]
    return [f"backup {taken.path} ({len(files)} files, {sum(f['bytes'] for f in files):,} bytes, checksums in "
            f"manifest.json)", *(f"  {note}" for note in notes if note)]


def _restore(env, args) -> list[str]:
    from orchestration.environment import SEMANTIC_MANIFEST
    from orchestration.lifecycle import restore
    from semantic import rollups

    def publish() -> str:
        return env.publication().publish(build=rollups.builder(SEMANTIC_MANIFEST)).version

    now = datetime.now(UTC)
    restored = restore.restore(env.layout, env.backups_dir, restore.parse_time(args.at, now), now,
                               target=env.dbt_target, contract=env.schema_contract,
                               mlflow_dir=env.mlflow_dir if args.mlflow else None, publish=publish)
    return restored.lines()


def _erase(env, args) -> list[str]:
    from orchestration.lifecycle import erasure

    # the account that runs the command (never $USER: `make erase USER=...` sets it to the erased id)
    who = args.requested_by or f"command line: {pwd.getpwuid(os.getuid()).pw_name}"
    result = erasure.erase(erasure.places_of(env), erasure.Request(args.tenant, args.user, who))
    if result.status != "erased":
        raise SystemExit("\n".join(result.lines()))
    return result.lines()


def main(argv: list[str] | None = None) -> int:
    from orchestration.lifecycle.backup import BackupError
    from orchestration.lifecycle.erasure import ErasureError
    from orchestration.lifecycle.restore import RestoreError
    from orchestration.lifecycle.retention import RetentionConfigError

    parser = argparse.ArgumentParser(prog="python -m orchestration.lifecycle", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("retention", help="apply the retention policy now")
    commands.add_parser("backup", help="back up the warehouse and the MLflow store")
    restoring = commands.add_parser("restore", help="rebuild the warehouse as of a time")
    restoring.add_argument("--at", required=True, help="an ISO 8601 time (UTC unless it has an offset), or now")
    restoring.add_argument("--mlflow", action="store_true", help="restore the MLflow store from the same backup")
    erasing = commands.add_parser("erase", help="erase a person's data everywhere")
    erasing.add_argument("--tenant", required=True)
    erasing.add_argument("--user", required=True, help="the user id as the product knows it")
    erasing.add_argument("--requested-by", help="who asked, for the audit log")
    args = parser.parse_args(argv)
    run = {"retention": _retention, "backup": _backup, "restore": _restore, "erase": _erase}[args.command]
    try:
        lines = run(current_environment(), args)
    except (BackupError, ErasureError, RestoreError, RetentionConfigError) as exc:
        raise SystemExit(f"{args.command}: {exc}") from None
    except duckdb.IOException as exc:
        if "lock" not in str(exc).lower():
            raise
        raise SystemExit(f"{args.command}: the warehouse is being written by another process (a pipeline run?); "
                         f"try again when it ends ({str(exc).splitlines()[0]})") from None
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
