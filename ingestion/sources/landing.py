"""What every landing-zone loader shares: a ledger of loaded files and the quarantine table.

The ledger lives in dlt's resource state, which dlt commits together with the load package, so a
file counts as loaded exactly when its rows do: an interrupted run leaves it unloaded, and the
next run (which first finishes any pending package) never loads it twice. Retention takes loaded
files out of the landing zone and their names out of the ledger (`forget_files`), so neither grows
forever.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import dlt
from dlt.common.storages.fsspec_filesystem import FileItemDict

QUARANTINE_COLUMNS = {
    "source_file": {"data_type": "text", "nullable": False},
    "line_number": {"data_type": "bigint", "nullable": False},
    "field": {"data_type": "text"},
    "reason": {"data_type": "text", "nullable": False},
    "raw_line": {"data_type": "text"},
    "quarantined_at": {"data_type": "timestamp", "nullable": False},
}

Contract = str  # "evolve" (new columns are added) or "freeze" (new columns are refused)
CONTRACTS = ("evolve", "freeze")


def check_contract(contract: Contract) -> Contract:
    if contract not in CONTRACTS:
        raise ValueError(f"schema contract must be one of {CONTRACTS}, got {contract!r}")
    return contract


def quarantine(table: str, rows: list[dict[str, Any]]):
    """Mark rows for the quarantine table `table`: kept with their reason, never dropped.

    Keyed by (source_file, line_number) with insert-only merge, so a replayed file adds nothing.
    """
    hints = dlt.mark.make_hints(
        table_name=table,
        write_disposition={"disposition": "merge", "strategy": "insert-only"},
        primary_key=["source_file", "line_number"],
        columns=QUARANTINE_COLUMNS,
    )
    return dlt.mark.with_hints(rows, hints, create_table_variant=True)


def quarantine_row(source_file: str, line_number: int, field: str, reason: str, raw: str | None) -> dict[str, Any]:
    return {
        "source_file": source_file,
        "line_number": line_number,
        "field": field,
        "reason": reason,
        "raw_line": raw,
        "quarantined_at": datetime.now(UTC),
    }


LEDGER = "loaded_files"


def ledger(pipeline: dlt.Pipeline, source: str, resource: str) -> dict[str, list]:
    """The names of the files a loader has loaded (a copy), from the pipeline's local state."""
    state = pipeline.state.get("sources", {}).get(source, {}).get("resources", {}).get(resource, {})
    return dict(state.get(LEDGER, {}))


def forget_files(pipeline: dlt.Pipeline, source: str, resource: str, names: Collection[str], **hints) -> None:
    """Remove `names` from a loader's ledger: a run of the pipeline that loads nothing and changes
    only that resource's state, committed like any load (locally and in the warehouse). `hints` are
    the resource's own (write disposition, keys), so the run leaves its table's schema as it is."""
    forget = frozenset(names)

    @dlt.source(name=source)
    def pruning():
        @dlt.resource(name=resource, **hints)
        def resource_state():
            files = dlt.current.resource_state().setdefault(LEDGER, {})
            for name in forget & files.keys():
                del files[name]
            yield from ()

        return resource_state

    pipeline.run(pruning())


def unloaded_files(items: Iterable[FileItemDict]) -> Iterator[FileItemDict]:
    """Files of this batch not loaded by an earlier run, each recorded as loaded once yielded.

    Call from inside a dlt resource or transformer: it uses that resource's state.
    """
    loaded: dict[str, list] = dlt.current.resource_state().setdefault(LEDGER, {})
    for item in items:
        name = item["relative_path"]
        if name in loaded:
            continue
        yield item
        loaded[name] = [item["size_in_bytes"], item["modification_date"].isoformat()]
