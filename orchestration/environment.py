"""The one place that decides the pipeline's environment: data directory, dbt target, sample size,
contracts, the clock, where the reports and alerts are delivered.

Everything is read from environment variables with defaults for the embedded default (DuckDB
and the sample data under `data/`). Moving to a bigger warehouse means setting `DBT_TARGET` and
the target's credentials, not changing code. What the pipeline shares with the servers (the data
directory, the warehouse target and its credentials) is parsed by the same functions they use
(`ingestion.paths.data_dir_from`, `semantic.warehouse.WarehouseTarget`), so each variable is read
in one place.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path

from ingestion.paths import DataLayout, data_dir_from, pinned_now_from
from ingestion.privacy import PrivacySettings, privacy_settings_from
from reports.delivery import Settings as DeliverySettings
from semantic.publication import Publication
from semantic.settings import SEMANTIC_MANIFEST, freshness_limit_from
from semantic.warehouse import Warehouse, WarehouseTarget

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
RETENTION_CONFIG = REPO_ROOT / "orchestration" / "retention.yml"
__all__ = ["DBT_PROJECT_DIR", "REPO_ROOT", "SEMANTIC_MANIFEST", "Environment", "current_environment", "tool"]


# DuckDB's units for a memory size (`SET memory_limit`): powers of 1000 or of 1024
_MEMORY_SIZE = re.compile(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)
# The share of the machine's memory each DuckDB database of a run may hold by default (DuckDB's own default
# is 80% for each). dbt's (in a process of its own) is open beside the job process, which holds its own
# pandas frames: at 80% each, a large sample takes the machine down instead of spilling (docs/scaling.md).
DUCKDB_MEMORY_SHARE = 0.25


@dataclass(frozen=True)
class DuckDbLimits:
    """What each DuckDB database the run opens on the warehouse may take: dbt's, dlt's and the job's
    connections. Past `memory_limit` DuckDB spills to a temporary folder beside the warehouse file
    (`warehouse.duckdb.tmp`); results are the same, only slower. PLATFORM_DUCKDB_MEMORY_LIMIT takes
    DuckDB's sizes (`6GB`, `4096MiB`), PLATFORM_DUCKDB_THREADS a whole number."""

    memory_limit: str
    threads: int

    def settings(self) -> dict[str, str]:
        """As DuckDB's settings (`SET name = value`, dlt's `global_config`, dbt-duckdb's `settings`)."""
        return {"memory_limit": self.memory_limit, "threads": str(self.threads)}


def duckdb_limits_from(env: dict[str, str]) -> DuckDbLimits:
    memory = env.get("PLATFORM_DUCKDB_MEMORY_LIMIT") or \
        f"{int(os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') * DUCKDB_MEMORY_SHARE / 2**20)}MiB"
    if not _MEMORY_SIZE.fullmatch(memory.strip()):
        raise ValueError(f"PLATFORM_DUCKDB_MEMORY_LIMIT must be a size with DuckDB's units (e.g. 6GB or "
                         f"4096MiB), not {memory!r}")
    threads = env.get("PLATFORM_DUCKDB_THREADS") or str(os.cpu_count() or 1)
    if not threads.isdigit() or int(threads) < 1:
        raise ValueError(f"PLATFORM_DUCKDB_THREADS must be a whole number of at least 1, not {threads!r}")
    return DuckDbLimits(memory.strip(), int(threads))


