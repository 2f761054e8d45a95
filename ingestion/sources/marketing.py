"""Marketing spend CSV files (one per channel and day), through dlt's filesystem source.

The header is checked against the expected columns before any row is read: a file missing a
column is quarantined whole with the column's name; an extra column is added to the table under
the `evolve` contract or refused under `freeze`. Rows with unparsable values are quarantined
one by one, and the rest of the file still loads.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path

import dlt
from dlt.sources.filesystem import filesystem

from ingestion.sources.landing import Contract, check_contract, quarantine, quarantine_row, unloaded_files

# column -> parser; the parser's exception message becomes the quarantine reason
COLUMNS = {
    "date": date.fromisoformat,
    "tenant_id": str,
    "channel": str,
    "campaign": str,
    "impressions": int,
    "clicks": int,
    "spend": float,
}
PRIMARY_KEY = ["date", "tenant_id", "channel", "campaign"]
# the spend resource's hints (also those of the run that prunes its ledger: `landing.forget_files`)
HINTS = {"primary_key": PRIMARY_KEY, "write_disposition": {"disposition": "merge", "strategy": "upsert"},
         "columns": {"spend": {"data_type": "decimal", "precision": 18, "scale": 2}}}


def parse_spend_file(source_file: str, data: bytes, contract: Contract) -> tuple[list[dict], list[dict]]:
    """Return (rows, quarantined rows) for one CSV file."""
    text = data.decode("utf-8-sig")
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [c for c in COLUMNS if c not in header]
    extra = [c for c in header if c not in COLUMNS]
    whole_file = None
    if missing:
        whole_file = ("header", f"missing column(s) {', '.join(map(repr, missing))}; expected {list(COLUMNS)}")
    elif extra and contract == "freeze":
        whole_file = ("header", f"unexpected column(s) {', '.join(map(repr, extra))} refused by the 'freeze' "
                                "schema contract (set the contract to 'evolve' to add them)")
    if whole_file:
        return [], [quarantine_row(source_file, 1, whole_file[0], whole_file[1], text[:2000])]

    rows, bad = [], []
    for number, record in enumerate(reader, start=2):
        row, fault = {}, None
        for column, parse in COLUMNS.items():
            value = (record.get(column) or "").strip()
            try:
                row[column] = parse(value)
            except ValueError as exc:
                fault = (column, f"cannot parse {value!r}: {exc}")
                break
        if fault is None and row["spend"] < 0:
            fault = ("spend", f"negative spend {row['spend']}")
        if fault:
            bad.append(quarantine_row(source_file, number, fault[0], fault[1], ",".join(map(str, record.values()))))
            continue
        row.update({c: record[c] for c in extra})
        row["_source_file"] = source_file
        rows.append(row)
    return rows, bad


@dlt.source(name="marketing")
def marketing_source(marketing_dir: str | Path, contract: Contract = "evolve", file_glob: str = "*.csv"):
    check_contract(contract)

    @dlt.transformer(name="spend", **HINTS, schema_contract={"columns": contract, "data_type": "freeze"})
    def spend(files):
        for item in unloaded_files(files):
            rows, bad = parse_spend_file(item["relative_path"], item.read_bytes(), contract)
            if rows:
                yield rows
            if bad:
                yield quarantine("spend_quarantine", bad)

    listing = filesystem(bucket_url=Path(marketing_dir).resolve().as_uri(), file_glob=file_glob)
    return listing | spend
