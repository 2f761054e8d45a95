"""Prometheus metrics of the metrics server and the SQL endpoint (prometheus-client).

Both serve the same families where they share a part (the metrics service: caches, queries, the
published data's age) and their own for their protocol, named as the collector names its own
(`collector_requests_total{route,status}`, `collector_request_seconds{route}`, `collector_errors_total`):

    semantic_http_requests_total{route,status}   REST requests by the status really sent
    semantic_http_request_seconds{route}         their latency
    semantic_http_errors_total{route,kind}       error replies: user_error, auth, rate_limited, unavailable, internal
    semantic_sql_connections_total{outcome}      SQL connections: opened, tls, authenticated, refused
    semantic_sql_open_connections                open SQL connections
    semantic_sql_statements_total{outcome}       statements run: ok or error
    semantic_sql_statement_seconds               their latency
    semantic_sql_errors_total{sqlstate}          every ErrorResponse sent, by SQLSTATE
    semantic_cache_lookups_total{cache,result}   hits and misses of the reply, result and compiled-SQL caches
    semantic_queries_total{source}               queries run on the published data: rollup or metricflow
    semantic_query_seconds{source}               their run time
    semantic_rate_limited_total{api}             requests or statements refused by a token's rate limit
    semantic_published_age_seconds               how old the published data being served is
    semantic_published_timestamp_seconds         when it was published (a Unix time)

The REST server exposes them at /metrics on its own port; the SQL endpoint on the HTTP port
`SEMANTIC_SQL_METRICS_PORT` (`ops_app`), beside /healthz. With several worker processes
(`python -m semantic.server --workers N`) the server sets `PROMETHEUS_MULTIPROC_DIR` and /metrics
sums every worker's counters, as the collector does.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import orjson
import yaml
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

HTTP_REQUESTS = Counter("semantic_http_requests", "REST requests by route and the HTTP status sent.",
                        ["route", "status"])
HTTP_LATENCY = Histogram("semantic_http_request_seconds", "Time to answer a REST request.", ["route"],
                         buckets=BUCKETS)
HTTP_ERRORS = Counter("semantic_http_errors", "REST error replies by route and kind (user_error, auth, "
                      "rate_limited, unavailable, internal).", ["route", "kind"])
SQL_CONNECTIONS = Counter("semantic_sql_connections", "SQL endpoint connections by outcome: opened, tls (upgraded), "
                          "authenticated, refused.", ["outcome"])
SQL_OPEN = Gauge("semantic_sql_open_connections", "Open SQL endpoint connections.", multiprocess_mode="livesum")
SQL_STATEMENTS = Counter("semantic_sql_statements", "Statements the SQL endpoint ran, by outcome (ok, error).",
                         ["outcome"])
SQL_LATENCY = Histogram("semantic_sql_statement_seconds", "Time to run a statement on the SQL endpoint.",
                        buckets=BUCKETS)
SQL_ERRORS = Counter("semantic_sql_errors", "ErrorResponses the SQL endpoint sent, by SQLSTATE.", ["sqlstate"])
CACHE_LOOKUPS = Counter("semantic_cache_lookups", "Cache lookups by cache (replies, results, compiled_sql) and "
                        "result (hit, miss).", ["cache", "result"])
QUERIES = Counter("semantic_queries", "Queries run on the published data, by what answered: a rollup or "
                  "MetricFlow's SQL on the marts.", ["source"])
QUERY_SECONDS = Histogram("semantic_query_seconds", "Time to run a query on the published data.", ["source"],
                          buckets=BUCKETS)
RATE_LIMITED = Counter("semantic_rate_limited", "Requests (rest) or statements (sql) refused by a token's "
                       "rate limit.", ["api"])

ERROR_KINDS = {400: "user_error", 403: "auth", 429: "rate_limited", 503: "unavailable"}
OPENAPI_DIR = Path(__file__).with_name("openapi")


def openapi_json(name: str) -> bytes:
    """An API description of `semantic/openapi/` as JSON (the files are YAML, to be read by people)."""
    return orjson.dumps(yaml.safe_load((OPENAPI_DIR / name).read_text()))


def cache_counters(cache: str) -> tuple:
    """The (hit, miss) counters of one cache, bound once: a lookup costs one increment."""
    return CACHE_LOOKUPS.labels(cache, "hit"), CACHE_LOOKUPS.labels(cache, "miss")


def record_query(rollup: str | None, seconds: float) -> None:
    source = "metricflow" if rollup is None else "rollup"
    QUERIES.labels(source).inc()
    QUERY_SECONDS.labels(source).observe(seconds)


class PublishedAge(Collector):
    """The age of the data being served, computed when scraped (the same in every worker)."""

    def __init__(self, service):
        self.service = service

    def collect(self):
        age = GaugeMetricFamily("semantic_published_age_seconds", "Seconds since the data being served was "
                                "published (absent before anything is).")
        stamp = GaugeMetricFamily("semantic_published_timestamp_seconds", "When the data being served was "
                                  "published, as a Unix time.")
        try:
            published = self.service.current().published_at.timestamp()
        except FileNotFoundError:
            return
        age.add_metric([], max(0.0, time.time() - published))
        stamp.add_metric([], published)
        yield age
        yield stamp


def render(service) -> tuple[bytes, str]:
    """The metrics page: this process's metrics (every worker's, in multiprocess mode) and the
    published data's age."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(ThisProcess())
    registry.register(PublishedAge(service))
    return generate_latest(registry), CONTENT_TYPE_LATEST


class ThisProcess(Collector):
    """The metrics of prometheus-client's default registry (this process's), in a registry of the scrape."""

    def collect(self):
        return REGISTRY.collect()


def metrics_endpoint(service):
    async def metrics(request: Request) -> Response:
        body, content_type = render(service)
        return Response(body, media_type=content_type)
    return metrics


class HttpMetrics:
    """ASGI middleware: count each request under its route and the status actually sent, and time it."""

    def __init__(self, app, routes: set[str]):
        self.app, self.routes = app, routes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = scope["path"] if scope["path"] in self.routes else "other"
        status = 500
        started = time.perf_counter()

        async def counting_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            HTTP_REQUESTS.labels(route, str(status)).inc()
            HTTP_LATENCY.labels(route).observe(time.perf_counter() - started)
            if status >= 400:
                HTTP_ERRORS.labels(route, ERROR_KINDS.get(status, "internal" if status >= 500 else "other")).inc()


def ops_app(service) -> Starlette:
    """The SQL endpoint's HTTP side: /metrics, /healthz (whether published data can be read) and
    /openapi.json."""
    description = openapi_json("sql_ops.yaml")

    async def healthz(request: Request) -> Response:
        try:
            version = service.current()
        except FileNotFoundError as exc:
            return Response(orjson.dumps({"status": "down", "error": str(exc)}), 503, media_type="application/json")
        age = time.time() - version.published_at.timestamp()
        return Response(orjson.dumps({"status": "ok", "dataVersion": version.version,
                                      "publishedAgeSeconds": round(age, 1)}), media_type="application/json")

    async def openapi(request: Request) -> Response:
        return Response(description, media_type="application/json")

    return Starlette(routes=[Route("/metrics", metrics_endpoint(service), methods=["GET"]),
                             Route("/healthz", healthz, methods=["GET"]),
                             Route("/openapi.json", openapi, methods=["GET"])])
