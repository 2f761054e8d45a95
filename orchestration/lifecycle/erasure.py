"""Erasing a person: their data removed from every place the platform keeps it, with an audit record.

`make erase TENANT=t001 USER=u123` runs it at once; the admin API (`POST /v1/admin/erasures` on the
metrics server) queues a request in `data/privacy/requests/`, which the `erasure_requests_sensor`
hands to `erasure_job` (the warehouse pool keeps it from running beside a load).

Who: the user id as the product knows it, its pseudonym when the collector hashes ids
(`PRIVACY_HASH_USER_IDS`), and every anonymous id seen with either (the device before sign-in: in
events and in alias calls). Where, in this order, each place only where it names one of them:

1. the landing zone: closed event, profile and quarantine files are rewritten without the person's
   lines (their landing time kept); the archive's Parquet files likewise;
2. the warehouse: every table with a tenant and an identity column (`user_id`, `anonymous_id`,
   `visitor_id`, `previous_id`): raw tables, dlt's staging copies, marts (and so the inputs of the
   models, which read marts only); rows reached through a parent (an order's items, a
   subscription's changes) and the loader's quarantine (raw lines naming the person). Deleted rows
   stay in a database's storage until it is rewritten: a DuckDB warehouse is then copied into a new
   file (`compact`), PostgreSQL's tables are rewritten by `VACUUM FULL`; so are the warehouses a
   restore replaced and kept;
3. the published data, which readers read: a new version without the person, the rollups rebuilt
   over what changed, and every older version removed (`Publication.rewrite`);
4. the reports: the built site's datasets and every export (CSV, Parquet, XLSX) lose the rows that
   name the person in an identity column; a PDF whose page had such rows is deleted, and so is an
   extract of published data the site was built from (a DuckDB file); dlt's copies
   of the loads it completed are deleted;
5. the MLflow store: logged artifacts that name the person (none do today: the forecasting models
   learn from daily totals) are removed, and the scan is recorded;
6. the backups: each backup's Parquet tables are rewritten without the person and its manifest's
   checksums updated, so that no restore brings them back.

Then an audit record is appended (`ingestion.privacy.ErasureLog`): the request, who asked, the
tenant, the digests of the identifiers and what was removed where. Those digests are what the
loaders hold back from then on: an SDK's late retry, a landing file that was still open, or the app
database (where the product must erase the person too) cannot bring them back into the warehouse.

A request for a person found nowhere changes no data: it says so, and the audit log records it.
On PostgreSQL the warehouse statements are the same (run through `semantic.warehouse.Warehouse`);
its published schemas change in one transaction; backups are PostgreSQL's own (see `backup.py`).
"""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import parquet

from ingestion import archive, pipelines
from ingestion.paths import DataLayout, fsync, write_atomically
from ingestion.privacy import ErasureLog, PrivacySettings
from orchestration.lifecycle.backup import MANIFEST, backups, sha256
from semantic.publication import Build, Publication
from semantic.snapshots import PUBLISHED_SCHEMAS
from semantic.warehouse import Warehouse

IDENTITY_COLUMNS = ("user_id", "anonymous_id", "visitor_id", "previous_id")
# rows that name a person only through their parent: table -> (key, parent table in the same schema)
CHILDREN = {"order_items": ("order_id", "orders"), "subscription_events": ("subscription_id", "subscriptions")}
# the loader's quarantine keeps refused lines as text
RAW_LINE = "raw_line"
# columns of a report dataset or a logged artifact that identify a person
REPORT_IDENTITY_COLUMNS = (*IDENTITY_COLUMNS, "user")
TEXT_SUFFIXES = (".json", ".txt", ".yaml", ".yml", ".md", ".html")
# the fields of a quarantined message (ours, or a Segment call as sent) that identify a person
QUARANTINED_IDS = ("user_id", "anonymous_id", "previous_id", "userId", "anonymousId", "previousId")
LANDING_FOLDERS = ("events", "profiles", "quarantine")


class ErasureError(RuntimeError):
    """An erasure that cannot run now; nothing was changed. The message says why."""


