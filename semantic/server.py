"""The metrics server: Cube's REST API over the governed metrics (`python -m semantic.server`).

Routes, as Cube serves them under `/cubejs-api`:

- `GET|POST /cubejs-api/v1/load`: run queries (`query` in the URL or the JSON body; `queryType=multi`
  wraps the results as Cube's client expects). A query still running after `SEMANTIC_CONTINUE_WAIT`
  seconds (10, as Cube) is answered `{"error": "Continue wait"}`; the client asks again and picks up
  the same execution.
- `GET /cubejs-api/v1/meta`, `GET|POST /cubejs-api/v1/sql`, `GET|POST /cubejs-api/v1/dry-run`.
- `GET|POST /cubejs-api/v1/export?format=csv|xlsx|parquet|json`: one query's rows as a file, streamed
  (`export.py`); the query is taken, checked and scoped to the token's tenant as /load does. Without a
  `limit` every row is exported, and a result over `SEMANTIC_EXPORT_MAX_ROWS` rows is refused (400,
  the limit named) before anything is sent; it waits for the result (no "Continue wait").
- `POST /cubejs-api/v1/question`: `{"question": "...", "timezone"?: "..."}` answered with the governed
  metrics for the token's tenant (`semantic/questions/`): the query it ran, the numbers, a sentence.
- `GET /livez`, `GET /readyz` (ready once a published snapshot can be read).
- `POST /v1/admin/erasures`, `GET /v1/admin/erasures/{id}`: erasure requests, for admins (`admin.py`).
- `GET /metrics` (Prometheus), `GET /openapi.json` (this API's description), `GET /status` and
  `GET /status.json` (the platform's status page, `status.py`), added with the audit log and
  per-token rate limits by `guards.py` around the served app.
- WebSockets on any path, as Cube listens for `@cubejs-client/ws-transport`: `load`, `subscribe`
  (a new result pushed whenever a publish changes it) and `meta` (see `subscriptions.py`).
- `GET /live`: the live page, built on those subscriptions (see `live_page.py`).

Errors have Cube's shape: 400 `{"error": ..., "type": "UserError"}`, 403 `{"error": ...}`.
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import functools
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from pathlib import Path

import anyio
import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute

from semantic import admin, export, live_page, rollups
from semantic.auth import AuthError, SecurityContext, authenticate
from semantic.cube_query import Plan, QueryError, Translator, date_range, query_now
from semantic.guards import guarded
from semantic.members import UnknownMember
from semantic.questions import Asker
from semantic.service import LRU, MetricsService, Result
from semantic.settings import (
    DEFAULT_EXPORT_MAX_ROWS,
    DEFAULT_TOKEN_MAX_SECONDS,
    LOOPBACK_ORIGINS,
    SHUTDOWN_SECONDS,
    ServingSettings,
    SettingsError,
    SubscriptionLimits,
    stop_on_sigterm,
)
from semantic.subscriptions import Subscriptions

DEFAULT_CONTINUE_WAIT = 10.0
MAX_QUERY_HEADER = 4096  # an export's X-Query header is left out past this many characters
EXPORT_HEADERS = ["Content-Disposition", "X-Data-Version", "X-Query", "X-Row-Count"]
log = logging.getLogger(__name__)


def _json(body, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _user_error(message: str) -> Response:
    return _json({"error": message, "type": "UserError"}, 400)


async def _query_of(request: Request) -> tuple[object, str | None]:
    """The query and queryType from the URL (GET) or the JSON body (POST)."""
    if request.method == "GET":
        raw, query_type = request.query_params.get("query"), request.query_params.get("queryType")
        if raw is None:
            raise QueryError("query: missing (pass ?query=<JSON>)")
        try:
            return orjson.loads(raw), query_type
        except orjson.JSONDecodeError as exc:
            raise QueryError(f"query: not valid JSON ({exc})") from None
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise QueryError(f"body: not valid JSON ({exc})") from None
    if not isinstance(body, dict) or "query" not in body:
        raise QueryError("body: expected a JSON object with a query")
    query = body["query"]
    if isinstance(query, str):
        try:
            query = orjson.loads(query)
        except orjson.JSONDecodeError as exc:
            raise QueryError(f"query: not valid JSON ({exc})") from None
    return query, body.get("queryType") or request.query_params.get("queryType")


def _now_key(query) -> tuple:
    """The minute(s) the query's relative date ranges count from, in its time zone(s)."""
    queries = query if isinstance(query, list) else [query]
    return tuple(query_now(q).replace(second=0, microsecond=0) for q in queries if isinstance(q, dict))


