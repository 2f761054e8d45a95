"""Apache Superset over the governed metrics: its tenancy (`tenancy`, imported by Superset's own process
through `bi/superset_config.py`), the provisioning of its database, datasets, roles and starter
dashboard from the semantic definitions (`provision`, over Superset's REST API), and `make bi` (`run`).

Superset itself lives in an environment of its own (`bi/pyproject.toml` and its lock): nothing here
imports it, and the project's environment does not install it.
"""