@dataclass(frozen=True)
class Environment:
    data_dir: Path
    warehouse_target: WarehouseTarget
    sample_size: str
    sample_seed: int
    sample_end_date: date
    sample_faults: tuple[str, ...]
    schema_contract: str
    # The moment a run takes as now: the sample's "yesterday", and what the quality gates judge
    # freshness and future timestamps against. The clock unless PLATFORM_NOW pins it (to replay a
    # past day's run, or to make a test's data the same on any day); None means the clock.
    pinned_now: datetime | None = None
    # how long each layer keeps data (orchestration/lifecycle/retention.py)
    retention_config: Path = RETENTION_CONFIG
    # consent, hashed user ids, IP addresses: parsed as the collector parses them (an erasure must
    # find pseudonymised ids)
    privacy: PrivacySettings = field(default_factory=PrivacySettings)
    # MLFLOW_TRACKING_URI: a tracking server instead of the local store under data/mlflow
    mlflow_tracking_uri: str | None = None
    # How old the published data may get before a freshness breach is alerted (`alerting.py`):
    # PLATFORM_FRESHNESS_MAX_HOURS, parsed as the servers parse it (`semantic.settings`).
    freshness_limit: timedelta = timedelta(hours=26)
    # Where reports and alerts go (REPORTS_SMTP_*, REPORTS_EMAIL_*, REPORTS_*WEBHOOK_URL, REPORTS_SITE_URL,
    # REPORTS_DELIVERY_*; `reports.delivery.Settings.from_env` lists them): a wrong one is kept as a problem
    # of its channel, which reports it at delivery, so it never stops the data pipeline.
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    # REPORTS_PDF_PAGES: the report pages rendered to PDF (None: `reports.distribution.DEFAULT_PDF_PAGES`)
    report_pdf_pages: str | None = None
    # REPORTS_SERVE_LOG: `make serve-reports` logs every request
    reports_request_log: bool = False
    # PLATFORM_DUCKDB_MEMORY_LIMIT, PLATFORM_DUCKDB_THREADS: each DuckDB database of the run
    duckdb_limits: DuckDbLimits = field(default_factory=lambda: duckdb_limits_from({}))

    def now(self) -> datetime:
        return self.pinned_now or datetime.now(UTC)

    @property
    def dbt_target(self) -> str:
        return self.warehouse_target.target

    @property
    def postgres_dsn(self) -> str:
        return self.warehouse_target.postgres_dsn

    @property
    def layout(self) -> DataLayout:
        return DataLayout(self.data_dir)

    @property
    def dagster_home(self) -> Path:
        return self.data_dir / "dagster"

    @property
    def quality_dir(self) -> Path:
        """Great Expectations' project: validation results and the Data Docs site."""
        return self.data_dir / "quality"

    @property
    def dbt_results_dir(self) -> Path:
        """Result counts of each dbt step's last build, one JSON file per step."""
        return self.data_dir / "dbt_results"

    @property
    def dbt_state_dir(self) -> Path:
        """dbt's target folders, one per dbt step, kept between runs: dbt re-parses the whole project
        unless its last parse state for the same target and warehouse is in the target folder."""
        return self.data_dir / "dbt_state"

    @property
    def published_dir(self) -> Path:
        """Read snapshots of the warehouse for the metrics server and the reports."""
        return self.data_dir / "published"

    @property
    def reports_site_dir(self) -> Path:
        """The built Evidence site (static files: serve them, e.g. `make serve-reports`)."""
        return self.data_dir / "reports" / "site"

    @property
    def reports_exports_dir(self) -> Path:
        """The scheduled report's PDFs and datasets (CSV, XLSX, Parquet), one folder per data version."""
        return self.data_dir / "reports" / "exports"

    @property
    def backups_dir(self) -> Path:
        """Backups of the warehouse and the MLflow store (orchestration/lifecycle/backup.py)."""
        return self.data_dir / "backups"

    @property
    def mlflow_dir(self) -> Path | None:
        """The local MLflow store (database and artifacts); None when tracking goes to a server."""
        return None if self.mlflow_tracking_uri else self.data_dir / "mlflow"

    @property
    def alerts_dir(self) -> Path:
        """The outbox of high-severity insight alerts: pending, sent, and the keys already alerted."""
        return self.data_dir / "reports" / "alerts"

    def warehouse_destination(self):
        """Where dlt loads: the same warehouse the dbt target builds in."""
        from ingestion import pipelines  # dlt: imported by what loads, not by what only reads

        if self.dbt_target == "duckdb":
            return pipelines.duckdb_warehouse(self.layout.warehouse, self.duckdb_limits.settings())
        if self.dbt_target == "spark":
            return pipelines.parquet_files(self.warehouse_target.spark_sources)
        return pipelines.postgres_warehouse(self.postgres_dsn)

    def warehouse(self, read_only: bool = True) -> Warehouse:
        """The warehouse of the target, as a connection that speaks its dialect (`semantic/warehouse.py`);
        on DuckDB, within the run's limits."""
        warehouse = self.warehouse_target.connect(read_only)
        if self.dbt_target == "duckdb":
            for name, value in self.duckdb_limits.settings().items():
                warehouse.connection.execute(f"set {name} = '{value}'")
        return warehouse

    def publication(self) -> Publication:
        """Where the data readers read is published for this target (`semantic/publication.py`)."""
        return self.warehouse_target.publication(self.published_dir)

    @property
    def warehouse_location(self) -> str:
        return self.warehouse_target.location


