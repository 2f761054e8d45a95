"""Erasure end to end on a copy of the main job's data: an admin asks the metrics server's API, the
sensor hands the request to the erasure job, and the person is gone from the landing zone (events,
profiles, quarantine, the archive), raw tables, marts, the published data, the report exports and
the backups, while everyone else's data stays. No file under the published folder (a DuckLake's
Parquet files and catalog) and no byte of the warehouse file names them afterwards. An audit record
says what was removed, the loaders keep the person's late events out, and a request for an unknown
user changes nothing."""

from __future__ import annotations

import hashlib
import shutil
from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb
import httpx
import orjson
import pandas as pd
import pytest

from ingestion import archive, pipelines
from ingestion.paths import DataLayout, write_atomically
from ingestion.privacy import ErasureLog
from orchestration.lifecycle import backup
from reports import exports
from semantic import snapshots
from tests.conftest import copy_of, sample_day
from tests.ingestion.helpers import load, query, scalar
from tests.orchestration.helpers import platform_environment
from tests.orchestration.test_microbatch import land, page_views
from tests.semantic.conftest import start_server


def person_rows(layout: DataLayout, tenant: str, user: str) -> dict[str, int]:
    """Rows naming the user in every warehouse table with a tenant and a user id."""
    tables = query(layout, "select table_schema, table_name from information_schema.columns where column_name = "
                           "'tenant_id' intersect select table_schema, table_name from information_schema.columns "
                           "where column_name = 'user_id' intersect select table_schema, table_name from "
                           "information_schema.tables where table_type = 'BASE TABLE'")
    return {f"{s}.{t}": scalar(layout, f"select count(*) from {s}.{t} where tenant_id = ? and user_id = ?", tenant,
                               user) for s, t in sorted(tables)}


