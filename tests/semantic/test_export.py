"""The Export API (`/cubejs-api/v1/export`, `semantic/export.py`) against a real server on loopback,
with real clients: every format is read back with pandas, pyarrow and openpyxl and compared with what
/load returns for the same query; bad input gets /load's errors; a tenant's export holds its rows
only; and an export of over a million rows is streamed without the server holding it."""

from __future__ import annotations

import io
import shutil
import sys
import threading
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import httpx
import openpyxl
import orjson
import pandas as pd
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from bench import live
from ingestion.paths import DataLayout
from semantic.cube_query import MAX_LIMIT
from tests.semantic.conftest import Server, publish, start_server

DAILY = {"measures": ["orders.revenue", "orders.orders", "orders.average_order_value"],
         "dimensions": ["orders.tenant"],
         "timeDimensions": [{"dimension": "orders.metric_time", "granularity": "day"}],
         "order": [["orders.metric_time", "asc"], ["orders.tenant", "asc"]]}
# the big server's extra minutes: t001 gets more than an Excel sheet holds, t002 a few with far larger counts
BIG_ROWS, OTHER_ROWS = 1_050_000, 1_000
PER_MINUTE = {"measures": ["live.live_events", "live.live_gross_revenue"],
              "timeDimensions": [{"dimension": "live.metric_time", "granularity": "minute"}]}


def export(server: Server, query, fmt: str, token: str | None = None, method: str = "GET") -> httpx.Response:
    headers = {"Authorization": token or server.admin}
    url = f"{server.url}/cubejs-api/v1/export"
    if method == "POST":
        return httpx.post(url, params={"format": fmt}, json={"query": query}, headers=headers, timeout=120)
    return httpx.get(url, params={"format": fmt, "query": orjson.dumps(query).decode()}, headers=headers, timeout=120)


def load(server: Server, query, token: str | None = None) -> httpx.Response:
    return httpx.get(f"{server.url}/cubejs-api/v1/load", params={"query": orjson.dumps(query).decode()},
                     headers={"Authorization": token or server.admin}, timeout=120)


def load_value(value):
    """A value as comparable with /load's: numbers as Decimals, times as Cube's local timestamps."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float | Decimal):
        return Decimal(str(value))
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}"
    if isinstance(value, date):
        return value.isoformat() + "T00:00:00.000"
    try:
        return Decimal(value)
    except ArithmeticError:
        return value


def _to_10_places(rows: list[dict]) -> list[dict]:
    return [{k: v.quantize(Decimal("1e-10")) if isinstance(v, Decimal) else v for k, v in row.items()}
            for row in rows]


def read_back(fmt: str, content: bytes) -> tuple[list[dict], dict[str, str]]:
    """The rows of an exported file, as /load's rows compare, and what the file says about itself."""
    if fmt == "csv":
        frame = pd.read_csv(io.BytesIO(content), dtype=str, keep_default_na=False)
        return [{k: load_value(v) if v != "" else None for k, v in row.items()} for row in frame.to_dict("records")], {}
    if fmt == "json":
        body = orjson.loads(content)
        assert body["rowCount"] == len(body["data"])
        facts = {"query": orjson.dumps(body["query"]).decode(), "data_version": body["dataVersion"]}
        return [{k: load_value(v) for k, v in row.items()} for row in body["data"]], facts
    if fmt == "parquet":
        table = pq.read_table(io.BytesIO(content))
        facts = {k.decode().removeprefix("semantic."): v.decode() for k, v in table.schema.metadata.items()}
        rows = [{k: load_value(v.replace(tzinfo=None) if isinstance(v, datetime) else v) for k, v in row.items()}
                for row in table.to_pylist()]
        return rows, facts
    workbook = openpyxl.load_workbook(io.BytesIO(content), read_only=True)
    header, *values = workbook["data"].values
    facts = {p.name.removeprefix("semantic."): p.value for p in workbook.custom_doc_props.props}
    about = {name: value for name, value, *_ in workbook["query"].values if name}
    assert about["query"] == facts["query"] and about["data version"] == facts["data_version"]
    assert about["rows"] == len(values)
    return [{k: load_value(v) for k, v in zip(header, row, strict=True)} for row in values], facts


@pytest.mark.parametrize(("fmt", "method"), [("csv", "GET"), ("json", "POST"), ("parquet", "GET"),
                                             ("xlsx", "POST")])
