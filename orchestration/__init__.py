"""The Dagster code location: assets, checks, resources, schedules and jobs wiring the platform."""
