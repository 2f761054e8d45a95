"""Prepare Superset's metadata database: what `superset db upgrade`, `superset init` and `superset fab
create-admin` do, inside the web server's own process (`bi/app.py`) before it serves: each of those
commands would start Superset's app again, seconds apiece, which `make bi`'s start-up cannot spare.

Reads the administrator's user name and password from SUPERSET_ADMIN_USERNAME / _PASSWORD (`make bi`
generates them into users.json). Running it again migrates what is new, re-syncs the roles'
permissions only when Superset's version changed, and keeps the users as they are.
"""

from __future__ import annotations

import os
from importlib.metadata import version
from pathlib import Path

from flask import Flask
from flask_migrate import upgrade


def initialise(app: Flask) -> None:
    with app.app_context():
        upgrade()  # Superset's migrations (`superset db upgrade`)
        from superset.extensions import appbuilder, security_manager

        stamp = Path(app.config["DATA_DIR"]) / "initialised"
        release = version("apache-superset")
        if not stamp.exists() or stamp.read_text() != release:  # `superset init`
            appbuilder.add_permissions(update_perms=True)
            security_manager.sync_role_definitions()
            stamp.write_text(release)
        username = os.environ["SUPERSET_ADMIN_USERNAME"]
        if security_manager.find_user(username=username) is None:  # `superset fab create-admin`
            admin = security_manager.find_role(security_manager.auth_role_admin)
            created = security_manager.add_user(username, "Platform", "Admin", f"{username}@example.com", admin,
                                                os.environ["SUPERSET_ADMIN_PASSWORD"])
            if not created:
                raise SystemExit(f"could not create Superset's administrator {username!r}")