def test_every_format_holds_the_rows_load_returns_with_the_query_and_data_version(server, fmt, method):
    token = server.token("t001")
    loaded = load(server, DAILY, token).json()
    response = export(server, DAILY, fmt, token, method)
    assert response.status_code == 200, response.text
    rows, facts = read_back(fmt, response.content)
    expected = [{k: load_value(v) for k, v in row.items() if k != "orders.metric_time"} for row in loaded["data"]]
    if fmt == "xlsx":  # a cell holds a double written with 16 digits, which not every double round-trips
        rows, expected = _to_10_places(rows), _to_10_places(expected)
    assert rows == expected and len(rows) > 20
    assert list(rows[0]) == ["orders.revenue", "orders.orders", "orders.average_order_value", "orders.tenant",
                             "orders.metric_time.day"]  # the query's order, under /load's keys
    version = loaded["refreshKeyValues"][0][0]["data_version"]
    assert response.headers["X-Data-Version"] == version
    assert response.headers["Content-Disposition"] == f'attachment; filename="orders-{version}.{fmt}"'
    assert orjson.loads(response.headers["X-Query"]) == {**loaded["query"], "limit": 5_000_000,
                                                         "rowLimit": 5_000_000}
    if fmt != "csv":  # CSV has no place for them but the headers
        assert facts["data_version"] == version
        assert orjson.loads(facts["query"])["measures"] == DAILY["measures"]
    if fmt in ("parquet", "xlsx"):
        assert facts["tenant"] == "t001"


def test_types_survive_in_parquet_and_time_zones_as_load_shows_them(server):
    query = {**PER_MINUTE, "timezone": "America/New_York", "limit": 50,
             "order": [["live.metric_time", "desc"]]}
    table = pq.read_table(io.BytesIO(export(server, query, "parquet").content))
    assert str(table.schema.field("live.live_events").type) == "int64"
    assert str(table.schema.field("live.live_gross_revenue").type).startswith("decimal128")
    assert str(table.schema.field("live.metric_time.minute").type) == "timestamp[us, tz=America/New_York]"
    loaded = load(server, query).json()["data"]
    assert [load_value(t.replace(tzinfo=None)) for t in table.column("live.metric_time.minute").to_pylist()] == \
        [row["live.metric_time.minute"] for row in loaded]
    csv = pd.read_csv(io.BytesIO(export(server, query, "csv").content), dtype=str)
    assert list(csv["live.metric_time.minute"]) == [row["live.metric_time.minute"] for row in loaded]


def test_a_tenants_export_holds_its_own_rows_only(server):
    by_tenant = {"measures": ["orders.revenue"], "dimensions": ["orders.tenant"]}
    everyone = {r["orders.tenant"]: load_value(r["orders.revenue"]) for r in load(server, by_tenant).json()["data"]}
    assert len(everyone) > 1
    for tenant in everyone:
        for fmt in ("csv", "parquet"):
            rows, _ = read_back(fmt, export(server, by_tenant, fmt, server.token(tenant)).content)
            assert rows == [{"orders.tenant": tenant, "orders.revenue": everyone[tenant]}]
        # asking for another tenant's rows by filter finds none
        other = next(t for t in everyone if t != tenant)
        rows, _ = read_back("json", export(server, {**by_tenant, "filters": [
            {"member": "orders.tenant", "operator": "equals", "values": [other]}]}, "json",
            server.token(tenant)).content)
        assert rows == []


@pytest.mark.parametrize("fmt", [None, "xml", "CSV", ""])
def test_an_unknown_format_gets_400_naming_the_formats(server, fmt):
    params = {"query": orjson.dumps(DAILY).decode(), **({} if fmt is None else {"format": fmt})}
    response = httpx.get(f"{server.url}/cubejs-api/v1/export", params=params,
                         headers={"Authorization": server.admin})
    assert response.status_code == 400
    assert response.json()["type"] == "UserError"
    assert response.json()["error"].startswith("format: expected one of csv, json, parquet, xlsx")


@pytest.mark.parametrize("query", [
    {"measures": ["orders.revenu"]},
    {"measures": ["orders.revenue"], "timeDimensions": [{"dimension": "orders.metric_time",
                                                         "granularity": "fortnight"}]},
    {"measures": ["orders.revenue"], "filters": [{"member": "orders.tenant", "operator": "like", "values": ["t"]}]},
    {"measures": ["orders.revenue"], "limit": -1},
    {"measures": ["orders.revenue"], "dimensions": ["metrics.tenant"]},
    "{measures: [",
])
def test_a_malformed_query_gets_the_error_load_gives(server, query):
    raw = query if isinstance(query, str) else orjson.dumps(query).decode()
    headers = {"Authorization": server.admin}
    loaded = httpx.get(f"{server.url}/cubejs-api/v1/load", params={"query": raw}, headers=headers)
    exported = httpx.get(f"{server.url}/cubejs-api/v1/export", params={"query": raw, "format": "csv"},
                         headers=headers)
    assert loaded.status_code == exported.status_code == 400
    assert exported.json() == loaded.json()
    posted = httpx.post(f"{server.url}/cubejs-api/v1/export", params={"format": "xlsx"}, headers=headers,
                        content=b"{not json")
    assert posted.status_code == 400 and posted.json()["error"].startswith("body: not valid JSON")


