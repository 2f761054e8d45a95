"""Which rows a Superset user may see: the tenant of their roles, turned into the SQL endpoint's token.

A Superset user belongs to one tenant through a role named `Tenant <tenant_id>` (the role carries no
permission: it only says whose rows), or has Superset's `Admin` role and sees every tenant. Superset
connects to the SQL endpoint for each query (`DB_CONNECTION_MUTATOR` in `bi/superset_config.py`) with
the token this module issues for the effective user, so the endpoint, not Superset, decides which
rows come back. A user with no tenant (or two) gets no token: refused at login and at every query.

Imported by Superset's process, whose environment is not the project's (bi/uv.lock): this module uses
only pyjwt (which Superset depends on too) and the standard library. It does not import `semantic.auth`,
which reads key sets (JWKS) over HTTP with httpx, a package Superset's environment does not have; the
token it issues is the one `semantic.auth.issue_token` issues (HS256 with the shared secret: `role`,
`exp`, `jti` and, but for an admin, `tenant_id`), which tests/semantic/test_superset.py checks.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass

import jwt

ADMIN = "admin"  # semantic.auth.ADMIN: the role of a token that sees every tenant

TENANT_ROLE_PREFIX = "Tenant "
ADMIN_ROLE = "Admin"  # Superset's own role of administrators
# The user name of a database connection whose queries carry the effective user's token as password:
# `postgresql+psycopg2://semantic@127.0.0.1:15432/metrics` (any other connection is left as it is).
CONNECTION_USER = "semantic"
TOKEN_SECONDS = 15 * 60  # a connection lives for one query (NullPool): a short token is enough


class NoTenant(PermissionError):
    """The user belongs to no tenant (or to several) and is no admin: they get no token."""


@dataclass(frozen=True)
class Identity:
    username: str
    tenant_id: str | None  # None: an admin, every tenant

    @property
    def role(self) -> str:
        return ADMIN if self.tenant_id is None else "tenant"

    def token(self, secret: str, ttl_seconds: int = TOKEN_SECONDS) -> str:
        """The SQL endpoint's token for this user, as `semantic.auth.issue_token(secret, tenant_id, role,
        ttl_seconds)` issues it."""
        payload = {"role": self.role, "exp": int(time.time()) + ttl_seconds, "jti": secrets.token_hex(8)}
        if self.tenant_id is not None:
            payload["tenant_id"] = self.tenant_id
        return jwt.encode(payload, secret, algorithm="HS256")


def tenant_role(tenant_id: str) -> str:
    return f"{TENANT_ROLE_PREFIX}{tenant_id}"


def identity(username: str | None, role_names: Iterable[str]) -> Identity:
    """The tenant (or admin) a user with these roles queries as; NoTenant says why there is none."""
    if not username:
        raise NoTenant("no logged-in user: queries to the semantic layer run as a user of one tenant or as an admin")
    names = set(role_names)
    tenants = sorted(name.removeprefix(TENANT_ROLE_PREFIX) for name in names if name.startswith(TENANT_ROLE_PREFIX))
    admin = ADMIN_ROLE in names
    if admin and tenants:
        raise NoTenant(f"user {username!r} has the {ADMIN_ROLE} role and the role {tenant_role(tenants[0])!r}: "
                       "a user is an admin (every tenant) or belongs to one tenant, not both")
    if admin:
        return Identity(username, None)
    if not tenants:
        raise NoTenant(f"user {username!r} belongs to no tenant: an admin gives them one role "
                       f"'{TENANT_ROLE_PREFIX}<tenant_id>' (Settings > List Users)")
    if len(tenants) > 1:
        raise NoTenant(f"user {username!r} belongs to several tenants ({', '.join(tenants)}): a user belongs to one")
    return Identity(username, tenants[0])
