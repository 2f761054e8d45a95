"""Who is asking: the JWT in the `Authorization` header, and the rows it may see.

Tokens are HS256-signed with the secret in `SEMANTIC_API_SECRET` (see `settings.py`). The
payload is the security context, as in Cube: `tenant_id` and `role`. A token with role `admin`
sees every tenant; any other token sees only its own tenant's rows, whatever the query asks, and
must name one (that the published data knows: the servers check). Every token expires: one
without `exp`, or valid for longer than the configured maximum from now, is refused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

ADMIN = "admin"


class AuthError(Exception):
    """Refused: Cube answers 403 with {"error": ...}."""


@dataclass(frozen=True)
class SecurityContext:
    tenant_id: str | None  # None for admins: every tenant
    role: str

    @property
    def cache_key(self) -> str:
        return f"{self.role}:{self.tenant_id or '*'}"


def authenticate(header: str | None, secret: str, max_seconds: int | None = None) -> SecurityContext:
    if not header:
        raise AuthError("Authorization header missing")
    token = header.removeprefix("Bearer ").strip()
    try:
        payload = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["exp"]})
    except jwt.MissingRequiredClaimError:
        raise AuthError("Invalid token: it has no expiry (exp); issue tokens that expire") from None
    except jwt.ExpiredSignatureError:
        raise AuthError("Invalid token: expired") from None
    except jwt.InvalidSignatureError:
        raise AuthError("Invalid token: wrong signature") from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"Invalid token: {exc}") from None
    if max_seconds is not None and payload["exp"] - time.time() > max_seconds:
        raise AuthError(f"Invalid token: valid for more than the allowed {max_seconds} seconds from now "
                        "(SEMANTIC_TOKEN_MAX_SECONDS)")
    context = payload.get("securityContext", payload)
    role = str(context.get("role", "tenant"))
    tenant = context.get("tenant_id")
    if role == ADMIN:
        return SecurityContext(None, ADMIN)
    if not isinstance(tenant, str) or not tenant:
        raise AuthError("Invalid token: its security context names no tenant_id")
    return SecurityContext(tenant, role)


def issue_token(secret: str, tenant_id: str | None = None, role: str = "tenant", ttl_seconds: int = 3600) -> str:
    """A token for a tenant (or an admin), for tests, scripts and the reports."""
    payload = {"role": role, "exp": int(time.time()) + ttl_seconds}
    if tenant_id is not None:
        payload["tenant_id"] = tenant_id
    return jwt.encode(payload, secret, algorithm="HS256")
