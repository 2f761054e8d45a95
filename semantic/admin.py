"""The metrics server's admin API: erasure requests (a person's data removed everywhere).

    POST /v1/admin/erasures          {"tenant": "t001", "user": "u123"}: 202 {"id", "status": "queued"}
    GET  /v1/admin/erasures/{id}     the request's state: queued, erased (what was removed where) or
                                     unknown_user (nothing changed); 404 for an id never queued

Only a token with the `admin` role may call them (403 otherwise). The server only reads published
data, so it never erases itself: a request is queued in the data directory
(`ingestion.privacy.ErasureLog`), and the pipeline's `erasure_requests_sensor` runs it in the
warehouse's single writer, as `make erase` would; its audit record answers the GET.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import jwt
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ingestion.paths import DataLayout
from ingestion.privacy import ErasureLog, ErasureRequestError
from semantic.auth import ADMIN, AuthError, authenticate
from semantic.keys import KeySet


def _json(body, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


class Erasures:
    def __init__(self, privacy_dir: Path, keys: KeySet | str, max_token_seconds: int):
        self.log, self.keys, self.max_token_seconds = ErasureLog(privacy_dir), keys, max_token_seconds

    async def _admin(self, request: Request) -> str:
        """Who asks (the token's `sub`, else "admin"), or AuthError unless the token is an admin's."""
        header = request.headers.get("authorization")
        # in a thread, as the API checks tokens: an unknown kid reads the key sets again (maybe a URL)
        context = await asyncio.to_thread(authenticate, header, self.keys, self.max_token_seconds)
        if context.role != ADMIN:
            raise AuthError("only an admin token may request or read erasures")
        claims = jwt.decode(header.removeprefix("Bearer ").strip(), options={"verify_signature": False})
        return str(claims.get("sub") or "admin")

    async def create(self, request: Request) -> Response:
        try:
            who = await self._admin(request)
        except AuthError as exc:
            return _json({"error": str(exc)}, 403)
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            return _json({"error": f"body: not valid JSON ({exc})", "type": "UserError"}, 400)
        if not isinstance(body, dict):
            return _json({"error": 'body: expected {"tenant": ..., "user": ...}', "type": "UserError"}, 400)
        try:
            queued = self.log.queue(body.get("tenant"), body.get("user"), f"admin API: {who}")
        except ErasureRequestError as exc:
            return _json({"error": str(exc), "type": "UserError"}, 400)
        return _json({"id": queued["id"], "status": "queued", "tenant": queued["tenant"],
                      "requested_at": queued["requested_at"]}, 202)

    async def show(self, request: Request) -> Response:
        try:
            await self._admin(request)
        except AuthError as exc:
            return _json({"error": str(exc)}, 403)
        status = self.log.status(request.path_params["request_id"])
        if status is None:
            return _json({"error": f"no erasure request {request.path_params['request_id']!r}"}, 404)
        return _json(status)


def routes(data_dir: Path, keys: KeySet | str, max_token_seconds: int) -> list[Route]:
    erasures = Erasures(DataLayout(data_dir).privacy_dir, keys, max_token_seconds)
    return [Route("/v1/admin/erasures", erasures.create, methods=["POST"]),
            Route("/v1/admin/erasures/{request_id}", erasures.show, methods=["GET"])]