@dataclass(frozen=True)
class Request:
    tenant: str
    user: str
    requested_by: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    requested_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def __post_init__(self):
        for name in ("tenant", "user"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ErasureError(f"{name}: name the {'tenant' if name == 'tenant' else 'user id'} to erase")


@dataclass(frozen=True)
class Places:
    """Where the platform keeps data, as the environment says."""

    layout: DataLayout
    connect: Callable[[], Warehouse]  # the warehouse, for writing
    destination: object  # dlt's destination of the loaders (to see whether a load is pending)
    privacy: PrivacySettings
    backups_dir: Path
    report_dirs: tuple[Path, ...] = ()
    publication: Publication | None = None
    build: Build | None = None  # the rollups of a published version
    mlflow_dir: Path | None = None
    warehouse_file: Path | None = None  # the DuckDB warehouse's file (None on PostgreSQL)


@dataclass
class Erasure:
    request: Request
    status: str  # "erased", "unknown_user", or "refused" (a queued request that could not run now)
    removed: Counter = field(default_factory=Counter)  # place -> rows, lines or files
    notes: list[str] = field(default_factory=list)

    def record(self, subjects: list[str]) -> dict:
        return {"id": self.request.id, "requested_at": self.request.requested_at,
                "completed_at": datetime.now(UTC).isoformat(), "requested_by": self.request.requested_by,
                "tenant": self.request.tenant, "subjects": subjects, "status": self.status,
                "removed": dict(sorted(self.removed.items())), "notes": self.notes}

    def lines(self) -> list[str]:
        if self.status == "unknown_user":
            return [f"unknown user: tenant {self.request.tenant!r} has no user {self.request.user!r} in the landing "
                    f"zone, the archive or the warehouse; nothing was changed (request {self.request.id})"]
        lines = [f"erased user {self.request.user!r} of tenant {self.request.tenant!r} (request {self.request.id}):"]
        lines += [f"  {place}: {count}" for place, count in sorted(self.removed.items())]
        return lines + [f"  note: {note}" for note in self.notes]


@dataclass(frozen=True)
class Person:
    tenant: str
    identifiers: frozenset[str]

    def _literals(self) -> str:
        return ", ".join(_literal(i) for i in sorted(self.identifiers))

    def predicate(self, table: str, columns: Iterable[str], relation: Callable[[str], str | None]) -> str | None:
        """SQL that is true for the rows of `table` naming this person; None when none can."""
        columns = set(columns)
        identity = [c for c in IDENTITY_COLUMNS if c in columns]
        if identity and "tenant_id" in columns:
            named = " or ".join(f"{c} in ({self._literals()})" for c in identity)
            return f"(tenant_id = {_literal(self.tenant)} and ({named}))"
        if RAW_LINE in columns:
            return "(" + " or ".join(f"strpos({RAW_LINE}, {_literal(_quoted(i))}) > 0"
                                     for i in sorted(self.identifiers)) + ")"
        schema, name = table.split(".")
        if name in CHILDREN and CHILDREN[name][0] in columns:
            key, parent = CHILDREN[name]
            source = relation(f"{schema}.{parent}")
            if source is not None:
                return (f"({key} in (select {key} from {source} where "
                        f"{self.predicate(f'{schema}.{parent}', ('tenant_id', 'user_id'), relation)}))")
        return None

    def names(self, record) -> bool:
        """Whether a landing record (an event, a profile call, a quarantine line) names this person."""
        if not isinstance(record, dict):
            return False
        if "where" in record and "reason" in record:  # a quarantine line: the event, or its text
            if isinstance(record.get("event"), dict):
                event = record["event"]
                return event.get("tenant_id") in (None, self.tenant) and any(
                    event.get(k) in self.identifiers for k in QUARANTINED_IDS)
            return any(_quoted(i) in str(record.get("raw", "")) for i in self.identifiers)
        if record.get("tenant_id") != self.tenant:
            return False
        return any(record.get(c) in self.identifiers for c in IDENTITY_COLUMNS)

    def line(self, line: bytes) -> bool:
        if not any(needle in line for needle in self._needles):
            return False
        try:
            return self.names(orjson.loads(line))
        except orjson.JSONDecodeError:  # not JSON: it names them if it holds one of their ids as a string
            return True

    @property
    def _needles(self) -> list[bytes]:
        return [_quoted(i).encode() for i in self.identifiers]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _quoted(identifier: str) -> str:
    return orjson.dumps(identifier).decode()


# -- who -------------------------------------------------------------------------------------------
def _base_tables(warehouse: Warehouse, schemas: Iterable[str] | None = None) -> dict[str, list[str]]:
    """"schema.table" -> its columns, for the base tables of the warehouse (or of `schemas`)."""
    rows = warehouse.rows(
        "select c.table_schema, c.table_name, c.column_name from information_schema.columns c "
        "join information_schema.tables t on t.table_schema = c.table_schema and t.table_name = c.table_name "
        "and t.table_catalog = c.table_catalog where t.table_type = 'BASE TABLE' "
        "and c.table_schema not in ('information_schema', 'pg_catalog') order by c.table_schema, c.table_name")
    wanted = None if schemas is None else set(schemas)
    tables: dict[str, list[str]] = {}
    for schema, table, column in rows:
        if wanted is None or schema in wanted:
            tables.setdefault(f"{schema}.{table}", []).append(column)
    return tables


def _linked_ids(warehouse: Warehouse, tables: dict, layout: DataLayout, tenant: str, users: set[str]) -> set[str]:
    """Anonymous ids seen with one of the person's user ids: their devices before they signed in."""
    found: set[str] = set()
    listed = ", ".join(_literal(u) for u in sorted(users))
    for table in ("raw_events.events", "marts.fct_events"):
        if table in tables:
            found |= {r[0] for r in warehouse.rows(
                f"select distinct anonymous_id from {table} where tenant_id = {_literal(tenant)} "
                f"and user_id in ({listed}) and anonymous_id is not null")}
    for entry in archive.archived(layout, archive.EVENTS):
        keys = parquet.read_table(entry.path, columns=["tenant_id", "user_id", "anonymous_id"])
        mask = pc.and_(pc.equal(keys["tenant_id"], tenant), pc.is_in(keys["user_id"], pa.array(sorted(users))))
        found |= {a for a in keys.filter(mask)["anonymous_id"].to_pylist() if a}
    needles = [_quoted(u).encode() for u in users]
    for folder in ("events", "profiles"):
        for path in sorted((layout.landing / folder).glob("*.jsonl")):
            for line in path.read_bytes().splitlines():
                if any(n in line for n in needles):
                    try:
                        record = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        continue
                    if (isinstance(record, dict) and record.get("tenant_id") == tenant
                            and record.get("user_id") in users):
                        found |= {v for k in ("anonymous_id", "previous_id") if isinstance(v := record.get(k), str)}
    return found - users


def identify(places: Places, request: Request) -> tuple[Person, dict[str, list[str]]]:
    """The person's identifiers, and the warehouse's tables."""
    users = {request.user, places.privacy.pseudonym(request.tenant, request.user)}
    with places.connect() as warehouse:
        tables = _warehouse_tables(warehouse, places)
        linked = _linked_ids(warehouse, tables, places.layout, request.tenant, users)
    return Person(request.tenant, frozenset(users | linked)), tables


def _warehouse_tables(warehouse: Warehouse, places: Places) -> dict[str, list[str]]:
    tables = _base_tables(warehouse)
    if places.publication is not None and places.publication.engine == "postgres":  # its published schemas
        prefix = places.publication.qualified_schema("")
        tables = {t: c for t, c in tables.items() if not t.startswith(prefix)}
    return tables


# -- where -----------------------------------------------------------------------------------------
def _landing_files(layout: DataLayout) -> list[Path]:
    return [p for folder in LANDING_FOLDERS for p in sorted((layout.landing / folder).glob("*.jsonl"))]


def _landing_matches(layout: DataLayout, person: Person) -> dict[Path, int]:
    found = {}
    for path in _landing_files(layout):
        count = sum(1 for line in path.read_bytes().splitlines() if person.line(line))
        if count:
            found[path] = count
    return found


def _archive_mask(person: Person):
    def mask(table: pa.Table) -> pa.Array:
        tenant_ok = pc.or_kleene(pc.equal(table["tenant_id"], person.tenant), pc.is_null(table["tenant_id"]))
        ids = pa.array(sorted(person.identifiers))
        named = pc.or_kleene(pc.is_in(table["user_id"], ids), pc.is_in(table["anonymous_id"], ids))
        return pc.fill_null(pc.and_kleene(tenant_ok, named), False)
    return mask


def _archive_matches(layout: DataLayout, person: Person) -> dict[archive.Archived, int]:
    found = {}
    mask = _archive_mask(person)
    for entry in archive.all_archived(layout):
        count = int(pc.sum(mask(parquet.read_table(entry.path, columns=list(archive.KEYS)))).as_py() or 0)
        if count:
            found[entry] = count
    return found


def _warehouse_matches(warehouse: Warehouse, tables: dict[str, list[str]], person: Person) -> dict[str, tuple]:
    """"schema.table" -> (rows naming the person, the predicate that finds them)."""
    found = {}
    for table, columns in tables.items():
        predicate = person.predicate(table, columns, lambda t: t if t in tables else None)
        if predicate is None:
            continue
        rows = warehouse.rows(f"select count(*) from {table} where {predicate}")[0][0]
        if rows:
            found[table] = (rows, predicate)
    return found


# -- how -------------------------------------------------------------------------------------------
def _erase_warehouse(warehouse: Warehouse, matches: dict[str, tuple], erasure: Erasure) -> None:
    # children first: their predicate reads the parent rows about to go
    ordered = sorted(matches, key=lambda t: t.split(".")[1] not in CHILDREN)
    for table in ordered:
        rows, predicate = matches[table]
        warehouse.execute(f"delete from {table} where {predicate}")
        layer = "raw" if table.split(".")[0].startswith("raw_") else table.split(".")[0]
        erasure.removed[f"warehouse {layer} rows"] += rows
    if warehouse.dialect == "postgres":  # deleted rows stay in a table's pages until it is rewritten
        cursor = warehouse.connection.cursor()  # PostgreSQL's own statement, outside a transaction
        try:
            for table in ordered:
                cursor.execute(f"vacuum full {table}")
        finally:
            cursor.close()


def compact(path: Path) -> None:
    """Copy the DuckDB warehouse into a new file that takes its place. DuckDB deletes a row by
    marking it, and a block it frees keeps its bytes until reused: the deleted rows would stay in the
    file. `COPY FROM DATABASE` writes only the live rows (views, sequences and macros with them)."""
    fresh = path.with_name(f".{path.name}.compacting")
    fresh.unlink(missing_ok=True)
    try:
        with duckdb.connect(str(path)) as conn:
            conn.execute("checkpoint")
            conn.execute(f"attach {_literal(str(fresh))} as compacted")
            conn.execute(f"copy from database {_identifier(path.stem)} to compacted")
            conn.execute("checkpoint compacted")  # every row in the file itself, none in a WAL
            conn.execute("detach compacted")
        fsync(fresh)
    except BaseException:  # the warehouse is as it was
        fresh.unlink(missing_ok=True)
        Path(f"{fresh}.wal").unlink(missing_ok=True)
        raise
    os.replace(fresh, path)
    Path(f"{path}.wal").unlink(missing_ok=True)  # the old file's, checkpointed before the copy: it held nothing
    fsync(path.parent)


def _erase_replaced_warehouses(restore_dir: Path, person: Person, erasure: Erasure) -> None:
    """The warehouses a restore replaced and kept (`data/restore/*/`): erased like the warehouse."""
    for path in sorted(restore_dir.glob("*/*.duckdb")):
        with duckdb.connect(str(path)) as conn:
            warehouse = Warehouse(conn, "duckdb")
            tables = _base_tables(warehouse)
            matches = _warehouse_matches(warehouse, tables, person)
            if matches:
                _erase_warehouse(warehouse, matches, Erasure(erasure.request, "erased"))
        if matches:
            compact(path)
            erasure.removed["warehouses kept by a restore rewritten"] += 1


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _published_change(person: Person, erasure: Erasure):
    def change(warehouse: Warehouse, publication: Publication) -> frozenset[str]:
        logical = {}
        for schema in PUBLISHED_SCHEMAS:
            physical = publication.relation(schema, "x")[1]
            for table, columns in _base_tables(warehouse, [physical]).items():
                logical[f"{schema}.{table.split('.', 1)[1]}"] = columns

        def relation(table: str) -> str | None:
            return publication.qualified(*table.split(".")) if table in logical else None

        changed = set()
        for table, columns in sorted(logical.items(), key=lambda item: item[0].split(".")[1] not in CHILDREN):
            predicate = person.predicate(table, columns, relation)
            if predicate is None:
                continue
            target = publication.qualified(*table.split("."))
            rows = warehouse.rows(f"select count(*) from {target} where {predicate}")[0][0]
            if rows:
                warehouse.execute(f"delete from {target} where {predicate}")
                erasure.removed["published rows"] += rows
                changed.add(table)
        return frozenset(changed)
    return change


def _identity_mask(frame: pd.DataFrame, person: Person) -> pd.Series:
    columns = [c for c in frame.columns if str(c).lower() in REPORT_IDENTITY_COLUMNS]
    mask = pd.Series(False, index=frame.index)
    for column in columns:
        mask |= frame[column].astype("string").isin(person.identifiers).fillna(False)
    tenant = next((c for c in frame.columns if str(c).lower() in ("tenant_id", "tenant")), None)
    if tenant is not None and columns:
        mask &= frame[tenant].astype("string").isin([person.tenant]).fillna(True)
    return mask


def _erase_table_file(path: Path, person: Person) -> int:
    """Rows removed from a dataset file (Parquet, CSV or an XLSX workbook) naming the person."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        schema = parquet.read_schema(path)
        if not {n.lower() for n in schema.names} & set(REPORT_IDENTITY_COLUMNS):
            return 0
        table = parquet.read_table(path)
        mask = _identity_mask(table.to_pandas(), person)
        if mask.any():
            tmp = path.with_name(path.name + ".tmp")
            parquet.write_table(table.filter(pa.array(~mask.to_numpy())), tmp)
            os.replace(tmp, path)
        return int(mask.sum())
    if suffix == ".csv":
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        mask = _identity_mask(frame, person)
        if mask.any():
            write_atomically(path, frame[~mask].to_csv(index=False).encode())
        return int(mask.sum())
    if suffix == ".xlsx":
        sheets = pd.read_excel(path, sheet_name=None)
        masks = {name: _identity_mask(frame, person) for name, frame in sheets.items()}
        removed = sum(int(m.sum()) for m in masks.values())
        if removed:
            tmp = path.with_name(path.stem + ".tmp.xlsx")
            with pd.ExcelWriter(tmp, engine="openpyxl") as writer:
                for name, frame in sheets.items():
                    frame[~masks[name]].to_excel(writer, sheet_name=name, index=False)
            os.replace(tmp, path)
        return removed
    return 0


def _erase_reports(directories: Iterable[Path], person: Person, erasure: Erasure) -> None:
    for directory in directories:
        if not directory.is_dir():
            continue
        touched_pages = set()
        for path in sorted(directory.rglob("*")):
            if path.is_file() and path.suffix.lower() == ".duckdb" and _extract_names(path, person):
                path.unlink()  # an extract of published data for a report build: the next build makes its own
                Path(f"{path}.wal").unlink(missing_ok=True)
                erasure.removed["report extracts deleted"] += 1
            elif path.is_file() and path.suffix.lower() in (".parquet", ".csv", ".xlsx"):
                rows = _erase_table_file(path, person)
                if rows:
                    erasure.removed["report dataset rows"] += rows
                    erasure.removed["report files rewritten"] += 1
                    # an export's page is the folder of its datasets, or the workbook's name
                    touched_pages.add(path.with_suffix("") if path.suffix == ".xlsx" else path.parent)
        for page in touched_pages:
            pdf = page.with_suffix(".pdf")
            if pdf.exists():
                pdf.unlink()
                erasure.removed["report PDFs deleted"] += 1


def _extract_names(path: Path, person: Person) -> bool:
    """Whether a DuckDB file of published tables (`Publication.extract`) has rows naming the person."""
    with duckdb.connect(str(path), read_only=True) as conn:
        tables = _base_tables(Warehouse(conn, "duckdb"))
        for table, columns in tables.items():
            predicate = person.predicate(table, columns, lambda t: t if t in tables else None)
            if predicate is not None and conn.execute(f"select count(*) from {table} where {predicate}").fetchone()[0]:
                return True
    return False


def _erase_artifacts(store: Path, person: Person, erasure: Erasure) -> int:
    """Logged artifacts that name the person: datasets lose their rows, other text files go.
    Returns how many artifacts were scanned."""
    scanned = 0
    needles = [_quoted(i) for i in person.identifiers]
    for path in sorted(store.rglob("*")) if store.is_dir() else []:
        suffix = path.suffix.lower()
        if not path.is_file() or suffix not in (".parquet", ".csv", *TEXT_SUFFIXES):
            continue
        scanned += 1
        if suffix in (".parquet", ".csv"):
            if rows := _erase_table_file(path, person):
                erasure.removed["MLflow artifact rows"] += rows
        elif any(needle in path.read_text(errors="replace") for needle in needles):
            path.unlink()
            erasure.removed["MLflow artifacts deleted"] += 1
    return scanned


def _copy_statements(folder: Path) -> dict[str, Path]:
    """"schema.table" -> its Parquet file, from an export's `load.sql`."""
    found = {}
    with duckdb.connect() as conn:
        for statement in conn.extract_statements((folder / "load.sql").read_text()):
            words = statement.query.split()
            source = statement.query.split("FROM '", 1)[1].split("'", 1)[0]
            found[words[1].replace('"', "")] = folder / Path(source).name
    return found


def _erase_load_packages(dlt_dir: Path, erasure: Erasure) -> None:
    """The job files of loads dlt completed (the rows as extracted; kept by an older configuration,
    see `LOAD__DELETE_COMPLETED_JOBS`): loaded, so nothing needs them."""
    for path in sorted(dlt_dir.glob("*/load/loaded/*/completed_jobs/*")):
        if path.is_file():
            path.unlink()
            erasure.removed["dlt completed job files deleted"] += 1


def _erase_backups(backups_dir: Path, person: Person, erasure: Erasure) -> None:
    for backup in backups(backups_dir):
        changed = {}
        folder = backup.path / "warehouse"
        if (folder / "load.sql").exists():
            files = _copy_statements(folder)
            with duckdb.connect() as conn:
                def relation(table: str, files=files) -> str | None:
                    return f"read_parquet({_literal(str(files[table]))})" if table in files else None

                for table, path in sorted(files.items(), key=lambda item: item[0].split(".")[1] not in CHILDREN):
                    columns = [r[0] for r in conn.execute(f"describe select * from {relation(table)}").fetchall()]
                    predicate = person.predicate(table, columns, relation)
                    if predicate is None:
                        continue
                    rows = conn.execute(f"select count(*) from {relation(table)} where {predicate}").fetchone()[0]
                    if not rows:
                        continue
                    tmp = path.with_name(path.name + ".tmp")
                    conn.execute(f"copy (select * from {relation(table)} where ({predicate}) is not true) "
                                 f"to {_literal(str(tmp))} (format parquet, compression zstd)")
                    changed[path] = tmp
                    erasure.removed["backup rows"] += rows
            for path, tmp in changed.items():  # after every table was read as it was: children read parents
                os.replace(tmp, path)
        artifacts = ("MLflow artifact rows", "MLflow artifacts deleted")
        before = sum(erasure.removed[k] for k in artifacts)
        _erase_artifacts(backup.path / "mlflow", person, erasure)
        if changed or sum(erasure.removed[k] for k in artifacts) > before:
            _update_manifest(backup.path)
            erasure.removed["backups rewritten"] += 1


def _update_manifest(folder: Path) -> None:
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"] = {str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha256": sha256(p)}
                         for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}
    manifest["rewritten_at"] = datetime.now(UTC).isoformat()
    write_atomically(folder / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
    fsync(folder)


def _pending_loads(places: Places) -> list[str]:
    return [target.pipeline_name for target in pipelines.TARGETS
            if pipelines.make_pipeline(target, places.destination, places.layout.dlt_dir).has_pending_data]


def erase(places: Places, request: Request) -> Erasure:
    """Erase the person `request` names everywhere (see the module's docstring), then record it."""
    pending = _pending_loads(places)
    if pending:
        raise ErasureError(f"a load of {', '.join(pending)} is pending (an interrupted run): let the next run finish "
                           "it (make run, or make microbatch), then ask again; nothing was changed")
    person, tables = identify(places, request)
    log = ErasureLog(places.layout.privacy_dir)
    with places.connect() as warehouse:
        rows = _warehouse_matches(warehouse, tables, person)
    lines = _landing_matches(places.layout, person)
    archived = _archive_matches(places.layout, person)
    erasure = Erasure(request, "erased" if rows or lines or archived else "unknown_user")
    if erasure.status == "erased":
        for path in lines:
            erasure.removed["landing lines"] += archive.rewrite_landing_file(path, person.line)
        for entry in archived:
            erasure.removed["archived lines"] += archive.rewrite_without(entry, _archive_mask(person))
        with places.connect() as warehouse:
            _erase_warehouse(warehouse, rows, erasure)
        if places.warehouse_file is not None:
            compact(places.warehouse_file)
        _erase_replaced_warehouses(places.layout.restore_dir, person, erasure)
        if places.publication is not None and places.publication.current() is not None:
            places.publication.rewrite(_published_change(person, erasure), places.build)
            erasure.removed["published versions replaced"] += 1
        _erase_load_packages(places.layout.dlt_dir, erasure)
        _erase_reports(places.report_dirs, person, erasure)
        if places.mlflow_dir is not None:
            scanned = _erase_artifacts(places.mlflow_dir / "artifacts", person, erasure)
            erasure.notes.append(f"MLflow: {scanned} logged artifacts scanned under {places.mlflow_dir}")
        _erase_backups(places.backups_dir, person, erasure)
        erasure.notes.append("open landing files (still being written) are not rewritten: the loaders hold the "
                             "person's events back when they are loaded, as they do for any later event")
    log.append(erasure.record(log.subjects(request.tenant, person.identifiers)))
    return erasure


def places_of(env) -> Places:
    """Every place of the environment (`orchestration.environment.Environment`)."""
    from orchestration.environment import SEMANTIC_MANIFEST
    from semantic import rollups  # MetricFlow: imported by what erases, not by every run

    return Places(layout=env.layout, connect=lambda: env.warehouse(read_only=False),
                  destination=env.warehouse_destination(), privacy=env.privacy, backups_dir=env.backups_dir,
                  report_dirs=(env.reports_site_dir / "data", env.reports_exports_dir, env.published_dir / "reports"),
                  publication=env.publication(), build=rollups.builder(SEMANTIC_MANIFEST), mlflow_dir=env.mlflow_dir,
                  warehouse_file=env.layout.warehouse if env.dbt_target == "duckdb" else None)


def queued_request(layout: DataLayout, request_id: str) -> Request:
    """A request the admin API queued (`ErasureLog.queue`)."""
    data = ErasureLog(layout.privacy_dir).request(request_id)
    return Request(data["tenant"], data["user"], data["requested_by"], data["id"], data["requested_at"])
