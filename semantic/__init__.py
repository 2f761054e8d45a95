"""The governed-metrics layer: MetricFlow's engine (`metricflow_engine`) over the published warehouse.

Metrics are defined once, in the dbt semantic models; this package compiles and serves them: Cube's REST
API and WebSocket subscriptions (`server`), the PostgreSQL wire protocol (`pgwire`), questions in plain
English (`questions`), the MCP server (`mcp_server`), the Cube model export (`cube_export`) and Superset's
provisioning (`superset`), all behind the same tokens and tenant filters (`auth`).
"""
