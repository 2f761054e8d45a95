"""How long each layer keeps data (`orchestration/retention.yml`), and applying it.

One config, one section per layer, each a `keep_days` (a positive whole number, or null for ever):

- `landing`: closed landing files (events, marketing spend, the collector's quarantine) older than
  this are archived to Parquet (`ingestion/archive.py`) and removed, and their names leave the
  loader's file ledger. Only files the loader's ledger lists are touched, and none while a load of
  that loader is pending: a file that was not loaded is never archived or removed, whatever its age.
- `archive`: archived files older than this are deleted, except what a restore from the oldest
  backup would replay (files its ledgers do not list).
- `raw`: raw events (`raw_events.events`) loaded longer ago than this, once `marts.fct_events` has
  taken them (the mart's load-time cursor has passed them, and no quality gate holds them back),
  and the loader's quarantine. The marts keep their own history: the marts built from events read
  `fct_events`, which a full refresh does not rebuild (`full_refresh: false`).
- `marts`: event facts older than this by their event time (`fct_events` by day,
  `metrics_per_minute` by minute); the marts built from them follow at the next build.
- `backups`: backups older than this, always keeping the newest.

A config that cannot be used is refused before anything is touched, naming the key at fault
(pydantic validates it: unknown keys, missing sections, values that are not positive whole numbers,
and an archive kept for less time than the backups it must replay from). Storage ages (when a file
landed, when a row was loaded, when a backup was taken) are measured on the clock; event dates
against the run's "now" (`PLATFORM_NOW` when it is pinned).

On PostgreSQL the same statements run through `semantic.warehouse.Warehouse`; the landing zone,
the archive and the backups folder are the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, PositiveInt

from ingestion import archive, pipelines
from ingestion.paths import DataLayout
from ingestion.sources import events, marketing
from ingestion.sources.landing import forget_files, ledger
from orchestration.lifecycle import backup as backups
from semantic.warehouse import Warehouse

# the raw tables kept `raw.keep_days`, and their load-time column
RAW_EVENTS = "raw_events.events"
RAW_LOAD_TIMES = {"raw_events.events_quarantine": "quarantined_at", "raw_events_staging.events": "_loaded_at",
                  "raw_events_staging.events_quarantine": "quarantined_at"}
# the marts kept `marts.keep_days`, and their event-time column
MART_EVENT_TIMES = {"marts.fct_events": "event_date", "marts.metrics_per_minute": "minute_at"}
HINTS = {archive.EVENTS.name: events.HINTS, archive.MARKETING.name: marketing.HINTS}


class RetentionConfigError(ValueError):
    """A retention config that cannot be used; the message names the file and the key."""


class Layer(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    keep_days: PositiveInt | None


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    landing: Layer
    archive: Layer
    raw: Layer
    marts: Layer
    backups: Layer

    @pydantic.model_validator(mode="after")
    def _archive_covers_backups(self) -> Policy:
        kept, needed = self.archive.keep_days, self.backups.keep_days
        if kept is not None and (needed is None or kept < needed):
            raise _KeyError(("archive", "keep_days"), f"{kept} days is less than backups.keep_days "
                            f"({needed if needed is not None else 'null: for ever'}): a restore from the oldest "
                            "backup replays the archive from its time")
        if kept is not None and self.landing.keep_days is not None and kept < self.landing.keep_days:
            raise _KeyError(("archive", "keep_days"), f"{kept} days is less than landing.keep_days "
                            f"({self.landing.keep_days}): files would leave the archive as they enter it")
        return self


class _KeyError(ValueError):
    def __init__(self, key: tuple[str, ...], message: str):
        super().__init__(message)
        self.key, self.message = key, message


def load_policy(path: Path) -> Policy:
    """The policy in `path`, or RetentionConfigError naming the file and the key at fault."""
    try:
        document = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise RetentionConfigError(f"{path}: no such retention config (PLATFORM_RETENTION_CONFIG)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise RetentionConfigError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(document, dict):
        raise RetentionConfigError(f"{path}: expected a mapping of layers (landing, archive, raw, marts, "
                                   f"backups), got {type(document).__name__}")
    try:
        return Policy.model_validate(document)
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, _KeyError):
            raise RetentionConfigError(f"{path}: {'.'.join(cause.key)}: {cause.message}") from None
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        got = "" if error["type"] == "missing" else f" (got {error['input']!r})"
        message = {"missing": "is missing", "extra_forbidden": "is not a key of the retention config"}.get(
            error["type"], error["msg"].replace("Input should", "should"))
        raise RetentionConfigError(f"{path}: {key}: {message}{got}") from None


@dataclass
class Applied:
    """What one application of the policy did."""

    archived: dict[str, list[str]] = field(default_factory=dict)  # feed: landing files archived and removed
    forgotten: dict[str, int] = field(default_factory=dict)  # feed: names taken out of the loader's ledger
    skipped: list[str] = field(default_factory=list)  # why a feed was left as it was
    archive_deleted: list[str] = field(default_factory=list)
    rows_deleted: dict[str, int] = field(default_factory=dict)  # "schema.table": rows
    backups_deleted: list[str] = field(default_factory=list)

    def metadata(self) -> dict:
        return {"landing_files_archived": sum(len(v) for v in self.archived.values()),
                "ledger_entries_pruned": sum(self.forgotten.values()),
                "archive_files_deleted": len(self.archive_deleted),
                **{f"rows_deleted.{table}": rows for table, rows in sorted(self.rows_deleted.items())},
                "backups_deleted": len(self.backups_deleted),
                "skipped": "; ".join(self.skipped) or "nothing"}


def _cutoff(days: int | None, now: datetime) -> datetime | None:
    return None if days is None else now - timedelta(days=days)


def apply_landing(layout: DataLayout, destination, policy: Policy, now: datetime, applied: Applied) -> None:
    """Archive and remove the loaded landing files older than `landing.keep_days`; prune the ledgers."""
    cutoff = _cutoff(policy.landing.keep_days, now)
    if cutoff is None:
        return
    targets = {t.pipeline_name: t for t in pipelines.TARGETS}
    for feed in archive.FEEDS:
        old = [p for p in feed.files(layout) if p.stat().st_mtime_ns < archive.nanoseconds(cutoff)]
        pipeline = None
        if feed.pipeline is not None:
            pipeline = pipelines.make_pipeline(targets[feed.pipeline], destination, layout.dlt_dir)
            if pipeline.has_pending_data:
                applied.skipped.append(f"{feed.name}: a load is pending (its files wait for the next run)")
                continue
            loaded = ledger(pipeline, feed.pipeline, feed.resource)
            old = [p for p in old if p.name in loaded]
        done = []
        for path in old:
            archive.archive_file(layout, feed, path)
            path.unlink()
            done.append(path.name)
        if done:
            applied.archived[feed.name] = done
        if pipeline is not None and done:
            forget_files(pipeline, feed.pipeline, feed.resource, done, **HINTS[feed.name])
            applied.forgotten[feed.name] = len(done)


def apply_archive(layout: DataLayout, backups_dir: Path, policy: Policy, now: datetime, applied: Applied) -> None:
    """Delete archived files older than `archive.keep_days` that no restore would replay."""
    cutoff = _cutoff(policy.archive.keep_days, now)
    if cutoff is None:
        return
    kept = [b for b in backups.backups(backups_dir) if b.has_warehouse]
    oldest = kept[0] if kept else None
    for feed in archive.FEEDS:
        held = oldest.ledger(feed.name) if oldest is not None and feed.pipeline is not None else frozenset()
        for entry in archive.archived(layout, feed):
            replayable = feed.pipeline is not None and oldest is not None and (held is None or entry.name not in held)
            if entry.landed_ns < archive.nanoseconds(cutoff) and not replayable:
                entry.path.unlink()
                applied.archive_deleted.append(f"{feed.name}/{entry.name}")


def _tables(warehouse: Warehouse) -> set[str]:
    return {f"{schema}.{table}" for schema, table in warehouse.rows(
        "select table_schema, table_name from information_schema.tables where table_type = 'BASE TABLE'")}


def _delete(warehouse: Warehouse, table: str, where: str, parameters: list) -> int:
    rows = warehouse.rows(f"select count(*) from {table} where {where}", parameters)[0][0]
    if rows:
        warehouse.execute(f"delete from {table} where {where}", parameters)
    return rows


def apply_raw(warehouse: Warehouse, policy: Policy, now: datetime, applied: Applied) -> None:
    """Delete raw event rows loaded before `raw.keep_days` that the marts have taken; and the
    loader's quarantine of that age."""
    cutoff = _cutoff(policy.raw.keep_days, now)
    if cutoff is None:
        return
    tables = _tables(warehouse)
    if RAW_EVENTS in tables and "marts.fct_events" in tables:
        taken_through = warehouse.rows("select max(loaded_at) from marts.fct_events")[0][0]
        if taken_through is not None:
            # fct_events takes a raw row when its load (or release) time is past the mart's newest
            # `loaded_at`, which is UTC without a zone; a row a gate still holds is not taken
            where = "_loaded_at < ? and _loaded_at <= ?"
            parameters: list = [cutoff, taken_through.replace(tzinfo=now.tzinfo) if taken_through.tzinfo is None
                                else taken_through]
            if "quality.quarantined_rows" in tables:
                where += (" and event_id not in (select row_key from quality.quarantined_rows where source_table = ? "
                          "and row_key is not null and (released_at is null or released_at > ?))")
                parameters += [RAW_EVENTS, parameters[1]]
            applied.rows_deleted[RAW_EVENTS] = _delete(warehouse, RAW_EVENTS, where, parameters)
    for table, column in RAW_LOAD_TIMES.items():
        if table in tables:
            applied.rows_deleted[table] = _delete(warehouse, table, f"{column} < ?", [cutoff])


