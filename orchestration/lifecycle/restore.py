"""Point-in-time restore: the warehouse as of a moment, from the last backup before it plus the
landing files that arrived after it (`make restore AT=2026-11-20T08:00:00Z`).

1. The last backup taken at or before AT is chosen (AT before the first backup is refused, naming
   the earliest time a restore can reach); every file of it is checked against its manifest. Until
   step 5 nothing outside a work folder (`data/restore/<time>/`) is touched, so a damaged backup, or
   any failure on the way, leaves the current warehouse as it was.
2. The backup is imported into a new DuckDB file. DuckDB 1.4 exports views in no particular order
   (a view can come before the view it reads), so `schema.sql` is run statement by statement and a
   statement that names what does not exist yet is tried again once the others ran.
3. Every landing file that had landed by AT (its modification time; from the landing zone or the
   archive) and that the backup's loaders had not loaded is loaded by the same loaders, into the new
   file: the backup's dlt state says which were loaded, as it does for every run. Erased people's
   events stay out, as in every load.
4. If anything was loaded, `dbt build` rebuilds and tests what depends on the tables it changed.
5. The new file takes the warehouse's place; the one it replaced is kept in the work folder. The
   loaders' local state is dropped, so that their next run takes it from the restored warehouse.
6. The restored warehouse is published whole (rollups included), so the metrics server and the
   reports read what it holds: backups need not hold the published DuckLake, which is derived.

What landed after AT is not in the restored warehouse, but nothing accepted is lost: such files
still in the landing zone are loaded by the next run, and those only the archive still holds are put
back into the landing zone for it. (Stop the sensor and schedules first to keep the warehouse at AT.)
The MLflow store is restored from the same backup on request (`MLFLOW=1`): it has no log to replay,
so what it recorded after the backup would be lost. The app database's tables are as of the backup;
their loader's next incremental run brings them up to date. Rows are compared as they were, except
when they were loaded: replayed rows carry the restore's load time.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from ingestion import archive, pipelines
from ingestion.paths import DataLayout, fsync
from ingestion.sources.landing import ledger
from orchestration.environment import DBT_PROJECT_DIR, tool
from orchestration.lifecycle.backup import Backup, BackupError, backups, verify

WORK_STAMP = "%Y%m%dT%H%M%S%fZ"
_COPY_SOURCE = re.compile(r"FROM '((?:[^']|'')*)'")


class RestoreError(RuntimeError):
    """A restore refused or failed; the current warehouse is as it was. The message says why."""


@dataclass
class Restored:
    backup: Backup
    at: datetime
    warehouse: Path
    replayed: dict[str, list[str]] = field(default_factory=dict)  # feed: landing files loaded
    rows: dict[str, int] = field(default_factory=dict)  # table: rows loaded by the replay
    datasets: list[str] = field(default_factory=list)  # the raw datasets the replay loaded into
    returned: list[str] = field(default_factory=list)  # archived files put back into the landing zone
    replaced: Path | None = None  # where the warehouse that was replaced is kept
    mlflow: bool = False
    published: str | None = None  # the published version made from the restored warehouse

    def lines(self) -> list[str]:
        files = sum(len(names) for names in self.replayed.values())
        lines = [f"restored {self.warehouse} as of {self.at.isoformat()} from backup {self.backup.path.name} "
                 f"(taken {self.backup.taken_at.isoformat()})",
                 f"replayed {files} landing files that landed after it: {self.rows or 'no rows'}"]
        if self.returned:
            lines.append(f"{len(self.returned)} archived files that landed after AT are back in the landing zone: "
                         "the next run loads them")
        if self.replaced is not None:
            lines.append(f"the warehouse it replaced is kept at {self.replaced} (delete it when done)")
        if self.mlflow:
            lines.append("the MLflow store was restored from the same backup")
        if self.published:
            lines.append(f"published as version {self.published}")
        return lines


def parse_time(text: str, now: datetime) -> datetime:
    """AT: an ISO 8601 time (UTC unless it names an offset) or `now`."""
    if text.strip().lower() == "now":
        return now
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise RestoreError(f"AT={text!r}: expected an ISO 8601 time such as 2026-11-20T08:00:00Z, or now") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def choose(backups_dir: Path, at: datetime, now: datetime) -> Backup:
    """The last backup of the warehouse taken at or before `at`."""
    found = [b for b in backups(backups_dir) if b.has_warehouse]
    if not found:
        raise RestoreError(f"no backup of the warehouse in {backups_dir}: take one first (make backup)")
    if at > now:
        raise RestoreError(f"AT={at.isoformat()} is in the future (now is {now.isoformat()})")
    earlier = [b for b in found if b.taken_at <= at]
    if not earlier:
        raise RestoreError(f"AT={at.isoformat()} is before the first backup: the earliest time a restore can reach "
                           f"is {found[0].taken_at.isoformat()} (backup {found[0].path.name})")
    return earlier[-1]


def import_database(path: Path, exported: Path) -> None:
    """A new DuckDB file at `path` holding what `EXPORT DATABASE` wrote to `exported`."""
    with duckdb.connect(str(path)) as conn:
        pending = conn.extract_statements((exported / "schema.sql").read_text())
        while pending:
            deferred = []
            for statement in pending:
                try:
                    conn.execute(statement.query)
                except duckdb.CatalogException:
                    deferred.append(statement)  # names a view or table created further down
            if len(deferred) == len(pending):
                raise RestoreError(f"{exported / 'schema.sql'}: cannot create {deferred[0].query[:200]!r}")
            pending = deferred
        folder = str(exported).replace("'", "''")
        for statement in conn.extract_statements((exported / "load.sql").read_text()):
            # the export names its files by where it was written: read them where they are now
            query = _COPY_SOURCE.sub(lambda m: f"FROM '{folder}/{Path(m.group(1)).name}'", statement.query, count=1)
            conn.execute(query)
        conn.execute("checkpoint")


def _stage(layout: DataLayout, feed: archive.Feed, at: datetime, loaded: dict, stage: Path) -> list[str]:
    """Copy into `stage` every file of the feed that landed by `at` and is not in `loaded`."""
    candidates: dict[str, Path | archive.Archived] = {}
    until = archive.nanoseconds(at)
    for entry in archive.archived(layout, feed):
        if entry.landed_ns <= until and entry.name not in loaded:
            candidates[entry.name] = entry
    for path in feed.files(layout):
        if path.stat().st_mtime_ns <= until and path.name not in loaded:
            candidates[path.name] = path
    stage.mkdir(parents=True, exist_ok=True)
    for name, found in candidates.items():
        if isinstance(found, Path):
            shutil.copy2(found, stage / name)
        else:
            archive.restore_file(found, stage)
    return sorted(candidates)


def replay(path: Path, layout: DataLayout, at: datetime, work: Path, contract: str,
           restored: Restored) -> None:
    """Load into the warehouse file at `path` the landing files that landed by `at` and that its
    loaders' state does not list."""
    targets = {t.pipeline_name: t for t in pipelines.TARGETS}
    for feed in archive.FEEDS:
        if feed.pipeline is None:
            continue
        target = targets[feed.pipeline]
        pipeline = pipelines.make_pipeline(target, pipelines.duckdb_warehouse(path), work / "dlt")
        pipeline.sync_destination()
        stage = work / "replay" / feed.name
        names = _stage(layout, feed, at, ledger(pipeline, feed.pipeline, feed.resource), stage)
        if not names:
            continue
        pipeline.run(pipelines.source_for(target, layout, contract, landing_dir=stage))
        restored.replayed[feed.name] = names
        restored.datasets.append(target.dataset_name)
        for table, rows in pipeline.last_trace.last_normalize_info.row_counts.items():
            if not table.startswith("_dlt"):
                restored.rows[f"{target.dataset_name}.{table}"] = rows


