"""The same code on a bigger warehouse: DBT_TARGET=postgres runs the whole main job on a throwaway
PostgreSQL cluster (dlt loads, dbt builds and tests every model, the quality gates validate,
forecasts and insights are written, the marts are published with their rollups, the reports are
built), the metrics server answers from what was published there, and a micro-batch merges new
events into it. A server that is missing or cannot start is named in one line."""

from __future__ import annotations

import json
import socket
from decimal import Decimal

import duckdb
import psycopg2
import pytest

from ingestion.paths import DataLayout
from semantic.client import MetricsClient
from semantic.warehouse import Warehouse
from tests.ml.test_drivers import assert_the_cell_then_the_country, sessions_pushed_into_one_cell
from tests.orchestration.helpers import run_in_process, run_main_job
from tests.orchestration.test_microbatch import ARRIVED, land, page_views
from tests.postgres_cluster import INSTALL_HINT, ClusterError, cluster
from tests.semantic.conftest import start_server
from tests.semantic.test_export import DAILY, export, load, load_value, read_back

pytestmark = pytest.mark.postgres
QUALITY_CHECKS = 30


@pytest.fixture(scope="module")
def postgres_run(postgres, tmp_path_factory):
    """The main job as users run it, with DBT_TARGET=postgres."""
    data_dir = tmp_path_factory.mktemp("postgres") / "data"
    target = {**postgres, "DBT_TARGET": "postgres"}
    return data_dir, run_main_job(data_dir, target), target


def warehouse(postgres, sql: str) -> list[tuple]:
    with psycopg2.connect(host="127.0.0.1", port=postgres["PGPORT"], user="analytics", dbname="analytics") as conn:
        cursor = conn.cursor()
        cursor.execute(sql)
        return cursor.fetchall()


def test_main_job_runs_every_step_on_postgres(postgres, postgres_run):
    data_dir, out, _ = postgres_run
    assert "SUCCESS" in out and "FAILED step" not in out
    assert "warehouse (postgres): 127.0.0.1" in out
    assert f"quality gates (Great Expectations): {QUALITY_CHECKS} passed, 0 failed, 0 warned" in out
    # 3 tenants and the total; four metrics 28 days ahead, errors 14 (ml/series.py METRICS)
    assert "forecasts: 504 rows in ml.forecast_daily" in out and "insights:" in out
    assert "published for readers: data version " in out and "(analytics: published_*)" in out
    assert f"reports (Evidence): {data_dir / 'reports' / 'site'}" in out
    truth = json.loads(DataLayout(data_dir).ground_truth.read_text())
    assert warehouse(postgres, "select count(*), count(distinct event_id) from marts.fct_events") == [
        (truth["events"]["valid_events"],) * 2]
    assert warehouse(postgres, "select count(*) from marts.fct_sessions") == [(truth["app_db"]["sessions"],)]
    assert warehouse(postgres, "select count(*) from marts.metrics_daily") == [
        (truth["size"]["tenants"] * truth["size"]["days"],)]
    results = json.loads((data_dir / "dbt_results" / "dbt_models.json").read_text())
    assert set(results) == {"model_success", "seed_success", "test_pass", "unit_test_pass"}  # the events calendar
    forecast_marts = json.loads((data_dir / "dbt_results" / "dbt_forecast_marts.json").read_text())
    assert set(forecast_marts) == {"model_success", "test_pass", "unit_test_pass"}  # unit tests on the forecast marts
    # what readers see is a copy of what passed the gates, beside the rollups built from it
    assert warehouse(postgres, "select count(*) from published_marts.metrics_daily") == \
        warehouse(postgres, "select count(*) from marts.metrics_daily")
    assert warehouse(postgres, "select count(*) from published_quality.quality_results") == [(QUALITY_CHECKS,)]
    assert warehouse(postgres, "select name from published_rollups._catalog order by 1") == [
        ("daily_kpis",), ("orders_by_customer",)]
    # and the reports were built from those published tables
    reports_extract = sorted((data_dir / "published" / "reports").glob("warehouse-*.duckdb"))[-1]
    with duckdb.connect(str(reports_extract), read_only=True) as extract:
        assert extract.execute("select count(*) from marts.metrics_daily").fetchall() == \
            warehouse(postgres, "select count(*) from published_marts.metrics_daily")
    site_stamp = json.loads((data_dir / "reports" / "site" / "build.json").read_text())
    assert site_stamp["data_version"] == reports_extract.stem.removeprefix("warehouse-")


@pytest.fixture(scope="module")
def server_on_postgres(postgres_run, tmp_path_factory):
    data_dir, _, target = postgres_run
    yield from start_server(DataLayout(data_dir), tmp_path_factory.mktemp("pg-server") / "server.log",
                            extra_env=target)


