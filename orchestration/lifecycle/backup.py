"""Backups of the warehouse and the MLflow store, each a folder with a manifest of checksums.

`data/backups/<taken at>/` holds:

- `warehouse/`: DuckDB's `EXPORT DATABASE` in Parquet (zstd): `schema.sql`, `load.sql` and a file
  per table; taken from a read-only connection while the `warehouse` pool keeps writers out, so it
  is one consistent state of the warehouse.
- `mlflow/`: the tracking store's SQLite database (copied with SQLite's online backup API, so a
  reader of it never sees half a page) and its artifact folder, when the store is the local default.
- `manifest.json`, written last: when it was taken, each loader's file ledger at that moment (which
  landing files the backup already holds: a restore replays the others), the row count of every
  table, and the size and SHA-256 of every file. A folder without a manifest is not a backup.

A backup is written under a temporary name and renamed when complete, so a crash leaves no half
backup behind. `verify` checks every file against the manifest before a restore touches anything.

The PostgreSQL target is backed up by PostgreSQL's own tools (a base backup plus WAL archiving,
e.g. pgBackRest), which give it point-in-time recovery natively: on that target a backup holds the
MLflow store only and says so in its manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from ingestion import archive, pipelines
from ingestion.paths import DataLayout, fsync
from ingestion.sources.landing import ledger

MANIFEST = "manifest.json"
FORMAT = 1
STAMP = "%Y%m%dT%H%M%S%fZ"
CHUNK = 1 << 20


class BackupError(RuntimeError):
    """A backup that cannot be taken, found or trusted; the message names the file or time at fault."""


@dataclass(frozen=True)
class Backup:
    path: Path
    taken_at: datetime
    manifest: dict

    @property
    def has_warehouse(self) -> bool:
        return bool(self.manifest["warehouse"].get("backed_up"))

    def ledger(self, feed: str) -> frozenset[str] | None:
        """The files of a feed this backup's warehouse already holds; None when unknown."""
        names = self.manifest["ledgers"].get(feed)
        return None if names is None else frozenset(names)


@dataclass(frozen=True)
class Sources:
    """What a backup is taken of."""

    layout: DataLayout
    target: str  # the dbt target: duckdb or postgres
    mlflow_dir: Path | None  # the local MLflow store, None when tracking goes to a server


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def backups(backups_dir: Path) -> list[Backup]:
    """The complete backups, oldest first."""
    found = []
    for folder in sorted(backups_dir.glob("[0-9]*")) if backups_dir.is_dir() else []:
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            continue
        found.append(Backup(folder, datetime.fromisoformat(manifest["taken_at"]), manifest))
    return sorted(found, key=lambda b: b.taken_at)


def _ledgers(layout: DataLayout) -> dict[str, list[str] | None]:
    """Each loader's ledger now, from its local state (None when a load is pending: its state is
    then ahead of the warehouse)."""
    found: dict[str, list[str] | None] = {}
    targets = {t.pipeline_name: t for t in pipelines.TARGETS}
    for feed in archive.FEEDS:
        if feed.pipeline is None:
            continue
        pipeline = pipelines.make_pipeline(targets[feed.pipeline], pipelines.duckdb_warehouse(layout.warehouse),
                                           layout.dlt_dir)
        found[feed.name] = None if pipeline.has_pending_data else sorted(ledger(pipeline, feed.pipeline,
                                                                                feed.resource))
    return found


def _export_warehouse(warehouse: Path, folder: Path) -> dict[str, int]:
    if not warehouse.exists():
        raise BackupError(f"no warehouse at {warehouse} to back up: run the main job first")
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        conn.execute(f"export database '{_literal(folder)}' (format parquet, compression zstd)")
        tables = conn.execute("select schema_name, table_name from duckdb_tables() "
                              "where database_name = current_database()").fetchall()
        return {f"{schema}.{table}": conn.execute(f'select count(*) from "{schema}"."{table}"').fetchone()[0]
                for schema, table in tables}


def _copy_mlflow(store: Path, folder: Path) -> bool:
    database = store / "mlflow.db"
    if not database.exists():
        return False
    folder.mkdir(parents=True)
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as source, \
            sqlite3.connect(folder / "mlflow.db") as target:
        source.backup(target)
    if (store / "artifacts").is_dir():
        shutil.copytree(store / "artifacts", folder / "artifacts")
    return True


def take(sources: Sources, backups_dir: Path, now: datetime | None = None) -> Backup:
    """A new backup of the warehouse (DuckDB) and the local MLflow store."""
    taken_at = now or datetime.now(UTC)
    name = taken_at.strftime(STAMP)
    backups_dir.mkdir(parents=True, exist_ok=True)
    partial = backups_dir / f".{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        manifest: dict = {"format": FORMAT, "taken_at": taken_at.isoformat(), "ledgers": {},
                          "warehouse": {"engine": sources.target, "backed_up": False}, "mlflow": {"backed_up": False}}
        if sources.target == "duckdb":
            manifest["ledgers"] = _ledgers(sources.layout)
            tables = _export_warehouse(sources.layout.warehouse, partial / "warehouse")
            manifest["warehouse"].update(backed_up=True, tables=tables)
        else:
            manifest["warehouse"]["note"] = ("the PostgreSQL warehouse is backed up by PostgreSQL itself (base "
                                             "backups and WAL archiving give point-in-time recovery)")
        if sources.mlflow_dir is not None:
            manifest["mlflow"]["backed_up"] = _copy_mlflow(sources.mlflow_dir, partial / "mlflow")
        else:
            manifest["mlflow"]["note"] = "MLFLOW_TRACKING_URI names a tracking server: it keeps its own backups"
        manifest["files"] = {str(p.relative_to(partial)): {"bytes": p.stat().st_size, "sha256": sha256(p)}
                             for p in sorted(partial.rglob("*")) if p.is_file()}
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        for path in partial.rglob("*"):
            if path.is_file():
                fsync(path)
        final = backups_dir / name
        os.replace(partial, final)
        fsync(backups_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return Backup(final, taken_at, manifest)


def verify(backup: Backup, part: str | None = None) -> None:
    """Every file of the backup (or of one part: `warehouse`, `mlflow`) is there and matches its
    checksum; else BackupError naming the first that does not."""
    for relative, expected in backup.manifest["files"].items():
        if part is not None and not relative.startswith(f"{part}/"):
            continue
        path = backup.path / relative
        if not path.is_file():
            raise BackupError(f"backup {backup.path.name} is damaged: {relative} is missing")
        if path.stat().st_size != expected["bytes"] or sha256(path) != expected["sha256"]:
            raise BackupError(f"backup {backup.path.name} is damaged: {relative} does not match its checksum "
                              f"(SHA-256 {expected['sha256'][:12]}...); nothing was restored")


def prune(backups_dir: Path, keep_days: int | None, now: datetime) -> list[str]:
    """Remove backups older than `keep_days`, always keeping the newest; their names."""
    found = backups(backups_dir)
    if keep_days is None or not found:
        return []
    removed = []
    for backup in found[:-1]:
        if (now - backup.taken_at).total_seconds() > keep_days * 86400:
            shutil.rmtree(backup.path)
            removed.append(backup.path.name)
    return removed


def _literal(path: Path) -> str:
    return str(path).replace("'", "''")
