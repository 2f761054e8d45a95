"""What surrounds the REST API in a served process: /metrics, /openapi.json and the status page
(`status.py`), every request counted
and timed (`monitoring`), logged (`audit`) and held to its token's rate limit (`limits`).

Pure ASGI middlewares around the app `server.create_app` builds, so that the API's own code stays
about Cube's protocol. The order, outermost first: metrics (they count the 429s and every status
really sent), audit (refused requests are logged too), rate limit.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from semantic import monitoring, status
from semantic.audit import AuditLog, AuditRequests
from semantic.limits import RateLimit, TokenLimits
from semantic.settings import ServingSettings


def guarded(app: Starlette, service, settings: ServingSettings) -> Starlette:
    description = monitoring.openapi_json("rest.yaml")

    async def openapi(request: Request) -> Response:
        return Response(description, media_type="application/json")

    app.add_route("/metrics", monitoring.metrics_endpoint(service), methods=["GET"])
    app.add_route("/openapi.json", openapi, methods=["GET"])
    status_json, status_page = status.routes(service, settings)
    app.add_route("/status.json", status_json, methods=["GET"])
    app.add_route("/status", status_page, methods=["GET"])
    app.add_middleware(RateLimit, limits=TokenLimits(settings.rate_limit))
    app.add_middleware(AuditRequests, audit=AuditLog(settings.audit_dir))
    app.add_middleware(monitoring.HttpMetrics, routes={route.path for route in app.routes})
    return app