def test_the_metrics_server_answers_from_what_was_published_in_postgres(postgres, server_on_postgres):
    revenue = {tenant: Decimal(str(total)).quantize(Decimal("0.01")) for tenant, total in warehouse(
        postgres, "select tenant_id, sum(revenue) from marts.metrics_daily group by 1")}
    with MetricsClient(server_on_postgres.url, server_on_postgres.admin) as client:
        served = client.load({"measures": ["metrics.revenue"], "dimensions": ["metrics.tenant"]}).results[0]
        compiled = client.load({"measures": ["metrics.revenue"], "dimensions": ["metrics.tenant__industry"]})
    assert served["dbType"] == "postgres" and list(served["usedPreAggregations"]) == ["rollups.daily_kpis"]
    assert {r["metrics.tenant"]: Decimal(r["metrics.revenue"]).quantize(Decimal("0.01"))
            for r in served["data"]} == revenue
    assert sum(Decimal(r["metrics.revenue"]) for r in compiled.rows) == sum(revenue.values())  # MetricFlow's SQL
    with MetricsClient(server_on_postgres.url, server_on_postgres.token("t002")) as tenant:
        assert [r["metrics.tenant"] for r in tenant.load(
            {"measures": ["metrics.revenue"], "dimensions": ["metrics.tenant"]}).rows] == ["t002"]


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_an_export_streams_what_load_returns_from_postgres(server_on_postgres, fmt):
    """Exports read PostgreSQL through a server-side cursor (`publication.py`), batch by batch."""
    query = {**DAILY, "limit": 40}
    response = export(server_on_postgres, query, fmt)
    assert response.status_code == 200, response.text
    rows, _ = read_back(fmt, response.content)
    expected = [{k: load_value(v) for k, v in row.items() if k != "orders.metric_time"}
                for row in load(server_on_postgres, query).json()["data"]]
    assert len(rows) == len(expected) == 40
    # PostgreSQL's numerics come back as Decimals of their own scale: compared to the cent's millionth
    assert [{k: round(v, 6) if isinstance(v, Decimal) else v for k, v in row.items()} for row in rows] == [
        {k: round(v, 6) if isinstance(v, Decimal) else v for k, v in row.items()} for row in expected]


def test_the_insights_drivers_are_computed_through_metricflow_on_postgres(postgres, postgres_run):
    """The drivers step's own path (`engine_on_warehouse` on the run's warehouse) on the PostgreSQL
    warehouse the main job built. The tiny sample flags no day, so the DuckDB test's changes are
    made here, in a transaction rolled back: the same cell, then the same country, named, through
    MetricFlow's SQL for PostgreSQL grouped by one dimension and by two."""
    connection = psycopg2.connect(host="127.0.0.1", port=postgres["PGPORT"], user="analytics", dbname="analytics")
    try:
        assert_the_cell_then_the_country(sessions_pushed_into_one_cell(Warehouse(connection, "postgres")))
    finally:
        connection.rollback()
        connection.close()


def test_a_micro_batch_merges_new_events_into_what_readers_see(postgres, postgres_run):
    data_dir, _, target = postgres_run
    before = warehouse(postgres, "select count(*) from published_marts.fct_events")[0][0]
    built = "select name, built_at from published_rollups._catalog order by name"
    rollups_before = dict(warehouse(postgres, built))
    land(DataLayout(data_dir), "collector-pg-000001.jsonl", page_views("pg", 40, ARRIVED))
    out = run_in_process(data_dir, target, job="events_microbatch_job")
    assert "events_microbatch_job run" in out and "SUCCESS" in out
    assert warehouse(postgres, "select count(*) from published_marts.fct_events")[0][0] == before + 40
    assert warehouse(postgres, "select count(*) from published_marts.fct_events where event_id like 'pg-%'") == [(40,)]
    assert warehouse(postgres, "select count(*) from published_meta.versions")[0][0] >= 2
    # the rollup over the orders, which the batch did not change, is kept as it was built
    rollups_after = dict(warehouse(postgres, built))
    assert rollups_after["orders_by_customer"] == rollups_before["orders_by_customer"]
    assert rollups_after["daily_kpis"] > rollups_before["daily_kpis"]
    # the rollup's days were recomputed from the new events' day on (through a temporary view of
    # fct_events from that day): its events add up to the published facts', tenant by tenant
    assert warehouse(postgres, "select tenant, sum(events) from published_rollups.daily_kpis group by 1 except "
                               "select tenant_id, count(*) from published_marts.fct_events group by 1") == []


def test_a_missing_server_is_named_in_one_line(tmp_path):
    with pytest.raises(ClusterError) as error, cluster(search=(str(tmp_path),)):
        pass
    assert str(error.value) == f"PostgreSQL's initdb was not found: {INSTALL_HINT}"


def test_a_server_that_cannot_start_says_why_and_does_not_hang():
    with socket.socket() as taken:  # the port is already in use
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ClusterError) as error, cluster(port=taken.getsockname()[1]):
            pass
    assert str(error.value).startswith("PostgreSQL server start failed: ") and "\n" not in str(error.value)
