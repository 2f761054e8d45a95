"""The governed metrics for AI agents: an MCP server on the official `mcp` SDK (`python -m semantic.mcp_server`).

Tools, all read-only (a bad argument is a tool error whose text names the field at fault, for the
model to correct), over the same layer as the REST API (the catalog of views, `Translator` for the
caller's tenant, `MetricsService` with its rollups and caches, the question translator):

- `list_metrics`: every governed metric, per view, with its title, description and format;
- `list_dimensions`: what a view's metrics can be cut and filtered by, with descriptions, and its time grains;
- `query`: run a semantic query (Cube's query format, as `/cubejs-api/v1/load` takes it);
- `ask`: a question in English, answered with the query it ran, the numbers and a sentence, or
  asked back / refused with the closest metrics and dimensions.

Transports and tenancy (the same HS256 tokens as the REST API, `semantic/auth.py`):

- stdio (`--transport stdio`, the default): the host launches the process with the token in
  `SEMANTIC_MCP_TOKEN`; it is checked at start and the process answers for that token's tenant only.
- streamable HTTP (`--transport streamable-http --port 4100`, endpoint `/mcp`): every request carries
  `Authorization: Bearer <token>`, checked by a `TokenVerifier`; a missing, expired or foreign token
  is a 401 before any tool runs, and each call answers for its own token's tenant.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Annotated, Any, Literal

from mcp.server import MCPServer
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import AnyHttpUrl, Field
from starlette.requests import Request
from starlette.responses import JSONResponse

from semantic.auth import ADMIN, AuthError, SecurityContext, authenticate
from semantic.cube_query import QueryError, Translator
from semantic.members import UnknownMember
from semantic.questions import Asker, QuestionError
from semantic.service import MetricsService
from semantic.settings import ServingSettings, SettingsError

READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
INSTRUCTIONS = ("Governed metrics of the analytics platform. Call list_metrics, then list_dimensions for a view, "
                "then query with members named <view>.<name>; or ask a question in English. Every answer is "
                "for the tenant of your token only.")


class JwtVerifier(TokenVerifier):
    """The REST API's tokens, for streamable HTTP: valid, unexpired, naming a tenant the data knows."""

    def __init__(self, service: MetricsService, secret: str, max_seconds: int):
        self.service, self.secret, self.max_seconds = service, secret, max_seconds

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            context = checked_context(self.service, f"Bearer {token}", self.secret, self.max_seconds)
        except AuthError:
            return None
        return AccessToken(token=token, client_id=context.tenant_id or ADMIN, scopes=[],
                           claims={"tenant_id": context.tenant_id, "role": context.role})


def checked_context(service: MetricsService, header: str | None, secret: str, max_seconds: int) -> SecurityContext:
    context = authenticate(header, secret, max_seconds)
    if context.tenant_id is not None and context.tenant_id not in service.current().tenants:
        raise AuthError(f"Invalid token: tenant {context.tenant_id!r} is not one the published data knows")
    return context


