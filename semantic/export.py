"""Exports of a governed query's rows as a file: CSV, XLSX, Parquet or JSON
(`GET|POST /cubejs-api/v1/export?format=...`, the query as /load takes it).

Streamed: the rows come from the engine as Arrow record batches (`MetricsService.stream`), and each
batch is written out as it is read, so the server holds a batch, never the result. CSV and JSON go
to the client batch by batch; Parquet and XLSX keep their directory at the end of the file, so they
are written to a temporary file (in memory up to `SPOOL_BYTES`, then on disk) and sent from it.

Every format has the same columns, named by Cube's member keys as /load returns them
(`orders.revenue`, `orders.metric_time.day`), in the query's order, and says which query and which
data version it holds:

- csv: a header row, then one line per row; times as /load writes them (local ISO timestamps in
  the query's time zone, with milliseconds), numbers as the engine returns them. The query and
  data version are in the response headers (`X-Query`, `X-Data-Version`, `Last-Modified`) and the
  file name (`Content-Disposition`).
- json: one JSON document, streamed: `{"query", "dataVersion", "lastRefreshTime", "columns",
  "data": [{member: value}, ...], "rowCount"}`; `data` rows are keyed like /load's, but numbers
  are JSON numbers (/load, as Cube, returns them as strings).
- parquet: typed columns (decimals, integers, dates, timestamps with the query's time zone), the
  query and data version in the file's key-value metadata (`semantic.query`,
  `semantic.data_version`, `semantic.published_at`, `semantic.tenant`).
- xlsx: a `data` sheet (dates and times as Excel dates, in the query's time zone) and a `query`
  sheet saying what it holds; the same facts in the workbook's custom document properties.
  xlsxwriter in `constant_memory` mode writes each row as it comes. A sheet holds at most
  1,048,575 rows under its header: a larger XLSX export is refused.
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import xlsxwriter

from semantic.cube_query import Plan, QueryError
from semantic.members import Catalog
from semantic.service import ResultStream

SPOOL_BYTES = 16 * 1024 * 1024  # a Parquet or XLSX file is kept in memory up to this size, then on disk
CHUNK_BYTES = 1024 * 1024  # what a spooled file is sent in
PYTHON_ROWS = 4096  # rows turned into Python objects at a time (JSON, XLSX)
EXCEL_ROWS = 1_048_575  # an Excel sheet's rows, less the header
CUBE_TIME = "%Y-%m-%dT%H:%M:%S"  # with milliseconds (timestamps cast to ms): as /load writes times


@dataclass(frozen=True)
class About:
    """What an exported file says about itself."""

    query: dict  # the query as /load echoes it (date ranges resolved)
    data_version: str
    published_at: datetime
    tenant: str | None  # the token's tenant (None: an admin's export, every tenant)
    titles: dict[str, str]  # column -> the member's title

    @property
    def last_refresh(self) -> str:
        return self.published_at.isoformat().replace("+00:00", "Z")

    def facts(self) -> dict[str, str]:
        return {"query": json.dumps(self.query, ensure_ascii=True, separators=(",", ":")),
                "data_version": self.data_version, "published_at": self.last_refresh,
                "tenant": self.tenant or "(all tenants)"}


class Export:
    """One export under way: the stream of rows it reads, and how many it has written."""

    def __init__(self, stream: ResultStream, plan: Plan, about: About):
        self.stream, self.plan, self.about = stream, plan, about
        self.columns = [(column.keys[0], column.source) for column in plan.columns]  # (Cube's key, engine's)
        self.rows = 0

    @property
    def keys(self) -> list[str]:
        return [key for key, _ in self.columns]

    def shaped(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The batch's columns the query asked for, under Cube's keys."""
        return pa.RecordBatch.from_arrays([_typed(batch.column(source)) for _, source in self.columns],
                                          names=self.keys)

    def batches(self) -> Iterator[pa.RecordBatch]:
        for batch in self.stream.batches:
            self.rows += batch.num_rows
            yield self.shaped(batch)

    def schema(self) -> pa.Schema:
        return self.shaped(pa.RecordBatch.from_pylist([], schema=self.stream.batches.schema)).schema


@dataclass(frozen=True)
class Format:
    media_type: str
    write: Callable[[Export], Iterator[bytes]]
    max_rows: tuple[int, str] | None = None  # a limit of the format itself, and its name


def titles(plan: Plan, catalog: Catalog) -> dict[str, str]:
    return {column.keys[0]: catalog.member(column.member, "export").title for column in plan.columns}


def _typed(array: pa.Array) -> pa.Array:
    """Whole-number decimals (DuckDB's sums of integers are HUGEINT) as 64-bit integers."""
    if pa.types.is_decimal(array.type) and array.type.scale == 0:
        return array.cast(pa.int64())
    return array


def _as_float(array: pa.Array) -> pa.Array:
    """Decimals as the nearest double (through their text: Arrow's direct cast is off in the last digit)."""
    return array.cast(pa.string()).cast(pa.float64())


def _as_text(array: pa.Array) -> pa.Array:
    """Times as /load writes them: local to the query's time zone, with milliseconds."""
    if pa.types.is_date(array.type):
        array = array.cast(pa.timestamp("ms"))
    elif pa.types.is_timestamp(array.type):
        array = array.cast(pa.timestamp("ms", tz=array.type.tz), safe=False)
    else:
        return array
    return pc.strftime(array, format=CUBE_TIME)