def cube_errors(handler):
    """Cube's error replies: 403 for a refused token, 400 UserError for a bad query, 503 before any data."""
    @functools.wraps(handler)
    async def answer(self, request: Request) -> Response:
        try:
            return await handler(self, request)
        except AuthError as exc:
            return _json({"error": str(exc)}, 403)
        except (QueryError, UnknownMember) as exc:
            return _user_error(str(exc))
        except FileNotFoundError as exc:
            return _json({"error": str(exc)}, 503)
        except Exception as exc:  # a fault of ours: say so in Cube's shape, so clients stop waiting
            log.exception("internal error answering %s", request.url.path)
            return _json({"error": f"internal error: {type(exc).__name__}: {exc}"}, 500)

    return answer


async def _streamed(chunks: Iterator[bytes], close: Callable[[], None]) -> AsyncIterator[bytes]:
    """Each chunk made in a thread (reading the engine and writing the file block), and the read
    ended however the response ends, a client that went away included."""
    try:
        while (chunk := await anyio.to_thread.run_sync(next, chunks, None)) is not None:
            yield chunk
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(_close, chunks, close)


def _close(chunks: Iterator[bytes], close: Callable[[], None]) -> None:
    try:
        chunks.close()  # type: ignore[attr-defined]  (a generator: its temporary file goes)
    finally:
        close()


