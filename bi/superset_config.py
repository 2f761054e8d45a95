"""Superset's configuration for the platform (SUPERSET_CONFIG_PATH points here; `make bi` sets it).

Read by Superset's own process, in its own environment (`bi/pyproject.toml`): it imports only the
project's `semantic.superset.tenancy`, which needs nothing Superset does not install (pyjwt; not
`semantic.auth`, whose key sets need httpx).

- State under the platform's data directory (`PLATFORM_DATA_DIR`, default `data/`; SUPERSET_STATE_DIR
  overrides): the metadata database `superset/superset.db` (SQLite) and the session secret
  `superset/secret_key`, generated on first start unless `SUPERSET_SECRET_KEY` is set. Nothing secret
  is in the repository.
- Tenancy: every connection whose user is `semantic` (the SQL endpoint) gets, for each query, the
  effective user's token as its password (`DB_CONNECTION_MUTATOR`, Superset's public hook), signed
  with `SEMANTIC_API_SECRET`: the endpoint then answers with that tenant's rows only. A user without
  a tenant gets no token and cannot log in (`TenantSecurityManager`).
- No cache of query results (`DATA_CACHE_CONFIG` is a NullCache, thumbnails and async queries are
  off): the SQL endpoint caches per tenant itself, and a shared Superset cache is one more place where
  one tenant's rows could reach another.
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import sys
from pathlib import Path

from flask import g, jsonify, make_response, request
from markupsafe import escape
from sqlalchemy import event
from sqlalchemy.engine import Engine
from superset.errors import ErrorLevel, SupersetError, SupersetErrorType
from superset.exceptions import SupersetSecurityException
from superset.security import SupersetSecurityManager

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from semantic.superset import tenancy  # noqa: E402  (the repository is on the path from here on)

log = logging.getLogger(__name__)

# SUPERSET_STATE_DIR: set by `make bi` (semantic/superset/run.py), which decides where Superset's state lives
STATE_DIR = Path(os.environ.get("SUPERSET_STATE_DIR")
                 or Path(os.environ.get("PLATFORM_DATA_DIR") or REPO_ROOT / "data") / "superset").resolve()
STATE_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    if os.environ.get("SUPERSET_SECRET_KEY"):
        return os.environ["SUPERSET_SECRET_KEY"]
    path = STATE_DIR / "secret_key"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(42))
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DATA_DIR = str(STATE_DIR)
SQLALCHEMY_DATABASE_URI = f"sqlite:///{STATE_DIR / 'superset.db'}?check_same_thread=false"


@event.listens_for(Engine, "connect")
def _sqlite_write_ahead_log(connection, record) -> None:
    """The metadata database in WAL mode: the web server's threads read while one writes, and the first
    `superset db upgrade` (hundreds of migrations) does not wait for a disk flush after each."""
    if isinstance(connection, sqlite3.Connection):
        connection.execute("pragma journal_mode=wal")
        connection.execute("pragma synchronous=normal")


SEMANTIC_API_SECRET = os.environ.get("SEMANTIC_API_SECRET", "")

FEATURE_FLAGS = {
    "DASHBOARD_RBAC": True,  # a dashboard is shared with the roles it lists (Properties > Access)
    "THUMBNAILS": False,
    "GLOBAL_ASYNC_QUERIES": False,
}
DATA_CACHE_CONFIG = {"CACHE_TYPE": "NullCache"}
CACHE_CONFIG = {"CACHE_TYPE": "NullCache"}
# A bad query answers at once; a chart waits at most this long for the SQL endpoint.
SQLLAB_TIMEOUT = 60
SUPERSET_WEBSERVER_TIMEOUT = 60
# Loopback without TLS: Talisman's HTTPS-only defaults would keep the browser's session cookie out.
TALISMAN_ENABLED = False
CONTENT_SECURITY_POLICY_WARNING = False
SESSION_COOKIE_SECURE = False


def _no_tenant(exc: tenancy.NoTenant) -> SupersetSecurityException:
    return SupersetSecurityException(SupersetError(message=f"Semantic layer: {exc}", level=ErrorLevel.ERROR,
                                                   error_type=SupersetErrorType.DATABASE_SECURITY_ACCESS_ERROR))


def DB_CONNECTION_MUTATOR(uri, params, username, security_manager, source):  # Superset's name for the hook
    """The SQL endpoint's password is the effective user's token: their tenant's, or an admin's."""
    if uri.username != tenancy.CONNECTION_USER:
        return uri, params
    if not SEMANTIC_API_SECRET:
        raise _no_tenant(tenancy.NoTenant("SEMANTIC_API_SECRET is not set in Superset's environment"))
    user = security_manager.find_user(username=username) if username else None
    try:
        who = tenancy.identity(username, [role.name for role in user.roles] if user else [])
    except tenancy.NoTenant as exc:
        raise _no_tenant(exc) from None
    return uri.set(password=who.token(SEMANTIC_API_SECRET)), params


class TenantSecurityManager(SupersetSecurityManager):
    """Refuses at login a user who belongs to no tenant and is no admin (they could query nothing)."""

    def auth_user_db(self, username, password):
        user = super().auth_user_db(username, password)
        if user is None:
            return None
        try:
            tenancy.identity(user.username, [role.name for role in user.roles])
        except tenancy.NoTenant as exc:
            log.warning("login refused: %s", exc)
            g.login_refused = str(exc)
            return None
        return user


CUSTOM_SECURITY_MANAGER = TenantSecurityManager

REFUSED_PAGE = """<!doctype html><html><head><title>Login refused</title></head>
<body style="font-family: sans-serif; margin: 4em auto; max-width: 40em">
<h1>Login refused</h1><p data-test="login-refused">{reason}.</p><p><a href="/login/">Back to sign in</a></p>
</body></html>"""


def _refused_login(response):
    """Superset's login page says only "Invalid username or password" whatever the reason (it shows no
    flashed message): a refused login answers 403 with the reason instead, as a page or, for the API's
    login, as JSON."""
    reason = g.get("login_refused")
    if reason is None:
        return response
    if request.path.startswith("/api/"):
        return make_response(jsonify(message=f"Login refused: {reason}"), 403)
    return make_response(REFUSED_PAGE.format(reason=escape(f"Login refused: {reason}")), 403)


def FLASK_APP_MUTATOR(app):  # Superset's name for the hook
    app.after_request(_refused_login)
