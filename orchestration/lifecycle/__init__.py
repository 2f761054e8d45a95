"""The data's lifecycle across every layer: retention, backups and point-in-time restore, erasure.

These operations span the landing zone, the warehouse, the published data, the report exports and
the MLflow store, which only the orchestration package may know all of; each part's own format
stays with its owner (`ingestion/archive.py`, `ingestion/privacy.py`, `semantic/publication.py`).
`python -m orchestration.lifecycle` is their command line (`make retention`, `make backup`,
`make restore`, `make erase`); `orchestration/assets/lifecycle.py` schedules them in Dagster.
"""