class Api:
    def __init__(self, service: MetricsService, secret: str, continue_wait: float,
                 max_token_seconds: int = DEFAULT_TOKEN_MAX_SECONDS, asker: Asker | None = None,
                 export_max_rows: int = DEFAULT_EXPORT_MAX_ROWS):
        self.service, self.secret, self.continue_wait = service, secret, continue_wait
        self.export_max_rows = export_max_rows
        self.asker = asker or Asker(service)
        self.max_token_seconds = max_token_seconds
        self.replies = LRU(4096, "replies")  # finished replies, by request text and security context and data version

    async def _context(self, request: Request) -> SecurityContext:
        # in a thread: a token naming an unknown kid reads the key sets again, which may fetch a URL
        context = await asyncio.to_thread(self.authorize, request.headers.get("authorization"))
        request.state.security_context = context  # who asked, for the audit log (`audit.py`)
        return context

    def authorize(self, token: str | None) -> SecurityContext:
        """The security context of a token (an `Authorization` header's value), or AuthError."""
        context = authenticate(token, self.secret, self.max_token_seconds)
        if context.tenant_id is not None and context.tenant_id not in self.service.current().tenants:
            raise AuthError(f"Invalid token: tenant {context.tenant_id!r} is not one the published data knows")
        return context

    def expand(self, query, context: SecurityContext,
               max_rows: int | None = None) -> tuple[str, list[tuple[dict, Plan]]]:
        """One query, a list of queries, or a compareDateRange query, as (queryType, [(query, plan)]);
        `max_rows`: the largest limit, and the limit without one (exports), instead of Cube's."""
        translator = (Translator(self.service.catalog, context.tenant_id) if max_rows is None
                      else Translator(self.service.catalog, context.tenant_id, max_rows, max_rows))
        if isinstance(query, list):
            if not query:
                raise QueryError("query: an empty list of queries")
            return "blendingQuery", [(q, translator.plan(q)) for q in query]
        if not isinstance(query, dict):
            raise QueryError(f"query: expected a JSON object, got {type(query).__name__}")
        compare = [td for td in query.get("timeDimensions", []) if isinstance(td, dict) and "compareDateRange" in td]
        if not compare:
            return "regularQuery", [(query, translator.plan(query))]
        ranges = compare[0]["compareDateRange"]
        if not isinstance(ranges, list) or len(ranges) < 2:
            raise QueryError("timeDimensions[].compareDateRange: expected a list of at least two date ranges")
        expanded = []
        now = query_now(query)
        for i, value in enumerate(ranges):
            resolved = date_range(value, now, f"timeDimensions[].compareDateRange[{i}]")
            tds = [{**{k: v for k, v in td.items() if k != "compareDateRange"},
                    "dateRange": resolved.echoed()} if td is compare[0] else td
                   for td in query["timeDimensions"]]
            one = {**query, "timeDimensions": tds}
            expanded.append((one, translator.plan(one)))
        return "compareDateRangeQuery", expanded

    def _annotation(self, plan: Plan) -> dict:
        catalog = self.service.catalog
        annotation = {"measures": {}, "dimensions": {}, "segments": {}, "timeDimensions": {}}
        for column in plan.columns:
            base = catalog.member(column.member, "annotation")
            for key in column.keys:
                entry = {"title": base.title, "shortTitle": base.title,
                         "type": "number" if column.kind == "measure" else base.type}
                if column.kind == "measure":
                    entry |= {"drillMembers": [], "drillMembersGrouped": {"measures": [], "dimensions": []}}
                section = {"measure": "measures", "dimension": "dimensions", "time": "timeDimensions"}[column.kind]
                annotation[section][key] = entry
        return annotation

    @staticmethod
    def _normalized(query: dict, plan: Plan, query_type: str) -> dict:
        """The query as Cube echoes it: date ranges resolved (as the plan resolved them), limits filled in."""
        tds = []
        for td, resolved in zip(query.get("timeDimensions", []), plan.date_ranges, strict=True):
            td = dict(td)
            if resolved is not None:
                td["dateRange"] = resolved.echoed()
            tds.append(td)
        return {**query, "timeDimensions": tds, "measures": query.get("measures", []),
                "dimensions": query.get("dimensions", []), "filters": query.get("filters", []),
                "order": query.get("order", []), "limit": plan.limit, "rowLimit": plan.limit,
                "timezone": plan.timezone, "queryType": query_type}

    def _reply(self, query: dict, plan: Plan, result: Result, query_type: str) -> dict:
        return {
            "query": self._normalized(query, plan, query_type),
            "data": result.rows,
            "lastRefreshTime": result.published_at.isoformat().replace("+00:00", "Z"),
            "annotation": self._annotation(plan),
            "dataSource": "default", "dbType": result.engine, "extDbType": result.engine, "external": False,
            "slowQuery": False, "total": result.total, "refreshKeyValues": [[{"data_version": result.data_version}]],
            "usedPreAggregations": {} if result.rollup is None else {
                rollups.table_name(result.rollup): {"targetTableName": rollups.table_name(result.rollup),
                                                    "refreshKeyValues": [], "lastUpdatedAt": result.data_version}},
        }

    @cube_errors
    async def load(self, request: Request) -> Response:
        context = await self._context(request)
        query, wanted = await _query_of(request)
        # A repeated request (same text, same rows visible, same data, same day for relative ranges)
        # gets the reply already made: dashboards ask the same queries again and again.
        raw = request.query_params.get("query") if request.method == "GET" else await request.body()
        key = (raw, wanted, context.cache_key, self.service.current().version, _now_key(query))
        cached = self.replies.get(key)
        if cached is not None:
            return Response(cached, media_type="application/json")
        query_type, plans = self.expand(query, context)
        futures = [self.service.submit(plan, context.cache_key) for _, plan in plans]
        try:
            results = await self._wait(futures)
        except TimeoutError:
            return _json({"error": "Continue wait"})
        encoded = orjson.dumps(self.body(query_type, plans, results, wanted))
        self.replies.put(key, encoded)
        return Response(encoded, media_type="application/json")

    def body(self, query_type: str, plans: list[tuple[dict, Plan]], results: list[Result], wanted: str | None) -> dict:
        """A load's reply: the results of the expanded query, wrapped for `queryType=multi`."""
        replies = [self._reply(q, plan, result, query_type) for (q, plan), result in zip(plans, results, strict=True)]
        if wanted == "multi":
            first_query, first_plan = plans[0]
            return {"queryType": query_type, "results": replies,
                    "pivotQuery": self._normalized(first_query, first_plan, query_type), "slowQuery": False}
        if query_type != "regularQuery":
            raise QueryError(f"{query_type} needs queryType=multi")
        return replies[0]

    async def _wait(self, futures: list) -> list[Result]:
        """The results, waiting at most the continue-wait time; the executions go on regardless."""
        if all(f.done() for f in futures):  # cached or just finished: no need to wait for the loop
            return [f.result() for f in futures]
        waiting = asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
        try:
            return await asyncio.wait_for(asyncio.shield(waiting), timeout=self.continue_wait)
        except TimeoutError:
            waiting.add_done_callback(lambda fut: fut.exception())  # retrieved: no "never retrieved" noise
            raise

    @cube_errors
    async def export(self, request: Request) -> Response:
        """One query's rows as a file (`export.py`), streamed; the query parsed, checked and scoped
        to the token's tenant by the code /load runs."""
        context = await self._context(request)
        name = export.format_of(request.query_params.get("format"))
        form = export.FORMATS[name]
        query, _ = await _query_of(request)
        query_type, plans = self.expand(query, context, self.export_max_rows)
        if query_type != "regularQuery":
            raise QueryError(f"query: an export holds the rows of one query, not a {query_type}")
        [(one, plan)] = plans
        limits = [(self.export_max_rows,
                   f"the limit of {self.export_max_rows:,} rows per export (SEMANTIC_EXPORT_MAX_ROWS)")]
        limit = min([*limits, *([form.max_rows] if form.max_rows else [])])
        # a limit the query set within every maximum needs no count: it bounds the rows itself
        checked = limit if one.get("limit") is None or plan.limit > limit[0] else None
        stream = await asyncio.get_running_loop().run_in_executor(
            self.service.pool, self.service.stream, plan, context.cache_key, checked)
        about = export.About(self._normalized(one, plan, query_type), stream.data_version, stream.published_at,
                             context.tenant_id, export.titles(plan, self.service.catalog))
        running = export.Export(stream, plan, about)
        request.state.export = running  # its rows, for the audit log
        facts = about.facts()
        headers = {"Content-Disposition": f'attachment; filename="{export.file_name(plan, about, name)}"',
                   "X-Data-Version": about.data_version, "Cache-Control": "no-store",
                   "Last-Modified": email.utils.format_datetime(about.published_at, usegmt=True)}
        if len(facts["query"]) <= MAX_QUERY_HEADER:
            headers["X-Query"] = facts["query"]
        if stream.rows is not None:
            headers["X-Row-Count"] = str(stream.rows)
        return StreamingResponse(_streamed(form.write(running), stream.close), media_type=form.media_type,
                                 headers=headers)

    @cube_errors
    async def meta(self, request: Request) -> Response:
        await self._context(request)
        return _json(self.service.catalog.meta())

    @cube_errors
    async def sql(self, request: Request) -> Response:
        context = await self._context(request)
        query, _ = await _query_of(request)
        _, plans = self.expand(query, context)
        loop = asyncio.get_running_loop()
        sqls = [await loop.run_in_executor(self.service.pool, self.service.sql, plan, context.cache_key)
                for _, plan in plans]
        replies = [{"sql": [sql, []], "order": [[c, "desc" if d else "asc"] for c, d in plan.order],
                    "aliasNameToMember": {c.source: c.member for c in plan.columns},
                    "external": False, "dataSource": "default",
                    "preAggregations": [] if rollup is None else [{
                        "preAggregationId": rollups.table_name(rollup), "tableName": rollups.table_name(rollup),
                        "type": "rollup"}],
                    "rollupMatchResults": [], "cacheKeyQueries": [], "timeDimensionAlias": None}
                   for (sql, rollup), (_, plan) in zip(sqls, plans, strict=True)]
        return _json({"sql": replies[0]} if len(replies) == 1 else {"sql": replies})

    @cube_errors
    async def dry_run(self, request: Request) -> Response:
        context = await self._context(request)
        query, _ = await _query_of(request)
        query_type, plans = self.expand(query, context)
        loop = asyncio.get_running_loop()
        for _, plan in plans:
            await loop.run_in_executor(self.service.pool, self.service.dry_run, plan, context.cache_key)
        normalized = [self._normalized(q, plan, query_type) for q, plan in plans]
        return _json({"queryType": query_type, "normalizedQueries": normalized, "pivotQuery": normalized[0],
                      "queryOrder": [{k: v} for k, v in (normalized[0].get("order") or [])]
                      if isinstance(normalized[0].get("order"), list) else []})

    @cube_errors
    async def question(self, request: Request) -> Response:
        context = await self._context(request)
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            raise QueryError(f"body: not valid JSON ({exc})") from None
        if not isinstance(body, dict) or "question" not in body:
            raise QueryError('body: expected a JSON object with a question ({"question": "revenue last month"})')
        ask = functools.partial(self.asker.ask, body["question"], context, body.get("timezone") or "UTC")
        return _json(await asyncio.get_running_loop().run_in_executor(None, ask))

    async def livez(self, request: Request) -> Response:
        return _json({"health": "HEALTH"})

    async def readyz(self, request: Request) -> Response:
        try:
            version = self.service.current()
        except FileNotFoundError as exc:
            return _json({"health": "DOWN", "error": str(exc)}, 503)
        return _json({"health": "HEALTH", "dataVersion": version.version})


