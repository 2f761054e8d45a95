"""Every quality suite, in the order a run reaches the assets they guard."""

from expectations.suites import marts, raw_app, raw_events

SUITES = (raw_app.SUITE, raw_events.SUITE, marts.SUITE)