def test_an_export_holds_one_query(server):
    compared = {"measures": ["orders.revenue"], "timeDimensions": [{
        "dimension": "orders.metric_time", "granularity": "day", "compareDateRange": ["last week", "this week"]}]}
    for query in ([DAILY, DAILY], compared):
        response = export(server, query, "csv")
        assert response.status_code == 400
        assert response.json()["error"].startswith("query: an export holds the rows of one query")


@pytest.mark.parametrize("header", [None, "not-a-jwt", "expired", "unknown-tenant"])
def test_no_or_a_bad_token_gets_the_403_load_gives(server, header):
    value = {None: None, "not-a-jwt": "not-a-jwt", "expired": server.token("t001", ttl_seconds=-10),
             "unknown-tenant": server.token("t999")}[header]
    headers = {"Authorization": value} if value else {}
    params = {"query": orjson.dumps(DAILY).decode()}
    loaded = httpx.get(f"{server.url}/cubejs-api/v1/load", params=params, headers=headers)
    exported = httpx.get(f"{server.url}/cubejs-api/v1/export", params={**params, "format": "parquet"},
                         headers=headers)
    assert loaded.status_code == exported.status_code == 403
    assert exported.json() == loaded.json()


def test_a_limit_above_the_export_limit_is_refused_naming_it(server):
    response = export(server, {**DAILY, "limit": 5_000_001}, "csv")
    assert response.status_code == 400
    assert response.json()["error"] == "limit: 5000001 is above the maximum of 5000000"
    # /load's own maximum does not bound an export, and a limit within it is kept
    response = export(server, {**DAILY, "limit": MAX_LIMIT + 1}, "csv")
    assert response.status_code == 200 and "X-Row-Count" not in response.headers
    assert len(export(server, {**DAILY, "limit": 7}, "csv").text.splitlines()) == 8


# -- a million rows ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def big_server(published, tmp_path_factory) -> Iterator[tuple[Server, dict[str, int]]]:
    """A server over a private copy of the sample whose real-time mart has 1,050,000 more minutes of
    t001 (and 1,000 of t002, with far larger counts), published as a micro-batch publishes them; its
    export limit is t001's rows exactly, so that an admin's export of every tenant is over it.
    With t001's rows and events, and the minutes of every tenant."""
    root = tmp_path_factory.mktemp("export-big") / "data"
    root.mkdir()
    shutil.copyfile(published.warehouse, root / "warehouse.duckdb")
    shutil.copytree(published.root / "published", root / "published")
    with duckdb.connect(str(root / "warehouse.duckdb")) as conn:
        conn.execute("""
            insert into marts.metrics_per_minute
            select strftime(minute_at, '%Y-%m-%d %H:%M:%S') || '|' || tenant_id, minute_at, tenant_id, events,
                   1, 0, events, 0, 0, (i % 100) / 4, 0, now()::timestamp
            from (select i, 't001' as tenant_id, timestamp '2020-01-01' + to_minutes(i) as minute_at,
                         1 + i % 7 as events from range(?) as r(i)
                  union all
                  select i, 't002', timestamp '2020-01-01' + to_minutes(i), 100000 + i from range(?) as r(i))""",
                     [BIG_ROWS, OTHER_ROWS])
        rows, events, minutes = conn.execute(
            "select count(*) filter (where tenant_id = 't001'), sum(events) filter (where tenant_id = 't001'), "
            "count(distinct minute_at) from marts.metrics_per_minute").fetchone()
    publish(DataLayout(root), live.PER_MINUTE)
    truth = {"rows": rows, "events": int(events), "minutes": minutes}  # minutes: of every tenant
    yield from ((server, truth) for server in start_server(
        DataLayout(root), root.parent / "server.log", extra_env={"SEMANTIC_EXPORT_MAX_ROWS": str(rows)}))


