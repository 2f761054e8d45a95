"""Small helpers for load tests: run one real dlt pipeline, query the real warehouse."""

from __future__ import annotations

import duckdb
import orjson

from ingestion import pipelines
from ingestion.paths import DataLayout


def load(layout: DataLayout, target: pipelines.LoadTarget, contract: str = "evolve") -> dict[str, int]:
    """Run one pipeline with a fresh source, as each Dagster run does; rows written per table."""
    source = pipelines.source_for(target, layout, contract)
    pipeline = pipelines.make_pipeline(target, pipelines.duckdb_warehouse(layout.warehouse), layout.dlt_dir)
    pipeline.run(source)
    counts = pipeline.last_trace.last_normalize_info.row_counts
    return {table: n for table, n in counts.items() if not table.startswith("_dlt")}


def query(layout: DataLayout, sql: str, *params) -> list[tuple]:
    with duckdb.connect(str(layout.warehouse), read_only=True) as conn:
        return conn.execute(sql, list(params)).fetchall()


def scalar(layout: DataLayout, sql: str, *params):
    return query(layout, sql, *params)[0][0]


def event_line(event_id: str, **changes) -> bytes:
    event = {
        "event_id": event_id, "event_type": "page_view", "timestamp": "2026-10-20T10:00:00Z",
        "tenant_id": "t001", "user_id": "u0000001", "anonymous_id": None, "session_id": "s-test",
        "properties": {"path": "/"}, "context": {"device": "desktop"},
    }
    event.update(changes)
    return orjson.dumps(event)