def rebuild(path: Path, datasets: list[str], work: Path) -> None:
    """`dbt build` (models and their tests) of what depends on the raw datasets the replay changed."""
    sources = {target.dataset_name: target.dbt_source for target in pipelines.TARGETS}
    selectors = [f"source:{sources[dataset]}+" for dataset in datasets]
    env = {**os.environ, "PLATFORM_WAREHOUSE": str(path), "DBT_TARGET": "duckdb"}
    proc = subprocess.run(
        [tool("dbt"), "build", "--select", *selectors, "--exclude-resource-type", "unit_test",
         "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
         "--target-path", str(work / "dbt"), "--log-path", str(work / "dbt")],
        env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RestoreError(f"dbt build on the restored warehouse failed; the current warehouse is as it was. "
                           f"dbt said:\n{proc.stdout[-3000:]}{proc.stderr[-1000:]}")


def _return_later_files(layout: DataLayout, at: datetime) -> list[str]:
    """Archived files that landed after AT and left the landing zone: back into it, unloaded."""
    returned = []
    for feed in archive.FEEDS:
        if feed.pipeline is None:
            continue
        present = {p.name for p in feed.files(layout)}
        for entry in archive.archived(layout, feed):
            if entry.landed_ns > archive.nanoseconds(at) and entry.name not in present:
                archive.restore_file(entry, feed.directory(layout))
                returned.append(entry.name)
    return returned


def _swap(new: Path, current: Path, keep: Path) -> Path | None:
    replaced = None
    if current.exists():
        replaced = keep / "replaced-warehouse.duckdb"
        os.replace(current, replaced)
        if Path(f"{current}.wal").exists():
            os.replace(f"{current}.wal", f"{replaced}.wal")
    os.replace(new, current)
    fsync(current.parent)
    return replaced


def _restore_mlflow(backup: Backup, store: Path, keep: Path) -> None:
    if not backup.manifest["mlflow"].get("backed_up"):
        raise RestoreError(f"backup {backup.path.name} holds no MLflow store")
    if store.exists():
        os.replace(store, keep / "replaced-mlflow")
    shutil.copytree(backup.path / "mlflow", store)


def restore(layout: DataLayout, backups_dir: Path, at: datetime, now: datetime, *, target: str = "duckdb",
            contract: str = "evolve", mlflow_dir: Path | None = None,
            publish: Callable[[], str] | None = None) -> Restored:
    """Rebuild the warehouse as of `at` (see the module's docstring); with `mlflow_dir`, the MLflow
    store there is restored from the same backup; `publish` publishes the restored warehouse whole
    and returns the version."""
    if target != "duckdb":
        raise RestoreError("the PostgreSQL warehouse is restored to a point in time by PostgreSQL itself "
                           "(restore a base backup and replay the archived WAL up to recovery_target_time); "
                           "`make restore` restores the DuckDB warehouse")
    backup = choose(backups_dir, at, now)
    try:
        verify(backup, "warehouse")
        if mlflow_dir is not None:
            verify(backup, "mlflow")
    except BackupError as exc:
        raise RestoreError(str(exc)) from None
    work = layout.restore_dir / now.strftime(WORK_STAMP)
    work.mkdir(parents=True)
    restored = Restored(backup, at, layout.warehouse)
    new = work / layout.warehouse.name  # the same file name: the catalog name views and dbt's SQL use
    try:
        import_database(new, backup.path / "warehouse")
        replay(new, layout, at, work, contract, restored)
        if restored.datasets:
            rebuild(new, restored.datasets, work)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    restored.replaced = _swap(new, layout.warehouse, work)
    for scratch in ("replay", "dlt", "dbt"):
        shutil.rmtree(work / scratch, ignore_errors=True)
    for target_pipeline in pipelines.TARGETS:  # their next run takes the state from the restored warehouse
        shutil.rmtree(layout.dlt_dir / target_pipeline.pipeline_name, ignore_errors=True)
    restored.returned = _return_later_files(layout, at)
    if mlflow_dir is not None:
        _restore_mlflow(backup, mlflow_dir, work)
        restored.mlflow = True
    if publish is not None:
        restored.published = publish()
    if not any(work.iterdir()):  # nothing replaced to keep
        work.rmdir()
    return restored