def _as_json(array: pa.Array) -> pa.Array:
    array = _as_text(array)
    return _as_float(array) if pa.types.is_decimal(array.type) else array


def _as_excel(array: pa.Array) -> pa.Array:
    """Excel's cells: numbers are doubles, and times have no zone (shown in the query's)."""
    if pa.types.is_decimal(array.type):
        return _as_float(array)
    if pa.types.is_timestamp(array.type) and array.type.tz is not None:
        return pc.local_timestamp(array)
    return array


def _mapped(batch: pa.RecordBatch, convert: Callable[[pa.Array], pa.Array]) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([convert(column) for column in batch.columns], names=batch.schema.names)


def _slices(batch: pa.RecordBatch, rows: int = PYTHON_ROWS) -> Iterator[pa.RecordBatch]:
    """The batch in slices small enough to turn into Python objects a slice at a time."""
    for start in range(0, batch.num_rows, rows):
        yield batch.slice(start, rows)


def write_csv(export: Export) -> Iterator[bytes]:
    header = True
    for batch in export.batches():
        out = io.BytesIO()
        pa_csv.write_csv(_mapped(batch, _as_text), out, pa_csv.WriteOptions(include_header=header))
        header = False
        yield out.getvalue()
    if header:  # no rows: the header alone
        yield (",".join(json.dumps(key) for key in export.keys) + "\n").encode()


def write_json(export: Export) -> Iterator[bytes]:
    about = export.about
    described = [{"name": key, "title": about.titles[key]} for key in export.keys]
    head = orjson.dumps({"query": about.query, "dataVersion": about.data_version,
                         "lastRefreshTime": about.last_refresh, "columns": described})
    yield head[:-1] + b',"data":['
    first = True
    for batch in export.batches():
        for part in _slices(batch):
            yield (b"" if first else b",") + orjson.dumps(_mapped(part, _as_json).to_pylist())[1:-1]
            first = False
    yield b'],"rowCount":' + str(export.rows).encode() + b"}"


def _sent(spooled: IO[bytes]) -> Iterator[bytes]:
    spooled.seek(0)
    while chunk := spooled.read(CHUNK_BYTES):
        yield chunk


def write_parquet(export: Export) -> Iterator[bytes]:
    schema = export.schema().with_metadata({f"semantic.{key}": value for key, value in export.about.facts().items()})
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spooled:
        with pq.ParquetWriter(spooled, schema, compression="zstd") as writer:
            for batch in export.batches():
                writer.write_batch(batch.replace_schema_metadata(schema.metadata), row_group_size=batch.num_rows)
        yield from _sent(spooled)


def write_xlsx(export: Export) -> Iterator[bytes]:
    about, keys = export.about, export.keys
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spooled:
        workbook = xlsxwriter.Workbook(spooled, {"constant_memory": True, "remove_timezone": True})
        stamp = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        day = workbook.add_format({"num_format": "yyyy-mm-dd"})
        bold = workbook.add_format({"bold": True})
        data = workbook.add_worksheet("data")
        data.write_row(0, 0, keys, bold)
        row = 1
        formats = [stamp if pa.types.is_timestamp(f.type) else day if pa.types.is_date(f.type) else None
                   for f in export.schema()]
        for batch in export.batches():
            for part in _slices(batch):
                values = [column.to_pylist() for column in _mapped(part, _as_excel).columns]
                for record in zip(*values, strict=True):
                    for col, (value, cell_format) in enumerate(zip(record, formats, strict=True)):
                        if value is not None:
                            data.write(row, col, value, cell_format)
                    row += 1
        facts = about.facts()
        sheet = workbook.add_worksheet("query")
        lines = [("query", facts["query"]), ("data version", about.data_version),
                 ("published at", facts["published_at"]), ("tenant", facts["tenant"]), ("rows", row - 1), ("", "")]
        lines += [("column", "title"), *((key, about.titles[key]) for key in keys)]
        for i, line in enumerate(lines):
            sheet.write_row(i, 0, line)
        workbook.set_properties({"title": f"Export of {', '.join(keys)}", "comments": facts["query"]})
        for name, value in facts.items():
            workbook.set_custom_property(f"semantic.{name}", value)
        workbook.close()
        yield from _sent(spooled)


FORMATS = {
    "csv": Format("text/csv; charset=utf-8", write_csv),
    "json": Format("application/json", write_json),
    "parquet": Format("application/vnd.apache.parquet", write_parquet),
    "xlsx": Format("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", write_xlsx,
                   (EXCEL_ROWS, f"Excel's {EXCEL_ROWS:,} rows per sheet (format=xlsx; csv or parquet hold more)")),
}


def format_of(value: str | None) -> str:
    """The `format` parameter, or a QueryError naming the formats there are."""
    if value not in FORMATS:
        got = "missing" if value is None else f"{value!r} is not one of them"
        raise QueryError(f"format: expected one of {', '.join(FORMATS)} ({got})")
    return value


def file_name(plan: Plan, about: About, format_name: str) -> str:
    return f"{plan.view}-{about.data_version}.{format_name}"