def create_app(service: MetricsService, secret: str, continue_wait: float = DEFAULT_CONTINUE_WAIT,
               max_token_seconds: int = DEFAULT_TOKEN_MAX_SECONDS,
               subscription_limits: SubscriptionLimits | None = None, now: datetime | None = None,
               cors_origins: str = LOOPBACK_ORIGINS, data_dir: Path | None = None,
               export_max_rows: int = DEFAULT_EXPORT_MAX_ROWS) -> Starlette:
    """The app; `now` is what questions' relative dates count from (None: the clock), `cors_origins`
    (a regular expression) the web origins whose pages may call it from a browser, `data_dir` where
    erasure requests are queued (the admin routes; none without it), `export_max_rows` the most rows
    an export may have."""
    api = Api(service, secret, continue_wait, max_token_seconds, Asker(service, now), export_max_rows)
    subscriptions = Subscriptions(api, subscription_limits or SubscriptionLimits())
    base = "/cubejs-api/v1"
    cors = Middleware(CORSMiddleware, allow_origin_regex=cors_origins, allow_methods=["GET", "POST"],
                      allow_headers=["Authorization", "Content-Type"], expose_headers=EXPORT_HEADERS, max_age=600)
    return Starlette(middleware=[cors], routes=[
        Route(f"{base}/load", api.load, methods=["GET", "POST"]),
        Route(f"{base}/meta", api.meta, methods=["GET"]),
        Route(f"{base}/sql", api.sql, methods=["GET", "POST"]),
        Route(f"{base}/dry-run", api.dry_run, methods=["GET", "POST"]),
        Route(f"{base}/export", api.export, methods=["GET", "POST"]),
        Route(f"{base}/question", api.question, methods=["POST"]),
        Route("/livez", api.livez, methods=["GET"]),
        Route("/readyz", api.readyz, methods=["GET"]),
        *(admin.routes(data_dir, secret, max_token_seconds) if data_dir is not None else []),
        *live_page.routes(),
        WebSocketRoute("/{path:path}", subscriptions.serve),
    ])


