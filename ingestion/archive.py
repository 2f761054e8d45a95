"""The landing zone's archive: closed landing files kept as Parquet once they leave the landing zone.

A landing file becomes one Parquet file (`archive/<feed>/<file name>.parquet`, zstd) holding each of
its lines exactly as it was written (`line`, bytes with their line ending, and `line_number`, as the
loaders number them), so the file can be rebuilt byte for byte and loaded again: that is how a
point-in-time restore replays what landed after a backup. Events files also get their keys as
columns (`event_id`, `tenant_id`, `user_id`, `anonymous_id`), so that the archive can be queried
(`select * from read_parquet('data/archive/events/*.parquet')`) and a person's lines found. The
file's own facts are in the Parquet metadata: its name, feed, when it landed (its modification time,
which a rewrite keeps), its size and SHA-256.

A file is archived by writing the Parquet file beside its final name, fsyncing it, reading it back
and comparing the rebuilt bytes' checksum with the original's, and only then renaming it into place:
the caller removes the landing file after that, so a crash at any point leaves the data in one place
or both, never in neither. pyarrow writes and reads the Parquet; what is written by hand here is the
line-level layout, which no library has for "a text file kept exactly".
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import parquet

from ingestion.paths import DataLayout, fsync

SUFFIX = ".parquet"
KEYS = ("event_id", "tenant_id", "user_id", "anonymous_id")


@dataclass(frozen=True)
class Feed:
    """A folder of closed landing files: where they are, which files, and which loader's ledger says
    they were loaded (`pipeline` and `resource`; None for files no loader takes, the quarantine)."""

    name: str
    folder: str  # below the landing zone
    pattern: str
    pipeline: str | None = None
    resource: str | None = None

    def directory(self, layout: DataLayout) -> Path:
        return layout.landing / self.folder

    def files(self, layout: DataLayout) -> list[Path]:
        return sorted(p for p in self.directory(layout).glob(self.pattern) if p.is_file())


EVENTS = Feed("events", "events", "*.jsonl", "events", "events")
MARKETING = Feed("marketing", "marketing", "*.csv", "marketing", "spend")
QUARANTINE = Feed("quarantine", "quarantine", "*.jsonl")
FEEDS = (EVENTS, MARKETING, QUARANTINE)
# Profile records (`landing/profiles/`) are kept for a profile loader that does not exist yet: never
# loaded, so never archived or removed by retention.


class ArchiveError(RuntimeError):
    """An archive file that cannot be written or read back as its landing file was."""


@dataclass(frozen=True)
class Archived:
    """One archived landing file, as its Parquet metadata describes it."""

    feed: str
    name: str  # the landing file's name
    path: Path
    landed_ns: int  # when it landed: its modification time, in nanoseconds
    bytes: int
    sha256: str
    lines: int
    erased_lines: int = 0

    @property
    def landed_at(self) -> datetime:
        return datetime.fromtimestamp(self.landed_ns // 1000 / 1e6, UTC)


def nanoseconds(moment: datetime) -> int:
    """A time as a file's modification time counts it (exactly, to the microsecond)."""
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


def archive_path(layout: DataLayout, feed: Feed, name: str) -> Path:
    return layout.archive_dir / feed.name / f"{name}{SUFFIX}"


def _keys(line: bytes, feed: str) -> tuple:
    if feed == MARKETING.name:
        return (None,) * len(KEYS)
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return (None,) * len(KEYS)
    if not isinstance(record, dict):
        return (None,) * len(KEYS)
    if feed == QUARANTINE.name and isinstance(record.get("event"), dict):
        record = record["event"]
    return tuple(v if isinstance(v := record.get(k), str) else None for k in KEYS)


def _table(lines: list[bytes], numbers: list[int], feed: str, metadata: dict[str, str]) -> pa.Table:
    keys = list(zip(*(_keys(line, feed) for line in lines), strict=True)) if lines else [[] for _ in KEYS]
    columns = {"line_number": pa.array(numbers, pa.int64()), "line": pa.array(lines, pa.binary()),
               **{k: pa.array(values, pa.string()) for k, values in zip(KEYS, keys, strict=True)}}
    return pa.table(columns).replace_schema_metadata({k.encode(): v.encode() for k, v in metadata.items()})