def landing_digest(layout: DataLayout) -> str:
    digest = hashlib.sha256()
    for path in sorted(layout.landing.rglob("*")) + sorted(layout.archive_dir.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def files_naming(root, identifier: str) -> list[str]:
    """Every file under `root` that holds `identifier`: a Parquet file in any text column of any row,
    any other file in its bytes (a DuckDB file's deleted rows, a SQLite catalog's freed pages)."""
    found = []
    with duckdb.connect() as conn:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            if path.suffix == ".parquet":
                columns = [name for name, kind, *_ in conn.execute("describe select * from read_parquet(?)",
                                                                   [str(path)]).fetchall() if kind == "VARCHAR"]
                where = " or ".join(f'"{c}" = $id' for c in columns) or "$id is null"
                named = conn.execute(f"select count(*) from read_parquet($path) where {where}",
                                     {"path": str(path), "id": identifier}).fetchone()[0]
            else:
                named = identifier.encode() in path.read_bytes()
            if named:
                found.append(str(path.relative_to(root)))
    return found


def events_served(server, tenant: str) -> float:
    """The tenant's event count as the metrics server answers it (Cube's REST API)."""
    response = httpx.get(f"{server.url}/cubejs-api/v1/load", headers={"Authorization": server.token(tenant)},
                         params={"query": orjson.dumps({"measures": ["metrics.events"]}).decode()})
    assert response.status_code == 200, response.text
    return float(response.json()["data"][0]["metrics.events"])


def users_page(directory, rows: list[dict]) -> None:
    """An exported page that lists users (as a page with a table of users would): its datasets and PDF."""
    frame = pd.DataFrame(rows)
    (directory / "users").mkdir()
    frame.to_csv(directory / "users" / "users.csv", index=False)
    frame.to_parquet(directory / "users" / "users.parquet", index=False)
    frame.to_excel(directory / "users.xlsx", sheet_name="users", index=False)
    (directory / "users.pdf").write_bytes(b"%PDF-1.4\n% the page as printed\n")


@pytest.fixture
def server(main_run, tmp_path):
    layout = DataLayout(copy_of(main_run[0], tmp_path))
    servers = start_server(layout, tmp_path / "server.log")
    yield next(servers)
    servers.close()


def test_an_admin_request_erases_a_person_everywhere_and_keeps_them_out(server, tmp_path):
    layout = server.layout
    (tenant, user, orders), (other_tenant, other, _) = query(layout, """
        select tenant_id, user_id, count(*) from marts.fct_orders where order_status = 'completed'
        group by all order by 3 desc, 2 limit 2""")
    order_ids = [r[0] for r in query(layout, "select order_id from raw_app.orders where user_id = ?", user)]
    needle = orjson.dumps(user)
    with platform_environment(layout.root) as env:
        # one of their landing files already archived, as retention does with loaded files
        in_landing = next(p for p in sorted(layout.events_dir.glob("*.jsonl")) if needle in p.read_bytes())
        archive.archive_file(layout, archive.EVENTS, in_landing)
        in_landing.unlink()
        # their device before they signed in, linked by an alias call, and events not loaded yet
        layout.profiles_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(layout.profiles_dir / "profiles-x.jsonl", orjson.dumps(
            {"message_id": "alias-1", "call": "alias", "tenant_id": tenant, "user_id": user,
             "anonymous_id": None, "previous_id": "anon-before-signup"}) + b"\n")
        at = datetime.combine(sample_day(0), datetime.min.time(), UTC) + timedelta(hours=8)
        views = page_views("late", 2, at, tenant)
        views[0].update(user_id=None, anonymous_id="anon-before-signup")
        land(layout, "events_not_loaded.jsonl", views)
        write_atomically(layout.quarantine_dir / "collector-x-quarantine.jsonl", orjson.dumps(
            {"received_at": "x", "where": "batch[0]", "field": "properties.path", "reason": "required",
             "event": {"type": "page", "userId": user, "messageId": "q1"}}) + b"\n")
        exported = exports.export(env.reports_site_dir, env.reports_exports_dir, [])
        users_page(exported.directory, [{"tenant_id": tenant, "user_id": user, "orders": orders},
                                        {"tenant_id": other_tenant, "user_id": other, "orders": 1}])
        untouched_export = {p: p.read_bytes() for p in exported.directory.glob("index/*")}
        kept = backup.take(backup.Sources(layout, "duckdb", env.mlflow_dir), env.backups_dir)
        replaced = layout.restore_dir / "20261101T000000000000Z" / "replaced-warehouse.duckdb"  # kept by a restore
        replaced.parent.mkdir(parents=True)
        shutil.copyfile(layout.warehouse, replaced)
        others_before = person_rows(layout, other_tenant, other)
        served_before = events_served(server, tenant)
        # the published lake holds them in its Parquet files (and in as many snapshots as it kept)
        published_dir = layout.root / "published"
        assert any(name.endswith(".parquet") for name in files_naming(published_dir, user))
        assert user.encode() in layout.warehouse.read_bytes()  # so the scan below can fail
        assert sum(person_rows(layout, tenant, user).values()) > 0

        # the admin API queues the request; only an admin may
        admin = {"Authorization": server.admin}
        url = f"{server.url}/v1/admin/erasures"
        assert httpx.post(url, json={"tenant": tenant, "user": user},
                          headers={"Authorization": server.token(tenant)}).status_code == 403
        refused = httpx.post(url, json={"tenant": tenant}, headers=admin)
        assert refused.status_code == 400 and refused.json()["error"].startswith("user:")
        queued = httpx.post(url, json={"tenant": tenant, "user": user}, headers=admin)
        assert queued.status_code == 202, queued.text
        request_id = queued.json()["id"]
        assert httpx.get(f"{url}/{request_id}", headers=admin).json()["status"] == "queued"
        assert httpx.get(f"{url}/{'0' * 32}", headers=admin).status_code == 404

        # the sensor hands it to the erasure job, which runs it
        from orchestration.assets.lifecycle import erasure_job, erasure_requests_sensor

        [run] = erasure_requests_sensor(dg.build_sensor_context())
        assert erasure_job.execute_in_process(run_config=run.run_config).success
    record = httpx.get(f"{url}/{request_id}", headers=admin).json()
    assert record["status"] == "erased" and record["removed"]["warehouse raw rows"] > 0, record
    assert record["requested_by"] == "admin API: admin" and "subjects" not in record

    # gone from the landing zone and its archive
    assert not any(needle in p.read_bytes() or b"anon-before-signup" in p.read_bytes()
                   for p in layout.landing.rglob("*.jsonl"))
    [archived] = [a for a in archive.archived(layout, archive.EVENTS) if a.name == in_landing.name]
    assert needle not in archive.contents(archived) and archived.erased_lines > 0
    # from the warehouse (an order's items too), everyone else's rows as they were
    assert set(person_rows(layout, tenant, user).values()) == {0}
    assert scalar(layout, f"select count(*) from raw_app.order_items where order_id in "
                          f"({', '.join('?' * len(order_ids))})", *order_ids) == 0
    assert person_rows(layout, other_tenant, other) == others_before
    # from the published data: a new snapshot without them; every older one expired and its files
    # deleted, so no file under published/ holds them (nor the warehouse's file)
    assert files_naming(published_dir, user) == [] and user.encode() not in layout.warehouse.read_bytes()
    assert user.encode() not in replaced.read_bytes()
    # the metrics server moved to it: the person's events are no longer counted
    assert events_served(server, tenant) < served_before
    conn, snapshot = snapshots.connect_current(published_dir)
    with conn:
        assert [r[0] for r in conn.execute("select snapshot_id from ducklake_snapshots('warehouse')").fetchall()] \
            == [snapshot.snapshot_id]
        assert conn.execute("select count(*) from marts.fct_events where user_id = ?", [user]).fetchone()[0] == 0
        assert conn.execute("select count(*) from marts.fct_events where user_id = ?", [other]).fetchone()[0] > 0
    # from the exports: their rows leave every file of the page, its PDF goes; other pages are untouched
    for frame in (pd.read_csv(exported.directory / "users" / "users.csv"),
                  pd.read_parquet(exported.directory / "users" / "users.parquet"),
                  pd.read_excel(exported.directory / "users.xlsx")):
        assert frame["user_id"].tolist() == [other]
    assert not (exported.directory / "users.pdf").exists()
    assert {p: p.read_bytes() for p in exported.directory.glob("index/*")} == untouched_export
    # from the backups, whose checksums still hold
    backup.verify(backup.backups(env.backups_dir)[0])
    with duckdb.connect() as conn:
        assert conn.execute("select count(*) from read_parquet(?) where user_id = ?",
                            [str(kept.path / "warehouse" / "marts_fct_events.parquet"), user]).fetchone()[0] == 0
    # an audit record, which never names them
    log = ErasureLog(layout.privacy_dir)
    assert [r["status"] for r in log.records()] == ["erased"] and needle not in log.path.read_bytes()

    # their late events stay out of the warehouse; everyone else's load
    land(layout, "events_late.jsonl", [{**page_views("after", 1, at, tenant)[0], "user_id": user},
                                       {**page_views("after", 2, at, tenant)[1], "user_id": other}])
    load(layout, pipelines.EVENTS)
    assert scalar(layout, "select count(*) from raw_events.events where user_id = ?", user) == 0
    assert scalar(layout, "select count(*) from raw_events.events where event_id = 'after-1'") == 1


def test_an_erase_request_for_an_unknown_user_says_so_and_changes_nothing(main_run, tmp_path):
    from orchestration.lifecycle.__main__ import main

    layout = DataLayout(copy_of(main_run[0], tmp_path))
    published = snapshots.current(layout.root / "published")
    before = (landing_digest(layout), scalar(layout, "select count(*) from raw_events.events"),
              scalar(layout, "select count(*) from marts.fct_events"))
    with platform_environment(layout.root), pytest.raises(SystemExit, match="unknown user: tenant 't001' has no "
                                                                            "user 'nobody-at-all'"):
        main(["erase", "--tenant", "t001", "--user", "nobody-at-all"])
    assert (landing_digest(layout), scalar(layout, "select count(*) from raw_events.events"),
            scalar(layout, "select count(*) from marts.fct_events")) == before
    assert snapshots.current(layout.root / "published") == published
    assert [r["status"] for r in ErasureLog(layout.privacy_dir).records()] == ["unknown_user"]


def test_on_postgres_the_rows_are_deleted_and_the_tables_rewritten(postgres, tmp_path):
    from orchestration.lifecycle.erasure import Erasure, Person, Request, _erase_warehouse, _warehouse_matches
    from semantic.warehouse import WarehouseTarget

    target = WarehouseTarget.from_environment({"DBT_TARGET": "postgres", **postgres}, tmp_path)
    with target.connect(read_only=False) as warehouse:
        warehouse.execute("create schema if not exists raw_erasure")
        warehouse.execute("create table raw_erasure.orders as select 't1' as tenant_id, 'u' || (i % 3) as user_id, "
                          "i as order_id from generate_series(1, 30) i")
        file_node = "select relfilenode from pg_class where oid = 'raw_erasure.orders'::regclass"
        before = warehouse.rows(file_node)[0][0]
        person = Person("t1", frozenset({"u1"}))
        erasure = Erasure(Request("t1", "u1", "test"), "erased")
        tables = {"raw_erasure.orders": ["tenant_id", "user_id", "order_id"]}
        _erase_warehouse(warehouse, _warehouse_matches(warehouse, tables, person), erasure)
        assert warehouse.rows("select user_id, count(*) from raw_erasure.orders group by 1 order by 1") \
            == [("u0", 10), ("u2", 10)]
        assert erasure.removed["warehouse raw rows"] == 10
        assert warehouse.rows(file_node)[0][0] != before  # VACUUM FULL wrote the table anew
        warehouse.execute("drop schema raw_erasure cascade")