def build(service: MetricsService, settings: ServingSettings, stdio_context: SecurityContext | None = None,
          url: str = "http://127.0.0.1:4100/mcp") -> MCPServer:
    """The MCP server over a metrics service; `stdio_context` is the tenant of a stdio process."""
    asker = Asker(service, settings.now)
    auth = {} if stdio_context is not None else {
        "token_verifier": JwtVerifier(service, settings.keys, settings.max_token_seconds),
        "auth": AuthSettings(issuer_url=AnyHttpUrl(url.rsplit("/", 1)[0]), resource_server_url=AnyHttpUrl(url),
                             required_scopes=[])}
    mcp = MCPServer("governed-metrics", instructions=INSTRUCTIONS, log_level="WARNING", **auth)

    def context() -> SecurityContext:
        token = get_access_token()
        if token is not None and token.claims is not None:
            return SecurityContext(token.claims["tenant_id"], token.claims["role"])
        if stdio_context is not None:
            return stdio_context
        raise ToolError("no token: call with Authorization: Bearer <token>")

    @mcp.tool(annotations=READ_ONLY)
    def list_metrics() -> list[dict[str, Any]]:
        """Every governed metric, per view (a metric offered in two views is listed in both): its member
        name for `query` (<view>.<metric>), title, description, and format (currency, percent)."""
        context()
        return [{"member": m.member, "view": view.name, "metric": m.metric, "title": m.title,
                 "description": m.description, "format": m.format, "type": m.metric_type}
                for view in service.catalog.views.values() for m in view.measures.values()]

    @mcp.tool(annotations=READ_ONLY)
    def list_dimensions(view: Annotated[str, Field(description="a view's name (list_metrics gives each "
                                                                 "metric's view), or a metric's member name")]
                        ) -> dict[str, Any]:
        """What the metrics of a view can be cut and filtered by: each dimension's member name, title,
        description and type, and the time grains of `<view>.metric_time`."""
        context()
        name = view.split(".", 1)[0]
        found = service.catalog.views.get(name)
        if found is None:
            raise ToolError(f"view: unknown view {view!r}; the views are {', '.join(service.catalog.views)}")
        return {"view": found.name, "description": found.description, "granularities": list(found.granularities),
                "dimensions": [{"member": d.member, "title": d.title, "description": d.description, "type": d.type}
                               for d in found.dimensions.values()]}

    @mcp.tool(annotations=READ_ONLY)
    def query(query: Annotated[dict[str, Any], Field(description=(
            "a semantic query in Cube's format: measures, dimensions, timeDimensions (dimension, granularity, "
            "dateRange), filters (member, operator, values), order, limit; all members from one view"))]
              ) -> dict[str, Any]:
        """Run a semantic query over the governed metrics, for your token's tenant; rows as the REST API's /load."""
        caller = context()
        try:
            plan = Translator(service.catalog, caller.tenant_id).plan(query)
            result = service.submit(plan, caller.cache_key).result()
        except (QueryError, UnknownMember) as exc:  # the model's to read and correct
            raise ToolError(str(exc)) from None
        return {"data": result.rows, "dataVersion": result.data_version, "rollup": result.rollup}

    @mcp.tool(annotations=READ_ONLY)
    def ask(question: Annotated[str, Field(description="a question in English, e.g. 'revenue in Germany last "
                                                        "month'")],
            timezone: Annotated[str, Field(description="the time zone days are counted in")] = "UTC"
            ) -> dict[str, Any]:
        """Answer a question with the governed metrics: the query that ran, the numbers and one sentence saying
        what was computed; or a question back (status clarify) or a refusal naming the closest metrics."""
        caller = context()
        try:
            return asker.ask(question, caller, timezone)
        except QuestionError as exc:
            raise ToolError(str(exc)) from None

    @mcp.custom_route("/livez", methods=["GET"])
    async def livez(request: Request) -> JSONResponse:
        return JSONResponse({"health": "HEALTH"})

    return mcp


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the governed metrics to AI agents over MCP.")
    parser.add_argument("--transport", choices=["stdio", "streamable-http"], default="stdio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4100)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    transport: Literal["stdio", "streamable-http"] = args.transport
    try:
        settings = ServingSettings.from_environment()
        token = settings.mcp_token
        if transport == "stdio":
            if not token:
                raise SettingsError("set SEMANTIC_MCP_TOKEN: the token whose tenant this stdio server answers for")
            authenticate(token, settings.keys, settings.max_token_seconds)  # a bad token fails before any data
        service = settings.service()
        service.current()  # the published version opened and the catalog built before the first call
        stdio_context = None if transport != "stdio" else checked_context(
            service, token, settings.keys, settings.max_token_seconds)
    except (SettingsError, AuthError, FileNotFoundError) as exc:
        raise SystemExit(f"semantic.mcp_server: {exc}") from None
    mcp = build(service, settings, stdio_context, f"http://{args.host}:{args.port}/mcp")
    if transport == "stdio":
        mcp.run("stdio")
    else:
        mcp.run("streamable-http", host=args.host, port=args.port)


if __name__ == "__main__":
    main()
