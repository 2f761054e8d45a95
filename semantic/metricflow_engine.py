"""MetricFlow's Python engine on the published data: compile and run governed metric queries.

The metrics server, rollups and the other readers all go through here, so a metric is compiled
from the one set of definitions (`target/semantic_manifest.json`, written by `dbt parse`) for
the engine that holds the data. MetricFlow ships SQL clients only inside dbt's adapters, so this
module implements its `SqlClient` protocol on the publication's reader (`publication.Reader`),
which runs each statement on its own cursor, read-only, for DuckDB and PostgreSQL alike.

The manifest names each model's table as dbt built it (`"warehouse"."marts"."fct_orders"`);
readers read the published copy, so `load_semantic_manifest` can point every model at another
relation (PostgreSQL's published schemas).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from metricflow.data_table.mf_table import MetricFlowDataTable
from metricflow.engine.metricflow_engine import MetricFlowEngine, MetricFlowQueryRequest
from metricflow.protocols.sql_client import SqlEngine
from metricflow.sql.render.duckdb_renderer import DuckDbSqlPlanRenderer
from metricflow.sql.render.postgres import PostgresSQLSqlPlanRenderer
from metricflow.sql.render.sql_plan_renderer import SqlPlanRenderer
from metricflow_semantics.model.dbt_manifest_parser import parse_manifest_from_dbt_generated_manifest
from metricflow_semantics.model.semantic_manifest_lookup import SemanticManifestLookup
from metricflow_semantics.sql.sql_bind_parameters import SqlBindParameterSet

__all__ = ["MetricFlowEngine", "MetricFlowQueryRequest", "ReaderSqlClient", "WarehouseReader", "engine_on",
           "engine_on_warehouse", "load_semantic_manifest"]

NO_PARAMETERS = SqlBindParameterSet()  # immutable: safe as a shared default
ENGINES: dict[str, tuple[SqlEngine, type[SqlPlanRenderer]]] = {
    "duckdb": (SqlEngine.DUCKDB, DuckDbSqlPlanRenderer),
    "postgres": (SqlEngine.POSTGRES, PostgresSQLSqlPlanRenderer),
}
# (schema, table) -> (database or None, schema, table) of the relation readers read
Relations = Callable[[str, str], tuple[str | None, str, str]]


class ReaderSqlClient:
    """MetricFlow's `SqlClient` on a publication's reader (anything with `engine` and `run`)."""

    def __init__(self, reader) -> None:
        if reader.engine not in ENGINES:
            raise ValueError(f"MetricFlow cannot compile for {reader.engine!r}: use one of {', '.join(ENGINES)}")
        self._reader = reader
        self._engine, renderer = ENGINES[reader.engine]
        self._renderer = renderer()

    @property
    def sql_engine_type(self) -> SqlEngine:
        return self._engine

    @property
    def sql_plan_renderer(self) -> SqlPlanRenderer:
        return self._renderer

    def query(self, stmt: str, sql_bind_parameter_set: SqlBindParameterSet = NO_PARAMETERS
              ) -> MetricFlowDataTable:
        names, rows = self._reader.run(stmt, parameters=self._parameters(sql_bind_parameter_set))
        return MetricFlowDataTable.create_from_rows(column_names=names, rows=rows)

    def execute(self, stmt: str, sql_bind_parameter_set: SqlBindParameterSet = NO_PARAMETERS) -> None:
        self._reader.run(stmt, parameters=self._parameters(sql_bind_parameter_set), fetch=False)

    def dry_run(self, stmt: str, sql_bind_parameter_set: SqlBindParameterSet = NO_PARAMETERS) -> None:
        """Plans the statement without running it; raises if the engine cannot bind it."""
        self.execute(f"EXPLAIN {stmt}", sql_bind_parameter_set)

    def close(self) -> None:
        """The reader belongs to the service that opened it."""

    def render_bind_parameter_key(self, bind_parameter_key: str) -> str:
        return f"${bind_parameter_key}" if self._engine is SqlEngine.DUCKDB else f"%({bind_parameter_key})s"

    @staticmethod
    def _parameters(parameters: SqlBindParameterSet) -> dict | None:
        return dict(parameters.param_dict) or None


def load_semantic_manifest(path: Path, relations: Relations | None = None) -> SemanticManifestLookup:
    """The governed definitions as MetricFlow reads them, from dbt's `semantic_manifest.json`;
    with `relations`, each semantic model reads the relation it maps its dbt table to."""
    manifest = json.loads(path.read_text())
    if relations is not None:
        for model in manifest["semantic_models"]:
            node = model["node_relation"]
            database, schema, alias = relations(node["schema_name"], node["alias"])
            node.update(database=database, schema_name=schema, alias=alias, relation_name=".".join(
                f'"{part}"' for part in (database, schema, alias) if part is not None))
    return SemanticManifestLookup(parse_manifest_from_dbt_generated_manifest(json.dumps(manifest)))


class WarehouseReader:
    """A run's own warehouse (`semantic.warehouse.Warehouse`) as a reader, for the steps of a run that
    query governed metrics before their data is published (the insights' drivers, `ml/drivers.py`).
    MetricFlow's SQL is already the engine's: it runs as it is, never translated."""

    def __init__(self, warehouse) -> None:
        self.warehouse, self.engine = warehouse, warehouse.dialect

    def run(self, sql, parameters=None, timezone="UTC", fetch=True):
        connection = self.warehouse.connection
        cursor = connection if self.engine == "duckdb" else connection.cursor()
        cursor.execute("set TimeZone = '" + timezone.replace("'", "''") + "'")
        cursor.execute(sql, parameters)
        return ([d[0] for d in cursor.description], [tuple(row) for row in cursor.fetchall()]) if fetch else ([], [])

    def close(self) -> None:
        """The warehouse belongs to whoever opened it."""


def engine_on(reader, semantic_manifest: Path, relations: Relations | None = None) -> MetricFlowEngine:
    """MetricFlow on a reader (the published data's, or `WarehouseReader`), from the governed definitions."""
    return MetricFlowEngine(semantic_manifest_lookup=load_semantic_manifest(semantic_manifest, relations),
                            sql_client=ReaderSqlClient(reader))


def engine_on_warehouse(warehouse, semantic_manifest: Path) -> MetricFlowEngine:
    """MetricFlow on a run's own warehouse (`semantic.warehouse.Warehouse`, any engine): each semantic
    model reads its dbt table in the connection's own database. The manifest names the database dbt
    parsed it for (the DuckDB file's catalog, `warehouse`), which a PostgreSQL database is not: SQL
    naming it there fails ("cross-database references are not implemented")."""
    return engine_on(WarehouseReader(warehouse), semantic_manifest, lambda schema, table: (None, schema, table))
