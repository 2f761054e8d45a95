"""The governed-metrics layer: MetricFlow's engine on the warehouse (`metricflow_engine`).

Metrics are defined once, in the dbt semantic models; this package compiles and serves them. The
Cube-compatible REST server, the Postgres-wire endpoint and the Cube export are not built yet.
"""
