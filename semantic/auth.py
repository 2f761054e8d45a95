"""Who is asking: the JWT in the `Authorization` header, and the rows it may see.

Tokens are HS256-signed with the secret in `SEMANTIC_API_SECRET`, or signed with a key of a
configured key set (JWKS), which the token names by its `kid` header: RS256 tokens of an identity
provider, and rotated HS256 secrets (`keys.py`). The payload is the security context, as in Cube:
`tenant_id` and `role`. A token with role `admin`
sees every tenant; any other token sees only its own tenant's rows, whatever the query asks, and
must name one (that the published data knows: the servers check). Every token expires: one
without `exp`, or valid for longer than the configured maximum from now, is refused.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass, field

import jwt

from semantic.keys import KeyRefused, KeySet

ADMIN = "admin"


class AuthError(Exception):
    """Refused: Cube answers 403 with {"error": ...}."""


@dataclass(frozen=True)
class SecurityContext:
    tenant_id: str | None  # None for admins: every tenant
    role: str
    token_id: str = ""  # `token_id` of the token: who asked, in the audit log
    subject: str | None = None  # the token's `sub`, when it has one
    kid: str | None = None  # the key it was signed with, when it names one
    expires_at: float = field(default=float("inf"), compare=False)  # the token's exp (a long connection checks it)

    @property
    def cache_key(self) -> str:
        return f"{self.role}:{self.tenant_id or '*'}"


def authenticate(header: str | None, keys: KeySet | str, max_seconds: int | None = None) -> SecurityContext:
    """The security context of a token (`keys`: the key set, or just the HS256 secret)."""
    token = bearer(header)
    if token is None:
        raise AuthError("Authorization header missing")
    keys = KeySet(keys) if isinstance(keys, str) else keys
    try:
        head = jwt.get_unverified_header(token)
        key = keys.key_for(head.get("kid"), head.get("alg"))
        payload = jwt.decode(token, key.key, algorithms=[key.algorithm], options={"require": ["exp"]})
    except KeyRefused as exc:
        raise AuthError(f"Invalid token: {exc}") from None
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
    who = {"token_id": token_id(token), "subject": str(payload["sub"]) if "sub" in payload else None,
           "kid": key.kid}
    if role == ADMIN:
        return SecurityContext(None, ADMIN, expires_at=payload["exp"], **who)
    if not isinstance(tenant, str) or not tenant:
        raise AuthError("Invalid token: its security context names no tenant_id")
    return SecurityContext(tenant, role, expires_at=payload["exp"], **who)


def token_id(token: str) -> str:
    """A token's name in logs and rate limits: the start of its SHA-256, which cannot be used as the token."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization` header (Cube's clients send it raw, others as `Bearer <token>`)."""
    return header.removeprefix("Bearer ").strip() or None if header else None


def issue_token(secret, tenant_id: str | None = None, role: str = "tenant", ttl_seconds: int = 3600,
                kid: str | None = None, algorithm: str = "HS256") -> str:
    """A token for a tenant (or an admin), for tests, scripts and the reports: HS256 with the secret, or
    signed with a private key (`algorithm` RS256...) and naming its key (`kid`) in a key set. Each has
    its own id (`jti`), which the audit log and the rate limits tell tokens apart by."""
    payload = {"role": role, "exp": int(time.time()) + ttl_seconds, "jti": secrets.token_hex(8)}
    if tenant_id is not None:
        payload["tenant_id"] = tenant_id
    return jwt.encode(payload, secret, algorithm=algorithm, headers={"kid": kid} if kid else None)
