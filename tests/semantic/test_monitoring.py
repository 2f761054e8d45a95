"""Monitoring of the metrics server and the SQL endpoint: their Prometheus metrics (requests, latency,
errors, cache hits, rate limits, the published data's age) scraped as Prometheus does, the SQL
endpoint's /healthz, and schemathesis run against the OpenAPI description each HTTP side serves."""

from __future__ import annotations

import httpx
import orjson
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.openapi_conformance import check_conformance

REVENUE = {"measures": ["orders.revenue"], "dimensions": ["orders.tenant"]}


def scrape(url: str, verify) -> dict[tuple[str, tuple], float]:
    """A /metrics page as {(sample name, sorted labels): value}, parsed by prometheus-client's parser."""
    reply = httpx.get(f"{url}/metrics", verify=verify, timeout=30)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(reply.text) for sample in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_the_metrics_server_counts_requests_errors_latency_cache_hits_and_the_published_age(secured):
    rest, token = secured.rest, secured.keys.token("idp-file")
    before = scrape(rest.url, rest.verify)
    for _ in range(2):  # the second is answered from the reply cache
        reply = httpx.get(f"{rest.url}/cubejs-api/v1/load", headers={"Authorization": token},
                          params={"query": orjson.dumps(REVENUE).decode()}, verify=rest.verify, timeout=30)
        assert reply.status_code == 200
    assert httpx.get(f"{rest.url}/cubejs-api/v1/meta", headers={"Authorization": "nope"},
                     verify=rest.verify).status_code == 403
    bad = httpx.get(f"{rest.url}/cubejs-api/v1/load", headers={"Authorization": token}, verify=rest.verify,
                    params={"query": orjson.dumps({"measures": ["orders.no_such_measure"]}).decode()})
    assert bad.status_code == 400
    after = scrape(rest.url, rest.verify)

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    load = "/cubejs-api/v1/load"
    assert grew("semantic_http_requests_total", route=load, status="200") == 2
    assert grew("semantic_http_requests_total", route=load, status="400") == 1
    assert grew("semantic_http_errors_total", route=load, kind="user_error") == 1
    assert grew("semantic_http_errors_total", route="/cubejs-api/v1/meta", kind="auth") == 1
    assert grew("semantic_http_request_seconds_count", route=load) == 3
    assert grew("semantic_cache_lookups_total", cache="replies", result="hit") >= 1
    assert value(after, "semantic_published_age_seconds") > 0
    assert value(after, "semantic_published_timestamp_seconds") > 1.7e9
    token_past_limit = secured.keys.token("idp-url")
    statuses = [httpx.get(f"{rest.url}/cubejs-api/v1/meta", headers={"Authorization": token_past_limit},
                          verify=rest.verify).status_code for _ in range(9)]
    assert statuses[-1] == 429
    limited = scrape(rest.url, rest.verify)
    assert value(limited, "semantic_rate_limited_total", api="rest") - value(after, "semantic_rate_limited_total",
                                                                              api="rest") == 1
    assert value(limited, "semantic_http_errors_total", route="/cubejs-api/v1/meta", kind="rate_limited") >= 1


def test_the_sql_endpoint_counts_connections_statements_and_errors_by_sqlstate(secured):
    verify = str(secured.certificate.cert)
    before = scrape(secured.metrics_url, verify)
    with psycopg.connect(host="127.0.0.1", port=secured.sql.port, user="bi", dbname="metrics",
                         password=secured.keys.token("hs-2026"), sslmode="verify-full",
                         sslrootcert=verify, autocommit=True, connect_timeout=60) as conn:
        conn.execute("select tenant, revenue from orders").fetchall()
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("select * from no_such_table")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host="127.0.0.1", port=secured.sql.port, user="bi", password="not-a-token",
                        sslmode="require", connect_timeout=60)
    after = scrape(secured.metrics_url, verify)

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("semantic_sql_connections_total", outcome="opened") >= 2
    assert grew("semantic_sql_connections_total", outcome="tls") >= 2
    assert grew("semantic_sql_connections_total", outcome="authenticated") >= 1
    assert grew("semantic_sql_connections_total", outcome="refused") >= 1
    assert grew("semantic_sql_statements_total", outcome="ok") >= 1
    assert grew("semantic_sql_statements_total", outcome="error") >= 1
    assert grew("semantic_sql_errors_total", sqlstate="42P01") == 1
    assert grew("semantic_sql_statement_seconds_count") >= 1
    assert value(after, "semantic_published_age_seconds") > 0
    health = httpx.get(f"{secured.metrics_url}/healthz", verify=verify).json()
    assert health["status"] == "ok" and health["dataVersion"] and health["publishedAgeSeconds"] >= 0


def test_the_rest_api_answers_as_its_openapi_description_says(server):
    """Generated queries and bodies with an admin token: 200, or 400 naming the fault; never 5xx."""
    checked = check_conformance(server.url, headers={"Authorization": server.admin})
    assert {"GET /cubejs-api/v1/load", "POST /cubejs-api/v1/load", "GET /cubejs-api/v1/meta",
            "POST /cubejs-api/v1/dry-run", "GET /cubejs-api/v1/export", "POST /cubejs-api/v1/export",
            "GET /readyz", "GET /metrics"} <= set(checked)


def test_the_sql_endpoints_http_side_answers_as_its_openapi_description_says(secured):
    checked = check_conformance(secured.metrics_url, verify=str(secured.certificate.cert))
    assert {"GET /metrics", "GET /healthz"} <= set(checked)