def _sample_end_date(value: str, now: datetime) -> date:
    """`yesterday` (the default: the sample looks live, so freshness checks mean something) or a date."""
    if value == "yesterday":
        return now.astimezone(UTC).date() - timedelta(days=1)
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"PLATFORM_SAMPLE_END_DATE must be 'yesterday' or YYYY-MM-DD, not {value!r}") from None


def environment_from(env: dict[str, str]) -> Environment:
    data_dir = data_dir_from(env)
    pinned_now = pinned_now_from(env)
    return Environment(
        data_dir=data_dir,
        warehouse_target=WarehouseTarget.from_environment(env, data_dir),
        sample_size=env.get("PLATFORM_SAMPLE_SIZE", "default"),
        sample_seed=int(env.get("PLATFORM_SAMPLE_SEED", "42")),
        sample_end_date=_sample_end_date(env.get("PLATFORM_SAMPLE_END_DATE", "yesterday"),
                                         pinned_now or datetime.now(UTC)),
        # comma-separated names from ingestion/sample_data/faults.py, to prove the quality gates
        sample_faults=tuple(f for f in env.get("PLATFORM_SAMPLE_FAULTS", "").split(",") if f),
        schema_contract=env.get("PLATFORM_SCHEMA_CONTRACT", "evolve"),
        pinned_now=pinned_now,
        retention_config=Path(env.get("PLATFORM_RETENTION_CONFIG") or RETENTION_CONFIG).resolve(),
        privacy=privacy_settings_from(env),
        mlflow_tracking_uri=env.get("MLFLOW_TRACKING_URI") or None,
        freshness_limit=freshness_limit_from(env),
        delivery=DeliverySettings.from_env(env),
        report_pdf_pages=env.get("REPORTS_PDF_PAGES") or None,
        reports_request_log=bool(env.get("REPORTS_SERVE_LOG")),
        duckdb_limits=duckdb_limits_from(env),
    )



def tool(name: str) -> str:
    """A command installed with the platform's Python (dbt, dagster, mlflow): the one beside this
    interpreter, found even when its folder is not on PATH (`.venv/bin/python -m ...`); else PATH's."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else name


@cache
def current_environment() -> Environment:
    """The environment of this process; also exports what its subprocesses need.

    The warehouse paths that profiles.yml reads are always derived from the data directory (never
    inherited), so a dbt subprocess cannot build against another run's warehouse. The folder of
    this Python's commands goes first on PATH, so that dbt and dagster started by the platform
    (or by dagster-dbt) are the ones installed with it, however this process was started.
    """
    env = environment_from(dict(os.environ))
    os.environ["PLATFORM_WAREHOUSE"] = str(env.layout.warehouse)
    os.environ["PLATFORM_SPARK_DIR"] = str(env.warehouse_target.spark_dir)  # profiles.yml's spark target
    # profiles.yml's duckdb target: dbt's database within the same limits as the run's others
    os.environ["PLATFORM_DUCKDB_MEMORY_LIMIT"] = env.duckdb_limits.memory_limit
    os.environ["PLATFORM_DUCKDB_THREADS"] = str(env.duckdb_limits.threads)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # a local Spark listens on loopback only
    # dlt keeps the files of a load it completed (the rows, as extracted) unless told not to: they
    # would hold people's data past retention and erasure
    os.environ.setdefault("LOAD__DELETE_COMPLETED_JOBS", "true")
    commands = str(Path(sys.executable).parent)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != commands:
        os.environ["PATH"] = os.pathsep.join([commands, os.environ.get("PATH", "")])
    return env
