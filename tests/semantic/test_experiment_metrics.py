"""Experiment metrics through the semantic layer, as BI tools read them: Cube's REST API and the
PostgreSQL-wire SQL endpoint, per tenant, equal to the same aggregates in SQL on the published marts."""

from __future__ import annotations

import psycopg
import pytest

from semantic.client import MetricsClient
from tests.ingestion.helpers import query as sql

MEASURES = ["experiment_users", "experiment_orders_per_user", "experiment_conversion_rate",
            "experiment_average_order_value"]


def _expected(published) -> dict[tuple[str, str], tuple]:
    rows = sql(published, "select experiment_id, variant, count(*), avg(orders), avg(converted), "
                          "sum(revenue) / nullif(sum(completed_orders), 0) "
                          "from marts.fct_experiment_outcomes group by 1, 2")
    return {(e, v): (n, float(o), float(c), None if a is None else float(a)) for e, v, n, o, c, a in rows}


def _close(got: tuple, expected: tuple) -> bool:
    return all((g is None and e is None) or float(g) == pytest.approx(e, rel=1e-9) for g, e in zip(got, expected,
                                                                                                 strict=True))


def test_experiment_metrics_by_variant_over_rest_for_the_experiments_tenant(server, published):
    expected = _expected(published)
    query = {"measures": [f"metrics.{m}" for m in MEASURES],
             "dimensions": ["metrics.experiment", "metrics.experiment_user__variant"]}
    with MetricsClient(server.url, server.token("t001")) as client:
        rows = client.load(query).rows
        assert client.load({"measures": ["metrics.experiment_users"],
                            "dimensions": ["metrics.experiment__experiment_name"]}).rows == [
            {"metrics.experiment__experiment_name": "One-page checkout", "metrics.experiment_users": str(
                sum(v[0] for v in expected.values()))}]
    got = {(r["metrics.experiment"], r["metrics.experiment_user__variant"]): tuple(r[f"metrics.{m}"] for m in MEASURES)
           for r in rows}
    assert set(got) == set(expected) == {("exp_01", "control"), ("exp_01", "treatment")}
    assert all(_close(got[key], expected[key]) for key in expected)
    with MetricsClient(server.url, server.token("t002")) as client:  # exp_01 is t001's
        assert client.load(query).rows == []


def test_experiment_metrics_over_the_sql_endpoint_for_one_tenant(sql_endpoint, published):
    expected = _expected(published)
    statement = (f"select experiment, experiment_user__variant, {', '.join(MEASURES)} from metrics "
                 "where experiment = %s order by 2")
    with psycopg.connect(host="127.0.0.1", port=sql_endpoint.port, user="bi", dbname="metrics",
                         password=sql_endpoint.token("t001")) as conn:
        rows = conn.execute(statement, ["exp_01"]).fetchall()
    assert [(e, v) for e, v, *_ in rows] == [("exp_01", "control"), ("exp_01", "treatment")]
    assert all(_close(tuple(values), expected[(e, v)]) for e, v, *values in rows)
    with psycopg.connect(host="127.0.0.1", port=sql_endpoint.port, user="bi", dbname="metrics",
                         password=sql_endpoint.token("t003")) as conn:
        assert conn.execute(statement, ["exp_01"]).fetchall() == []
