"""`dbt build` on the tiny sample: every model, data test and unit test passes, and the marts
hold the numbers the sources imply."""

from __future__ import annotations

import json
import sqlite3

from ingestion import pipelines
from ingestion.paths import DataLayout, write_atomically
from tests.conftest import copy_of, dbt, sample_day
from tests.ingestion.helpers import event_line, load, query, scalar


def built_statuses(results: dict) -> set[str]:
    """The statuses of what a build built and tested (dbt reports the exposures it selects as no-op)."""
    return {r["status"] for r in results["results"] if not r["unique_id"].startswith("exposure.")}


def test_every_model_and_test_passes(built):
    _, results = built
    statuses = {}
    for r in results["results"]:
        kind = r["unique_id"].split(".")[0]
        statuses.setdefault(kind, set()).add(r["status"])
    assert statuses["model"] == {"success"}
    assert statuses["test"] == {"pass"}
    assert statuses["unit_test"] == {"pass"}
    unit_tests = [r["unique_id"] for r in results["results"] if r["unique_id"].startswith("unit_test.")]
    assert len(unit_tests) >= 3


def test_sessions_match_the_simulated_sessions(built):
    layout, _ = built
    truth = json.loads(layout.ground_truth.read_text())
    assert scalar(layout, "select count(*) from marts.fct_sessions") == truth["app_db"]["sessions"]


def test_daily_revenue_equals_the_app_database(built):
    layout, _ = built
    with sqlite3.connect(layout.app_db) as conn:
        expected = dict(conn.execute(
            "select date(created_at), round(sum(total_amount), 2) from orders where status = 'completed' group by 1"))
    actual = {str(d): float(v) for d, v in query(
        layout, "select date_day, sum(revenue) from marts.metrics_daily group by 1 having sum(revenue) > 0")}
    assert actual.keys() == expected.keys()
    assert all(abs(actual[d] - expected[d]) < 0.01 for d in expected)


def test_every_tenant_every_day(built):
    layout, _ = built
    tenants = scalar(layout, "select count(*) from marts.dim_tenants")
    days = scalar(layout, "select count(distinct date_day) from marts.metrics_daily")
    assert scalar(layout, "select count(*) from marts.metrics_daily") == tenants * days
    assert days == json.loads(layout.ground_truth.read_text())["size"]["days"]


def test_incremental_events_land_late_events_in_their_day_and_replays_change_nothing(built, tmp_path):
    sample = DataLayout(copy_of(built[0].root, tmp_path))
    day = sample_day(21).isoformat()
    before = dict(query(sample, "select tenant_id, events from marts.metrics_daily where date_day = ?", day))
    total = scalar(sample, "select count(*) from marts.fct_events")
    late = [event_line(f"late-{i}", timestamp=f"{day}T08:00:0{i}Z") for i in range(3)]
    write_atomically(sample.events_dir / "events_late.jsonl", b"\n".join(late) + b"\n")
    load(sample, pipelines.EVENTS)
    results = dbt(sample, "build", "--select", "fct_events+")
    assert scalar(sample, "select count(*) from marts.fct_events") == total + 3
    after = dict(query(sample, "select tenant_id, events from marts.metrics_daily where date_day = ?", day))
    assert after["t001"] == before["t001"] + 3
    assert built_statuses(results) <= {"success", "pass"}
    # a replayed file loads nothing, and a rebuild changes nothing
    assert load(sample, pipelines.EVENTS) == {}
    dbt(sample, "build", "--select", "fct_events")
    assert scalar(sample, "select count(*) from marts.fct_events") == total + 3


def test_forecast_mart_holds_the_tenant_forecasts(built):
    layout, _ = built
    expected = query(layout, """
        select tenant_id, metric, cast(forecast_date as date), prediction, upper_95
        from ml.forecast_daily where tenant_id <> 'all' order by 1, 2, 3""")
    actual = query(layout, """
        select tenant_id, metric, forecast_date, prediction, upper_95
        from marts.fct_forecasts order by 1, 2, 3""")
    assert actual == expected
    assert len(actual) > 0


def test_forecast_mart_is_empty_before_any_forecast(built):
    """The first `dbt build` of the shared fixture ran before any forecast (no ml.forecast_daily yet):
    it built and tested the forecast mart empty."""
    layout, results = built
    first = json.loads((layout.root.parent / "first_build.json").read_text())
    assert first["fct_forecasts_rows"] == 0
    assert built_statuses(results) <= {"success", "pass"}
    assert any(r["unique_id"].endswith(".fct_forecasts") for r in results["results"])
