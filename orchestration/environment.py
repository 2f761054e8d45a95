"""The one place that decides the environment: data directory, dbt target, sample size, contracts.

Everything is read from environment variables with defaults for the embedded default (DuckDB
and the sample data under `data/`). Moving to a bigger warehouse means setting `DBT_TARGET` and
the target's credentials, not changing code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ingestion.paths import DataLayout

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"


@dataclass(frozen=True)
class Environment:
    data_dir: Path
    dbt_target: str
    sample_size: str
    sample_seed: int
    schema_contract: str

    @property
    def layout(self) -> DataLayout:
        return DataLayout(self.data_dir)

    @property
    def dagster_home(self) -> Path:
        return self.data_dir / "dagster"


def environment_from(env: dict[str, str]) -> Environment:
    data_dir = Path(env.get("PLATFORM_DATA_DIR", REPO_ROOT / "data")).resolve()
    return Environment(
        data_dir=data_dir,
        dbt_target=env.get("DBT_TARGET", "duckdb"),
        sample_size=env.get("PLATFORM_SAMPLE_SIZE", "default"),
        sample_seed=int(env.get("PLATFORM_SAMPLE_SEED", "42")),
        schema_contract=env.get("PLATFORM_SCHEMA_CONTRACT", "evolve"),
    )


@cache
def current_environment() -> Environment:
    """The environment of this process; also exports the warehouse path that profiles.yml reads.

    The path is always derived from the data directory (never inherited), so a dbt subprocess
    cannot build against another run's warehouse.
    """
    env = environment_from(dict(os.environ))
    os.environ["PLATFORM_WAREHOUSE"] = str(env.layout.warehouse)
    return env
