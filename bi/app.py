"""Superset's WSGI application for gunicorn (`gunicorn --pythonpath bi app:application`, as `make bi` runs
it): Superset's app, its metadata database migrated and initialised first (`initialise.py`), in one
start of the app."""

from initialise import initialise
from superset.app import create_app

application = create_app()
initialise(application)
