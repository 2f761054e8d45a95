"""Sources of the platform: event schemas, the landing zone, dlt sources and pipelines, sample data.

This package knows nothing about dbt models or Dagster: orchestration wires it.
"""
