"""The MLflow tracking store and model registry: experiments, runs, versions and the champion.

The store is SQLite under `data/mlflow/` with a local artifact store beside it, unless the pipeline's
environment names a tracking server (`MLFLOW_TRACKING_URI`, read by `orchestration/environment.py` and
passed to `Store.under`). A SQLite store's artifact locations
are relative to it (`ml/artifact_store.py`), so the data directory can move, and MLflow's empty `Default`
experiment is deleted (every run goes to its family's experiment). Every write path checks the
store first and fails with the URI and the cause; a model version is only created after its run
logged everything, and removed again if the registry step fails, so a failed run never leaves a
half-registered model and never touches the champion.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from ml import artifact_store

CHAMPION = "champion"
DEFAULT_EXPERIMENT_ID = "0"  # MLflow's `Default`, created with every store
DOCUMENT = "forecaster.json"  # `Forecaster.document()`, beside the mlforecast model

# A tracking server that is down should fail in seconds, not after minutes of retries. MLflow reads
# these from the environment at each request (`mlflow.environment_variables`) and its client takes
# no such argument: `Store.client` sets them, where a client of a server is made, unless already set.
FAIL_FAST_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


class TrackingStoreError(RuntimeError):
    """The tracking store cannot be read or written; the message names it and says why."""


class OutdatedVersion(ValueError):
    """A registered version this code cannot load; the message names it."""


def experiment_name(family: str) -> str:
    return f"forecast-{family}"


def model_name(family: str) -> str:
    return f"forecast_{family}"


def local_uri(data_dir: Path) -> str:
    """The platform's own store under the data directory."""
    return f"sqlite:///{(data_dir / 'mlflow' / 'mlflow.db').resolve()}"


@dataclass
class Store:
    uri: str
    artifact_root: Path

    @classmethod
    def under(cls, data_dir: Path, tracking_uri: str | None = None) -> Store:
        """The store of a data directory: `tracking_uri` (a team's tracking server), else the local one."""
        root = data_dir / "mlflow"
        uri = tracking_uri or local_uri(data_dir)
        if uri.startswith("sqlite:///"):
            root.mkdir(parents=True, exist_ok=True)
        return cls(uri, (root / "artifacts").resolve())

    @property
    def client(self) -> MlflowClient:
        if self.uri.startswith(("http://", "https://")):
            for name, value in FAIL_FAST_HTTP.items():
                os.environ.setdefault(name, value)
        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    def experiment(self, family: str) -> str:
        """The family's experiment id, created on first use; proves the store is writable."""
        name = experiment_name(family)
        try:
            client = self.client
            found = client.get_experiment_by_name(name)
            experiment_id = found.experiment_id if found else client.create_experiment(
                name, artifact_location=self._artifact_location(name))
            if self.uri.startswith(artifact_store.SQLITE):  # the platform's own store, not a team's server
                _retire_empty_default(client)
            client.set_experiment_tag(experiment_id, "last_checked", datetime.now(UTC).isoformat())
            return experiment_id
        except Exception as err:  # any backend error: unreachable, read-only, locked, bad URI
            raise TrackingStoreError(f"MLflow tracking store {self.uri} is not usable for writing "
                                     f"(experiment {name!r}): {_first_line(err)}") from err

    def _artifact_location(self, experiment: str) -> str:
        """Where an experiment's artifacts go: beside a SQLite store, addressed relative to it; else under
        `artifact_root`."""
        if self.uri.startswith(artifact_store.SQLITE):
            return artifact_store.location(experiment)
        return (self.artifact_root / experiment).as_uri()

    def champion(self, family: str):
        """The champion's model version, or None when the family has none yet."""
        try:
            return self.client.get_model_version_by_alias(model_name(family), CHAMPION)
        except MlflowException as err:
            if "RESOURCE_DOES_NOT_EXIST" in str(err.error_code) or "not found" in str(err).lower():
                return None
            raise TrackingStoreError(f"MLflow registry {self.uri}: {_first_line(err)}") from err
        except Exception as err:
            raise TrackingStoreError(f"MLflow registry {self.uri} is unreachable: {_first_line(err)}") from err

    def latest_version(self, family: str):
        try:
            versions = self.client.search_model_versions(f"name = '{model_name(family)}'")
        except Exception:
            return None
        return max(versions, key=lambda v: int(v.version), default=None)

    def register(self, family: str, model_uri: str, run_id: str, promote: bool):
        """Register the run's model; give it the champion alias when `promote`. All or nothing."""
        client = self.client
        name = model_name(family)
        version = None
        try:
            try:
                client.get_registered_model(name)
            except MlflowException:
                client.create_registered_model(name, description=f"Global LightGBM forecaster of the {family} "
                                               "metrics (all tenants and each tenant) combined with AutoETS, "
                                               "AutoTheta or AutoARIMA (mlforecast, statsforecast).")
            with using(self.uri):  # the logged model's `models:/` URI resolves through the fluent API
                version = client.create_model_version(name, model_uri, run_id=run_id)
            if promote:
                client.set_registered_model_alias(name, CHAMPION, version.version)
            return version
        except Exception as err:
            if version is not None:
                with contextlib.suppress(Exception):  # the store may be what failed; the error says so
                    client.delete_model_version(name, version.version)
            raise TrackingStoreError(f"registering {name} in {self.uri} failed, nothing registered: "
                                     f"{_first_line(err)}") from err

    def load(self, version) -> tuple:
        """The mlforecast model of a registered version and the document logged beside it, or
        `OutdatedVersion` for a version registered before the forecaster had one (a bare booster)."""
        present = {f.path for f in self.client.list_artifacts(version.run_id)}
        if DOCUMENT not in present:
            raise OutdatedVersion(f"{version.name} version {version.version} was registered by an earlier "
                                  "forecaster (no forecaster.json); retraining registers one this code can read")
        import mlforecast.flavor

        with using(self.uri):
            model = mlforecast.flavor.load_model(f"models:/{version.name}/{version.version}")
        with tempfile.TemporaryDirectory() as tmp:
            document = json.loads(Path(self.client.download_artifacts(version.run_id, DOCUMENT, tmp)).read_text())
        return model, document


@contextlib.contextmanager
def using(uri: str):
    """MLflow's fluent API pointed at `uri` for the block, then back as it was.

    `mlflow.set_tracking_uri` also exports MLFLOW_TRACKING_URI to the process environment, which
    every later subprocess (a dbt run, another pipeline) would inherit: so it is undone.
    """
    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)


def _retire_empty_default(client: MlflowClient) -> None:
    """Delete the `Default` experiment MLflow creates with every store, while no run uses it."""
    default = client.get_experiment(DEFAULT_EXPERIMENT_ID)
    if default.lifecycle_stage == "active" and not client.search_runs([DEFAULT_EXPERIMENT_ID], max_results=1):
        client.delete_experiment(DEFAULT_EXPERIMENT_ID)


def _first_line(err: Exception) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:300]
