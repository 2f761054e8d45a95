"""Per-token rate limits of the metrics server and the SQL endpoint (`SEMANTIC_RATE_LIMIT`).

Each token is counted on its own (by `auth.token_id`, a digest of the token): REST requests under
/cubejs-api/ by the `RateLimit` middleware, before the token is even verified (a refused request
costs a counter lookup, not a signature check), and statements on the SQL endpoint by the
connection (`check_statement`; statements of session and transaction control, `SESSION_CONTROL`,
are free). A request without a token is counted under its client address.
Past the limit the REST API answers 429 with `Retry-After` in Cube's error shape; the SQL endpoint
answers the statement with an ErrorResponse of SQLSTATE 53400 (configuration_limit_exceeded) and
the connection stays open. Counts are kept in the serving process's memory (`ingestion.rate_limits`):
with `--workers N`, each worker counts its own requests.
"""

from __future__ import annotations

import orjson

from ingestion.rate_limits import Limiter, Rates, Refusal
from semantic import monitoring
from semantic.auth import bearer, token_id
from semantic.pg_sql import SqlError

API_PREFIX = "/cubejs-api/"
# Statements that only steer the session or its transaction: neither counted nor audited, so that a
# driver's implicit BEGIN does not spend the limit, and a client past it can still roll back.
SESSION_CONTROL = frozenset({"begin", "start", "commit", "end", "rollback", "abort", "savepoint", "release", "set",
                             "reset", "discard", "deallocate", "close"})


class TokenLimits:
    def __init__(self, rates: Rates = ()):
        self.rates = rates
        self.limiter = Limiter(rates)

    def check(self, identity: str) -> Refusal | None:
        return self.limiter.hit(identity) if self.rates else None

    def check_statement(self, token: str) -> None:
        """Count one statement of a SQL connection's token; SqlError 53400 past the limit."""
        refusal = self.check(token_id(token))
        if refusal is not None:
            monitoring.RATE_LIMITED.labels("sql").inc()
            raise SqlError(f"too many statements for this token: {refusal.message('a statement')}",
                           "53400", hint=f"retry after {refusal.retry_after} s (SEMANTIC_RATE_LIMIT)")


class RateLimit:
    """ASGI middleware: 429 with Retry-After for a token past its rate limit."""

    def __init__(self, app, limits: TokenLimits):
        self.app, self.limits = app, limits

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.limits.rates or not scope["path"].startswith(API_PREFIX):
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        token = bearer(headers.get(b"authorization", b"").decode("latin-1"))
        identity = token_id(token) if token else f"client:{(scope.get('client') or ('?',))[0]}"
        refusal = self.limits.check(identity)
        if refusal is None:
            return await self.app(scope, receive, send)
        monitoring.RATE_LIMITED.labels("rest").inc()
        body = orjson.dumps({"error": f"Too many requests for this token: {refusal.message('a request')}",
                             "type": "RateLimitError"})
        await send({"type": "http.response.start", "status": 429,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"retry-after", str(refusal.retry_after).encode())]})
        await send({"type": "http.response.body", "body": body})