def _memory(pid: int, field: str) -> int:
    """A line of the process's /proc status (VmRSS: now, VmHWM: its peak), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


@pytest.mark.skipif(sys.platform != "linux", reason="reads the server's memory from /proc")
def test_a_million_rows_are_streamed_without_the_server_holding_them(big_server):
    server, truth = big_server
    token = server.token("t001")
    url = f"{server.url}/cubejs-api/v1/export"
    params = {"query": orjson.dumps(PER_MINUTE).decode(), "format": "csv"}
    with httpx.Client(headers={"Authorization": token}, timeout=300) as client:
        # the same export once, read and dropped, so that the engine's own working memory (the aggregation and
        # its sort of every row, which a limited query does not need) is counted before, not in, the export
        # measured: after only a limited query, the peak varied from 22 to 50 MB with the allocator's reuse
        with client.stream("GET", url, params=params) as response:
            assert response.status_code == 200, response.read()
            for _ in response.iter_bytes():
                pass
        Path(f"/proc/{server.pid}/clear_refs").write_text("5")  # the peak (VmHWM) counts from here
        before = _memory(server.pid, "VmRSS")
        body, growth = io.BytesIO(), []  # (bytes received, the server's RSS growth then)
        with client.stream("GET", url, params=params) as response:
            assert response.status_code == 200, response.read()
            assert response.headers["X-Row-Count"] == str(truth["rows"])
            for chunk in response.iter_bytes():
                body.write(chunk)
                growth.append((body.tell(), _memory(server.pid, "VmRSS") - before))
        peak = _memory(server.pid, "VmHWM") - before
    table = pa_csv.read_csv(io.BytesIO(body.getvalue()))
    assert table.num_rows == truth["rows"] > 1_000_000
    assert sum(table.column("live.live_events").to_pylist()) == truth["events"]  # t002's minutes are not in it
    size = body.tell()
    # what the server would hold to answer it whole, as /load does: a dict of strings per row (a lower bound)
    first = table.slice(0, 1000).to_pylist()
    held = sum(sys.getsizeof(row) + sum(sys.getsizeof(str(v)) for v in row.values()) for row in first)
    held = held * table.num_rows // len(first)
    after_start = [g for received, g in growth if received >= size // 10]
    summary = (f"{size / 1e6:.1f} MB of CSV ({table.num_rows:,} rows; {held / 1e6:.0f} MB as /load's rows): "
               f"peak RSS growth {peak / 1e6:.1f} MB, growth from a tenth of the file to its end "
               f"{(max(after_start) - after_start[0]) / 1e6:.1f} MB")
    print(summary)
    assert peak < held / 8, summary
    assert max(after_start) - after_start[0] < size / 4, summary  # flat while the rows go out


def test_an_export_over_the_row_limit_is_refused_naming_it(big_server):
    server, truth = big_server
    response = export(server, PER_MINUTE, "parquet")  # every tenant's minutes: more than t001's
    assert response.status_code == 400
    assert response.json()["error"] == (
        f"export: the query's result has {truth['minutes']:,} rows, above the limit of {truth['rows']:,} rows "
        "per export (SEMANTIC_EXPORT_MAX_ROWS); narrow it (filters, a dateRange, a coarser granularity) or pass "
        "a limit")
    response = export(server, PER_MINUTE, "xlsx", server.token("t001"))
    assert response.status_code == 400
    assert response.json()["error"] == (
        f"export: the query's result has {truth['rows']:,} rows, above Excel's 1,048,575 rows per sheet "
        "(format=xlsx; csv or parquet hold more); narrow it (filters, a dateRange, a coarser granularity) "
        "or pass a limit")
    # with a limit within both, the first rows of it, without counting
    response = export(server, {**PER_MINUTE, "limit": 1000}, "xlsx", server.token("t001"))
    assert response.status_code == 200 and "X-Row-Count" not in response.headers
    rows, facts = read_back("xlsx", response.content)
    assert len(rows) == 1000 and facts["tenant"] == "t001"


def test_a_client_that_goes_away_mid_export_leaves_the_server_answering(big_server):
    server, _ = big_server
    url = f"{server.url}/cubejs-api/v1/export"
    params = {"query": orjson.dumps(PER_MINUTE).decode(), "format": "json"}
    with httpx.Client(headers={"Authorization": server.token("t001")}, timeout=60) as client:
        with client.stream("GET", url, params=params) as response:
            assert response.status_code == 200
            next(response.iter_bytes())  # one chunk, then hang up
        results = []

        def ask():
            results.append(client.get(f"{server.url}/cubejs-api/v1/load", params={
                "query": orjson.dumps({**PER_MINUTE, "limit": 3}).decode()}).status_code)

        asking = threading.Thread(target=ask)
        asking.start()
        asking.join(60)
        assert results == [200]
