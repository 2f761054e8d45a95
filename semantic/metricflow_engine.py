"""MetricFlow's Python engine on the DuckDB warehouse: compile and run governed metric queries.

The metrics server, reports and question translator all go through here, so a metric is compiled
from the one set of definitions (`target/semantic_manifest.json`, written by `dbt parse`) and run
on the warehouse. MetricFlow ships no DuckDB client of its own outside the dbt adapter, so this
module implements its `SqlClient` protocol on a plain DuckDB connection (read-only: readers never
take the writer's lock).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
from metricflow.data_table.mf_table import MetricFlowDataTable
from metricflow.engine.metricflow_engine import MetricFlowEngine, MetricFlowQueryRequest
from metricflow.protocols.sql_client import SqlEngine
from metricflow.sql.render.duckdb_renderer import DuckDbSqlPlanRenderer
from metricflow.sql.render.sql_plan_renderer import SqlPlanRenderer
from metricflow_semantics.model.dbt_manifest_parser import parse_manifest_from_dbt_generated_manifest
from metricflow_semantics.model.semantic_manifest_lookup import SemanticManifestLookup
from metricflow_semantics.sql.sql_bind_parameters import SqlBindParameterSet

__all__ = ["DuckDbSqlClient", "MetricFlowEngine", "MetricFlowQueryRequest", "load_semantic_manifest"]

NO_PARAMETERS = SqlBindParameterSet()  # immutable: safe as a shared default


class DuckDbSqlClient:
    """MetricFlow's `SqlClient` on one DuckDB connection; each call uses its own cursor."""

    def __init__(self, connection: duckdb.DuckDBPyConnection) -> None:
        self._connection = connection
        self._renderer = DuckDbSqlPlanRenderer()

    @property
    def sql_engine_type(self) -> SqlEngine:
        return SqlEngine.DUCKDB

    @property
    def sql_plan_renderer(self) -> SqlPlanRenderer:
        return self._renderer

    def query(self, stmt: str, sql_bind_parameter_set: SqlBindParameterSet = NO_PARAMETERS
              ) -> MetricFlowDataTable:
        cursor = self._connection.cursor()
        try:
            cursor.execute(stmt, self._parameters(sql_bind_parameter_set))
            names = [column[0] for column in cursor.description]
            return MetricFlowDataTable.create_from_rows(column_names=names, rows=cursor.fetchall())
        finally:
            cursor.close()

    def execute(self, stmt: str, sql_bind_parameter_set: SqlBindParameterSet = NO_PARAMETERS) -> None:
        cursor = self._connection.cursor()
        try:
            cursor.execute(stmt, self._parameters(sql_bind_parameter_set))
        finally:
            cursor.close()

    def dry_run(self, stmt: str, sql_bind_parameter_set: SqlBindParameterSet = NO_PARAMETERS) -> None:
        """Plans the statement without running it; raises if DuckDB cannot bind it."""
        self.execute(f"EXPLAIN {stmt}", sql_bind_parameter_set)

    def close(self) -> None:
        self._connection.close()

    def render_bind_parameter_key(self, bind_parameter_key: str) -> str:
        return f"${bind_parameter_key}"

    @staticmethod
    def _parameters(parameters: SqlBindParameterSet) -> dict | None:
        """MetricFlow's bind parameters as DuckDB's named `$key` parameters."""
        return dict(parameters.param_dict) or None


def load_semantic_manifest(path: Path) -> SemanticManifestLookup:
    """The governed definitions as MetricFlow reads them, from dbt's `semantic_manifest.json`."""
    return SemanticManifestLookup(parse_manifest_from_dbt_generated_manifest(path.read_text()))
