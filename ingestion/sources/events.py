"""Product events from the landing zone's JSON-lines files, through dlt's filesystem source.

Each line is validated against the event schemas; valid events load into `events` (insert-only
merge on `event_id`, so a replayed or duplicated event is never loaded twice), and every refused
line goes to `events_quarantine` with the field and reason. Events of people who were erased
(`ingestion.privacy.Suppression`: a late SDK retry, a file that was still open) are left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import dlt
import orjson
import pyarrow as pa
from dlt.sources.filesystem import filesystem

from ingestion.events.schema import parse_timestamp, validate_event
from ingestion.privacy import Suppression
from ingestion.sources.landing import quarantine, quarantine_row, unloaded_files

_NULLABLE = {"user_id", "anonymous_id"}
ARROW_SCHEMA = pa.schema([
    pa.field(name, kind, nullable=name in _NULLABLE) for name, kind in [
        ("event_id", pa.string()), ("event_type", pa.string()), ("timestamp", pa.timestamp("us", tz="UTC")),
        ("tenant_id", pa.string()), ("user_id", pa.string()), ("anonymous_id", pa.string()),
        ("session_id", pa.string()), ("properties", pa.string()), ("context", pa.string()),
        ("_source_file", pa.string()), ("_line_number", pa.int64()), ("_loaded_at", pa.timestamp("us", tz="UTC")),
    ]
])
EVENT_FIELDS = tuple(ARROW_SCHEMA.names)
# the events resource's hints (also those of the run that prunes its ledger: `landing.forget_files`)
HINTS = {"primary_key": "event_id", "write_disposition": {"disposition": "merge", "strategy": "insert-only"}}
NO_SUPPRESSION = Suppression("", frozenset())
ALL_FILES = 2**31  # files per page of the listing: the whole load is one page (events_source)


@dataclass
class ParsedFile:
    """One file's accepted events, column by column (for an arrow table), and its refused lines."""

    columns: dict[str, list] = field(default_factory=lambda: {name: [] for name in EVENT_FIELDS})
    quarantined: list[dict] = field(default_factory=list)
    suppressed: int = 0  # events of erased people, left out

    def table(self) -> pa.Table:
        return pa.Table.from_pydict(self.columns, schema=ARROW_SCHEMA)

    @property
    def accepted(self) -> int:
        return len(self.columns["event_id"])


def parse_event_lines(source_file: str, data: bytes, seen: dict[str, str], now: datetime,
                      suppression: Suppression = NO_SUPPRESSION) -> ParsedFile:
    """Split one file's lines into valid events and quarantined rows; `now` stamps `_loaded_at`.

    `seen` maps event ids accepted earlier in this load to where they came from, so a duplicate
    inside one load is quarantined with a pointer to the first copy.

    Rules that depend on the clock (an event dated in the future) are not applied here: a load
    must give the same result whenever a file is replayed. The quality gate on raw events holds
    such rows back instead, and lets them through once they are no longer ahead of the clock.
    """
    parsed = ParsedFile()
    cols = parsed.columns
    for number, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            event = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            parsed.quarantined.append(quarantine_row(source_file, number, "line", f"not valid JSON: {exc}",
                                                     raw.decode("utf-8", "replace")))
            continue
        error = validate_event(event)
        if error is None and suppression and suppression.holds(event["tenant_id"], event.get("user_id"),
                                                                event.get("anonymous_id")):
            parsed.suppressed += 1
            continue
        if error is None and event["event_id"] in seen:
            error_field, reason = "event_id", f"duplicate of the event at {seen[event['event_id']]}"
        elif error is not None:
            error_field, reason = error.field, error.reason
        else:
            seen[event["event_id"]] = f"{source_file}:{number}"
            for name in ("event_id", "event_type", "tenant_id", "user_id", "anonymous_id", "session_id"):
                cols[name].append(event.get(name))
            cols["timestamp"].append(parse_timestamp(event["timestamp"]))
            cols["properties"].append(orjson.dumps(event.get("properties") or {}).decode())
            cols["context"].append(orjson.dumps(event.get("context") or {}).decode())
            cols["_source_file"].append(source_file)
            cols["_line_number"].append(number)
            cols["_loaded_at"].append(now)
            continue
        parsed.quarantined.append(quarantine_row(source_file, number, error_field, reason,
                                                 raw.decode("utf-8", "replace")))
    return parsed


@dlt.source(name="events")
def events_source(events_dir: str | Path, file_glob: str = "*.jsonl", suppression: Suppression = NO_SUPPRESSION):
    """Closed landing files only: writers rename finished files to `*.jsonl` atomically.

    The listing gives the transformer every file of the load at once (one page: fsspec lists them all
    before the first page anyway), so the load's de-duplication index (every accepted event id and
    where it came from, a few hundred bytes per event) lives in one call of the transformer and goes
    when the load's extraction ends. Kept beside the source instead, it outlived the load: dlt's
    extraction keeps the source reachable after the run (docs/scaling.md: gigabytes at 30x).
    """
    now = datetime.now(UTC)

    @dlt.transformer(name="events", **HINTS)
    def events(files):
        seen: dict[str, str] = {}
        for item in unloaded_files(files):
            parsed = parse_event_lines(item["relative_path"], item.read_bytes(), seen, now, suppression)
            if parsed.accepted:
                yield parsed.table()
            if parsed.quarantined:
                yield quarantine("events_quarantine", parsed.quarantined)

    listing = filesystem(bucket_url=Path(events_dir).resolve().as_uri(), file_glob=file_glob,
                         files_per_page=ALL_FILES)
    return listing | events