def app_from_environment() -> Starlette:
    """The app as uvicorn loads it (`semantic.server:app_from_environment`, factory)."""
    settings = ServingSettings.from_environment()
    service = settings.service()
    return guarded(create_app(service, settings.keys, settings.continue_wait, settings.max_token_seconds,
                              settings.subscriptions, settings.now, settings.cors_origins, settings.data_dir,
                              settings.export_max_rows),
                   service, settings)


WORKER_START_SECONDS = 60  # also how long a hung worker goes unnoticed


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="Serve the governed metrics over Cube's REST API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4000)
    parser.add_argument("--workers", type=int, default=1,
                        help="processes: compiling a query holds the GIL, so cold queries scale with processes")
    args = parser.parse_args()
    try:
        settings = ServingSettings.from_environment()  # fail at start, not at the first request, on a bad setting
    except (SettingsError, ValueError) as exc:
        raise SystemExit(f"metrics server: {exc}") from None
    stop_on_sigterm()
    with tempfile.TemporaryDirectory(prefix="semantic-metrics-") as metrics_dir:
        if args.workers > 1:  # /metrics sums every worker's counters (prometheus-client's multiprocess mode)
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        uvicorn.run("semantic.server:app_from_environment", factory=True, host=args.host, port=args.port,
                    workers=args.workers, log_level="warning",
                    **(settings.tls.uvicorn_options() if settings.tls else {}),
                    # a worker imports MetricFlow before it answers uvicorn's health pings: more than the
                    # default 5 s on a busy machine, and a worker that does not answer is killed and restarted
                    timeout_worker_healthcheck=WORKER_START_SECONDS,
                    timeout_graceful_shutdown=SHUTDOWN_SECONDS)


if __name__ == "__main__":
    main()
