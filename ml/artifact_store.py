"""MLflow artifacts addressed relative to the tracking store, so that moving the data directory keeps them.

MLflow stores an experiment's artifact location, and every run's and model's artifact URI derived from
it, as an absolute path (it resolves relative ones against the working directory when the experiment is
created). A project moved or copied elsewhere then points at artifacts that are not there. MLflow's own
answer, proxied `mlflow-artifacts:` URIs, needs a tracking server; the embedded store is a SQLite file.

So experiments of a SQLite store get artifact locations of the form `platform-store:/<experiment>`, and
this artifact repository (registered with MLflow's documented plugin entry point
`mlflow.artifact_repository` in pyproject.toml) resolves them under `artifacts/` beside the store's
database file, wherever that is now. It is MLflow's local artifact repository otherwise.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import mlflow
from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

SCHEME = "platform-store"
SQLITE = "sqlite:///"


def artifacts_of(tracking_uri: str) -> Path:
    """The artifact folder of a SQLite tracking store: `artifacts/` beside its database file."""
    if not tracking_uri.startswith(SQLITE):
        raise ValueError(f"{SCHEME}: artifacts are relative to a SQLite tracking store, but the tracking URI is "
                         f"{tracking_uri!r}")
    return Path(tracking_uri[len(SQLITE):]).parent / "artifacts"


def location(experiment: str) -> str:
    """The artifact location of an experiment of a SQLite store, relative to the store."""
    return f"{SCHEME}:/{experiment}"


class StoreRelativeArtifactRepository(LocalArtifactRepository):
    """`platform-store:/<path>` read and written as `<the store's folder>/artifacts/<path>`."""

    def __init__(self, artifact_uri: str, tracking_uri: str | None = None, registry_uri: str | None = None) -> None:
        store = tracking_uri or mlflow.get_tracking_uri()
        path = artifacts_of(store) / urlparse(artifact_uri).path.lstrip("/")
        super().__init__(path.as_uri(), tracking_uri, registry_uri)