def apply_marts(warehouse: Warehouse, policy: Policy, event_now: datetime, applied: Applied) -> None:
    cutoff = _cutoff(policy.marts.keep_days, event_now)
    if cutoff is None:
        return
    tables = _tables(warehouse)
    for table, column in MART_EVENT_TIMES.items():
        if table in tables:
            bound = cutoff.date() if column.endswith("_date") else cutoff.replace(tzinfo=None)
            applied.rows_deleted[table] = _delete(warehouse, table, f"{column} < ?", [bound])


def apply(policy: Policy, layout: DataLayout, destination, connect: Callable[[], Warehouse], backups_dir: Path,
          now: datetime, event_now: datetime) -> Applied:
    """Every layer's retention, in the order that keeps what a later step needs: landing files are
    archived before the backups and the archive are pruned, rows after. The loaders' runs that prune
    their ledgers end before the warehouse is opened here (one writer at a time)."""
    applied = Applied()
    apply_landing(layout, destination, policy, now, applied)
    applied.backups_deleted = backups.prune(backups_dir, policy.backups.keep_days, now)
    apply_archive(layout, backups_dir, policy, now, applied)
    with connect() as warehouse:
        apply_raw(warehouse, policy, now, applied)
        apply_marts(warehouse, policy, event_now, applied)
    return applied
