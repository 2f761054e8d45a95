"""The live page, `GET /live` on the metrics server: today's totals and the last hour per minute of
the `live` view, updating by itself within a second of a publish.

It is built on Cube's official client (`@cubejs-client/core` with `@cubejs-client/ws-transport`,
locked in `semantic/live/package-lock.json`, bundled by esbuild into `semantic/live/dist/` by
`make live-page`: build output, never committed) and subscribes over the server's WebSocket
(`subscriptions.py`): the server pushes a result when a publish changes it, and the page polls
nothing.

Why the metrics server serves it rather than the reports site: the page is a client of this server's
WebSocket, so serving it from the same origin needs no URL of the API baked into a build, no CORS,
and works wherever the server is deployed (`make serve`); the reports site is a static build made
by the batch job and served by another process, and its pages read extracts of the warehouse, not
the live API. The page is static files: the server only hands them out, and answers 503 naming the
make target when they were not built.

Its token: open `/live#token=<JWT>` (a token as for the REST API: a tenant's, or an admin's for all
tenants; `issue_token`, see the README). The fragment is never sent to a server (not in a request,
a log or a Referer); the page keeps the token in the tab's sessionStorage for reloads and removes it
from the address bar. A wall screen left open needs a token valid long enough (at most
`SEMANTIC_TOKEN_MAX_SECONDS`): when it expires the server closes the socket with "Invalid token:
expired", and the page asks for a new one.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

PAGE_DIR = Path(__file__).with_name("live")
SCRIPT = PAGE_DIR / "dist" / "live.js"
HEADERS = {
    # the page's own files and its WebSocket only; its token is not sent anywhere else
    "Content-Security-Policy": "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


async def page(request: Request) -> Response:
    return FileResponse(PAGE_DIR / "index.html", headers=HEADERS)


async def stylesheet(request: Request) -> Response:
    return FileResponse(PAGE_DIR / "live.css", headers=HEADERS)


async def script(request: Request) -> Response:
    if not SCRIPT.exists():
        return PlainTextResponse(f"the live page's script is not built ({SCRIPT}): run `make live-page`", 503)
    return FileResponse(SCRIPT, media_type="text/javascript", headers=HEADERS)


def routes() -> list[Route]:
    return [Route("/live", page, methods=["GET"]), Route("/live/live.css", stylesheet, methods=["GET"]),
            Route("/live/live.js", script, methods=["GET"])]
