"""The quality gates through real Dagster runs of the main job on the tiny sample.

Clean data passes every expectation and is published (the session's `main_run`). Each fault the
generator can inject makes the right expectation fail with the observed value in its message,
stops everything downstream (dbt, the published snapshot), and leaves what was loaded in place:
failing rows are held in the quarantine, never deleted, and go through once the source fixes
them. Those runs are the main job run in the test's process (`run_in_process`), without the
reports site, which the gates never reach or are not about.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from expectations.runner import data_docs_index
from expectations.suites import SUITES
from ingestion.paths import DataLayout
from semantic import snapshots
from tests.conftest import SAMPLE_END, copy_of
from tests.ingestion.helpers import query, scalar
from tests.orchestration.helpers import mart_counts, run_in_process, without_forecasts

ALL_CHECKS = {(suite.name, check.name) for suite in SUITES for check in suite.checks}
# fault -> (suite, the expectation that must fail, the asset it guards)
FAULTS = {
    "volume_drop": ("raw_events", "daily_volume_in_band", "raw_events/events"),
    "null_user_ids": ("raw_events", "user_id_null_share_in_band", "raw_events/events"),
    "negative_revenue": ("raw_app", "order_totals_non_negative", "raw_app/orders"),
    "duplicate_order_ids": ("raw_events", "checkout_order_ids_unique", "raw_events/events"),
    "future_events": ("raw_events", "timestamps_not_in_future", "raw_events/events"),
    "dropped_column": ("raw_app", "users_has_required_columns", "raw_app/users"),
}


def run_records(data_dir: Path) -> tuple[set[str], dict[str, tuple[bool, str, str]]]:
    """Assets materialized by the latest run, and its quality checks: name -> (passed, severity, message)."""
    with dg.DagsterInstance.from_config(str(data_dir / "dagster")) as instance:
        run = instance.get_run_records(limit=1)[0].dagster_run
        logs = instance.all_logs(run.run_id)
    materialized = {e.dagster_event.asset_key.to_user_string() for e in logs
                    if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION}
    checks = {}
    for e in logs:
        if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            data = e.dagster_event.event_specific_data
            suite = data.metadata.get("suite")
            if suite is not None:
                checks[(suite.value, data.check_name)] = (data.passed, data.severity.value, data.description)
    return materialized, checks


def test_clean_data_passes_every_expectation_and_is_published(main_run):
    data_dir, out = main_run
    materialized, checks = run_records(data_dir)
    assert set(checks) == ALL_CHECKS
    assert [name for name, (passed, _, _) in checks.items() if not passed] == []
    assert f"quality gates (Great Expectations): {len(ALL_CHECKS)} passed, 0 failed, 0 warned" in out
    assert {"marts/metrics_daily", "published_warehouse"} <= materialized

    layout = DataLayout(data_dir)
    results = query(layout, "select suite, expectation, success, observed_value, validated_at "
                            "from quality.quality_results")
    assert {(s, e) for s, e, *_ in results} == ALL_CHECKS and all(success for _, _, success, *_ in results)
    assert scalar(layout, "select count(*) from quality.quarantined_rows") == 0
    index = data_docs_index(data_dir / "quality")
    assert index.exists() and "raw_events.events_daily" in index.read_text()

    conn, snapshot = snapshots.connect_current(data_dir / "published")
    with conn:
        assert conn.execute("select count(*) from marts.metrics_daily").fetchone()[0] == \
            scalar(layout, "select count(*) from marts.metrics_daily")
        assert conn.execute("select count(*) from quality.quality_results").fetchone()[0] == len(ALL_CHECKS)
    assert f"published for readers: data version {snapshot.version}" in out


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_fault_fails_its_expectation_and_stops_everything_downstream(fault, tmp_path):
    suite, expectation, asset = FAULTS[fault]
    data_dir = tmp_path / "data"
    out = run_in_process(data_dir, {"PLATFORM_SAMPLE_FAULTS": fault}, expect_success=False)
    materialized, checks = run_records(data_dir)

    failed = {name for name, (passed, severity, _) in checks.items() if not passed and severity == "ERROR"}
    assert failed == {(suite, expectation)}, out[-3000:]
    message = checks[(suite, expectation)][2]
    assert message.startswith(f"{suite}.{expectation} (critical) on {asset} FAILED: observed ")
    assert "; expected " in message
    assert message in out  # the main job's summary names it too

    # the raw data loaded, nothing downstream of the gate ran
    assert asset in materialized
    assert not [key for key in materialized if key.startswith(("staging/", "marts/", "intermediate/"))]
    assert "published_warehouse" not in materialized
    assert snapshots.current(data_dir / "published") is None


def test_row_level_failures_are_held_not_deleted(tmp_path):
    """Future-dated events stay in the raw table; the quarantine names them, the rule and the run."""
    data_dir = tmp_path / "data"
    run_in_process(data_dir, {"PLATFORM_SAMPLE_FAULTS": "future_events,duplicate_order_ids"}, expect_success=False)
    layout = DataLayout(data_dir)
    truth = json.loads(layout.ground_truth.read_text())["faults"]
    future = set(truth["future_events"]["event_ids"])
    copies = set(truth["duplicate_order_ids"]["duplicate_event_ids"])
    held = query(layout, "select row_key, expectation, reason, run_id from quality.quarantined_rows "
                         "where released_at is null")
    assert {k for k, e, _, _ in held if e == "timestamps_not_in_future"} == future
    # only the later copy of a duplicated order is held: the first report goes through
    assert {k for k, e, _, _ in held if e == "checkout_order_ids_unique"} == copies
    assert all(reason.startswith(f"{e}: ") and run_id for _, e, reason, run_id in held)
    in_raw = {k for (k,) in query(layout, "select event_id from raw_events.events")}
    assert future | copies <= in_raw


def _set_order_totals(app_db: Path, order_ids: list[str], sign: int) -> None:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    with sqlite3.connect(app_db) as conn:
        conn.executemany("UPDATE orders SET total_amount = ? * abs(total_amount), updated_at = ? WHERE order_id = ?",
                         [(sign, stamp, o) for o in order_ids])


def test_bad_rows_arriving_later_keep_the_warehouse_and_go_through_once_fixed(main_run, tmp_path):
    data_dir = copy_of(main_run[0], tmp_path)
    layout = DataLayout(data_dir)
    before = mart_counts(layout)
    revenue_before = scalar(layout, "select sum(order_total) from marts.fct_orders")
    published_before = snapshots.current(data_dir / "published")
    orders = [o for (o,) in query(layout, "select order_id from marts.fct_orders order by order_id limit 2")]

    # the app starts writing negative totals: the gate stops the run, and the warehouse keeps what it had
    _set_order_totals(layout.app_db, orders, -1)
    out = run_in_process(data_dir, expect_success=False)
    assert "raw_app.order_totals_non_negative (critical) on raw_app/orders FAILED" in out
    assert mart_counts(layout) == before
    assert scalar(layout, "select sum(order_total) from marts.fct_orders") == revenue_before
    assert snapshots.current(data_dir / "published") == published_before
    held = {k for (k,) in query(layout, "select row_key from quality.quarantined_rows where released_at is null")}
    assert held == set(orders)

    # run again before the fix: the held rows stay out, everything else goes through (to the published
    # snapshot; the forecasts, which these rows do not reach, are left out of the runs from here)
    run_in_process(data_dir, assets=without_forecasts())
    assert scalar(layout, "select count(*) from marts.fct_orders where order_id in (?, ?)", *orders) == 0
    assert scalar(layout, "select count(*) from raw_app.orders where order_id in (?, ?)", *orders) == 2

    # the source fixes them: released, and back in the marts with their fixed totals
    _set_order_totals(layout.app_db, orders, 1)
    run_in_process(data_dir, assets=without_forecasts())
    assert scalar(layout, "select count(*) from quality.quarantined_rows where released_at is null") == 0
    assert scalar(layout, "select count(*) from marts.fct_orders where order_id in (?, ?) and order_total > 0",
                  *orders) == 2
    assert mart_counts(layout) == before


def test_a_failed_warning_is_recorded_but_does_not_block(main_run, tmp_path):
    """A sample that ended weeks ago is stale: the freshness warning fails, and the data is still published."""
    data_dir = copy_of(main_run[0], tmp_path)
    weeks_later = f"{SAMPLE_END + timedelta(days=30)}T06:00:00Z"
    out = run_in_process(data_dir, {"PLATFORM_NOW": weeks_later}, assets=without_forecasts())
    materialized, checks = run_records(data_dir)
    failed = {name: severity for name, (passed, severity, _) in checks.items() if not passed}
    assert failed == {("marts", "newest_event_is_fresh"): "WARN"}
    assert "published_warehouse" in materialized
    assert f"{len(ALL_CHECKS) - 1} passed, 0 failed, 1 warned" in out
    assert "marts.newest_event_is_fresh (warning) on marts/fct_events FAILED: observed 1 of 1 rows" in out
    layout = DataLayout(data_dir)
    # the main job's run passed it; this run's failure is recorded after it
    assert query(layout, "select success, expected from quality.quality_results "
                         "where expectation = 'newest_event_is_fresh' order by validated_at") == [
        (True, "data_age_hours <= 48"), (False, "data_age_hours <= 48")]
