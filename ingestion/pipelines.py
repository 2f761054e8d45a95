"""The dlt pipelines: which source lands in which raw schema of the warehouse.

Raw schemas are named per source (`raw_app`, `raw_events`, `raw_marketing`); dbt declares the
same names as its sources, which is how the asset graph connects loads to models.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dlt
from dlt.common.destination import Destination

from ingestion.paths import DataLayout
from ingestion.privacy import ErasureLog
from ingestion.sources.app_db import app_db_source
from ingestion.sources.events import events_source
from ingestion.sources.landing import Contract
from ingestion.sources.marketing import marketing_source


@dataclass(frozen=True)
class LoadTarget:
    pipeline_name: str
    dataset_name: str  # the raw schema it loads into
    dbt_source: str  # the dbt source that reads that schema (named after the system, dbt's convention)


APP_DB = LoadTarget("app_db", "raw_app", "app")
EVENTS = LoadTarget("events", "raw_events", "events")
MARKETING = LoadTarget("marketing", "raw_marketing", "marketing")
TARGETS = (APP_DB, EVENTS, MARKETING)


def duckdb_warehouse(path: Path, settings: dict[str, str] | None = None) -> Destination:
    """The embedded default: one DuckDB file; `settings` are DuckDB's for the load's database
    (the run's memory limit and threads: `orchestration.environment.DuckDbLimits`)."""
    if not settings:
        return dlt.destinations.duckdb(str(path))
    return dlt.destinations.duckdb({"database": str(path), "global_config": settings})


def postgres_warehouse(dsn: str) -> Destination:
    """A Postgres warehouse; dlt creates the raw schemas in its database."""
    return dlt.destinations.postgres(credentials=dsn)


def parquet_files(folder: Path) -> Destination:
    """The spark target's sources: dlt's filesystem destination writing Parquet, one folder per table
    under <dataset>/<table>, which the dbt project registers as Spark tables (macros/spark_sources.sql).
    Plain files have no MERGE, so dlt appends (it warns so): a row the app database changed after an
    earlier load gets a second copy, which the app sources' unique tests then report (docs/scaling.md)."""
    return dlt.destinations.filesystem(bucket_url=str(folder.resolve()), preferred_loader_file_format="parquet")


def make_pipeline(target: LoadTarget, warehouse: Destination, pipelines_dir: Path) -> dlt.Pipeline:
    """A pipeline into the warehouse; its state and pending packages live in `pipelines_dir`."""
    return dlt.pipeline(
        pipeline_name=target.pipeline_name,
        destination=warehouse,
        dataset_name=target.dataset_name,
        pipelines_dir=str(pipelines_dir),
    )


def source_for(target: LoadTarget, layout: DataLayout, contract: Contract = "evolve",
               landing_dir: Path | None = None) -> dlt.sources.DltSource:
    """A new source for one target; build one per run (each run has its own load time and dedup).
    The sources that name people leave out those erased so far. `landing_dir`: read a landing
    feed's files from there instead (a restore's replay)."""
    if target == APP_DB:
        return app_db_source(layout.app_db, contract, suppression=ErasureLog(layout.privacy_dir).suppression())
    if target == EVENTS:
        return events_source(landing_dir or layout.events_dir,
                             suppression=ErasureLog(layout.privacy_dir).suppression())
    if target == MARKETING:
        return marketing_source(landing_dir or layout.marketing_dir, contract)
    raise ValueError(f"unknown load target {target}")


def load_all(layout: DataLayout, contract: Contract = "evolve") -> dict[str, object]:
    """Run every pipeline once, outside Dagster (benchmarks, notebooks); returns dlt's load info."""
    return {
        target.pipeline_name: make_pipeline(target, duckdb_warehouse(layout.warehouse), layout.dlt_dir).run(
            source_for(target, layout, contract))
        for target in TARGETS
    }


def main() -> None:
    """`python -m ingestion.pipelines --data-dir data`: every load once into the DuckDB warehouse."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--contract", choices=("evolve", "freeze"), default="evolve")
    args = parser.parse_args()
    for name, info in load_all(DataLayout(args.data_dir), args.contract).items():
        print(f"{name}: {info}")


if __name__ == "__main__":
    main()
