"""The governed-metrics server (Cube-compatible REST, Postgres wire) on MetricFlow: not built yet.

Metrics are defined once, in the dbt semantic models; this package serves them.
"""
