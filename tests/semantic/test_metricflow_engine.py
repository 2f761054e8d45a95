"""MetricFlow's Python engine on the DuckDB warehouse: it lists the governed metrics, compiles
queries without running them, and runs them to the same numbers as direct SQL."""

from __future__ import annotations

import duckdb
import pytest

from semantic.metricflow_engine import (
    MetricFlowEngine,
    MetricFlowQueryRequest,
    ReaderSqlClient,
    load_semantic_manifest,
)
from semantic.publication import DuckDbReader
from tests.ingestion.helpers import query


@pytest.fixture(scope="module")
def engine(built):
    """The engine on a read-only connection, closed afterwards: an open reader blocks any writer."""
    layout, _ = built
    connection = duckdb.connect(str(layout.warehouse), read_only=True)
    lookup = load_semantic_manifest(layout.root / "dbt-target" / "semantic_manifest.json")
    client = ReaderSqlClient(DuckDbReader(connection))
    yield layout, MetricFlowEngine(semantic_manifest_lookup=lookup, sql_client=client)
    connection.close()


def test_lists_the_governed_metrics(engine):
    _, mf = engine
    names = {m.name for m in mf.list_metrics()}
    assert {"revenue", "orders", "conversion_rate", "mrr", "churn_rate", "customer_acquisition_cost"} <= names


def test_explain_compiles_without_running(engine):
    _, mf = engine
    explained = mf.explain(MetricFlowQueryRequest.create(metric_names=["revenue"], group_by_names=["metric_time__day"]))
    sql = explained.sql_statement.sql
    assert "net_revenue" in sql and '"warehouse"."marts"."fct_orders"' in sql


def test_query_with_a_tenant_filter_equals_sql(engine):
    layout, mf = engine
    result = mf.query(MetricFlowQueryRequest.create(
        metric_names=["revenue", "sessions"],
        group_by_names=["metric_time__week"],
        where_constraints=["{{ Entity('tenant') }} = 't001'"],
    ))
    table = result.result_df
    week = table.column_names.index("metric_time__week")
    revenue = table.column_names.index("revenue")
    got = {str(row[week])[:10]: float(row[revenue] or 0) for row in table.rows}
    expected = {str(w): float(r) for w, r in query(layout, """
        select cast(date_trunc('week', date_day) as date), sum(revenue)
        from marts.metrics_daily where tenant_id = 't001' group by 1
    """)}
    assert got.keys() == expected.keys()
    assert all(got[w] == pytest.approx(expected[w], abs=0.01) for w in expected)


def test_an_unknown_metric_is_named_in_the_error(engine):
    _, mf = engine
    with pytest.raises(Exception, match="revenu") as failure:
        mf.query(MetricFlowQueryRequest.create(metric_names=["revenu"], group_by_names=["metric_time__day"]))
    assert "revenue" in str(failure.value)  # the closest governed metric is suggested