def _write(table: pa.Table, target: Path, expected_sha256: str) -> None:
    """Write beside `target`, fsync, check the rebuilt bytes, rename into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    parquet.write_table(table, tmp, compression="zstd")
    fsync(tmp)
    rebuilt = b"".join(parquet.read_table(tmp, columns=["line"]).column("line").to_pylist())
    if hashlib.sha256(rebuilt).hexdigest() != expected_sha256:
        tmp.unlink(missing_ok=True)
        raise ArchiveError(f"{target}: the archive does not read back as the lines written; not kept")
    os.replace(tmp, target)
    fsync(target.parent)


def archive_file(layout: DataLayout, feed: Feed, path: Path) -> Archived:
    """Archive one closed landing file (the caller removes it afterwards)."""
    data = path.read_bytes()
    stat = path.stat()
    digest = hashlib.sha256(data).hexdigest()
    lines = data.splitlines(keepends=True)
    metadata = {"feed": feed.name, "name": path.name, "landed_at_ns": str(stat.st_mtime_ns),
                "bytes": str(len(data)), "sha256": digest, "archived_at": datetime.now(UTC).isoformat(),
                "erased_lines": "0"}
    target = archive_path(layout, feed, path.name)
    _write(_table(lines, list(range(1, len(lines) + 1)), feed.name, metadata), target, digest)
    return Archived(feed.name, path.name, target, stat.st_mtime_ns, len(data), digest, len(lines))


def describe(path: Path) -> Archived:
    """An archive file's facts, from its Parquet footer only."""
    try:
        meta = {k.decode(): v.decode() for k, v in (parquet.read_schema(path).metadata or {}).items()}
        return Archived(meta["feed"], meta["name"], path, int(meta["landed_at_ns"]), int(meta["bytes"]),
                        meta["sha256"], parquet.ParquetFile(path).metadata.num_rows,
                        int(meta.get("erased_lines", "0")))
    except (OSError, KeyError, ValueError, pa.ArrowException) as exc:
        raise ArchiveError(f"{path}: not a readable archive file ({exc})") from exc


def archived(layout: DataLayout, feed: Feed) -> list[Archived]:
    """Every archived file of a feed, oldest landed first."""
    folder = layout.archive_dir / feed.name
    found = [describe(p) for p in sorted(folder.glob(f"*{SUFFIX}"))] if folder.is_dir() else []
    return sorted(found, key=lambda a: (a.landed_at, a.name))


def contents(entry: Archived) -> bytes:
    """The landing file as it was (less any lines an erasure removed), checked against its checksum."""
    data = b"".join(parquet.read_table(entry.path, columns=["line"]).column("line").to_pylist())
    if hashlib.sha256(data).hexdigest() != entry.sha256:
        raise ArchiveError(f"{entry.path}: its lines do not match the checksum recorded when it was written")
    return data


def restore_file(entry: Archived, directory: Path) -> Path:
    """Write the archived file back as a landing file in `directory`, with its landing time."""
    target = directory / entry.name
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(contents(entry))
    os.utime(tmp, ns=(entry.landed_ns, entry.landed_ns))
    fsync(tmp)
    os.replace(tmp, target)
    return target


def rewrite_without(entry: Archived, drop: Callable[[pa.Table], pa.Array]) -> int:
    """Rewrite an archive file without the lines `drop` marks (a boolean array over its rows, which
    have the key columns); returns how many were removed. Its landing time is kept."""
    table = parquet.read_table(entry.path)
    mask = drop(table)
    removed = int(pc.sum(mask).as_py() or 0)
    if not removed:
        return 0
    kept = table.filter(pc.invert(mask))
    data = b"".join(kept.column("line").to_pylist())
    digest = hashlib.sha256(data).hexdigest()
    metadata = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    metadata.update(bytes=str(len(data)), sha256=digest, erased_lines=str(entry.erased_lines + removed))
    _write(kept.replace_schema_metadata({k.encode(): v.encode() for k, v in metadata.items()}), entry.path, digest)
    return removed


def rewrite_landing_file(path: Path, drop: Callable[[bytes], bool]) -> int:
    """Rewrite a closed landing file without the lines `drop` selects, keeping its modification time
    (its landing time); returns how many lines were removed."""
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    kept = [line for line in lines if not drop(line)]
    if len(kept) == len(lines):
        return 0
    stat = path.stat()
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(b"".join(kept))
    os.utime(tmp, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    fsync(tmp)
    os.replace(tmp, path)
    fsync(path.parent)
    return len(lines) - len(kept)


def all_archived(layout: DataLayout) -> Iterator[Archived]:
    for feed in FEEDS:
        yield from archived(layout, feed)
