"""Rollups answer standard dashboard queries with exactly MetricFlow's numbers, and only those.

Two services read the same published snapshot, one with rollups and one without: every query a
rollup serves must give the same rows as MetricFlow compiling it against the marts.
"""

from __future__ import annotations

import pytest

from orchestration.environment import SEMANTIC_MANIFEST
from semantic import rollups, snapshots
from semantic.client import MetricsClient
from semantic.cube_query import Translator
from semantic.publication import DuckDbSnapshots
from semantic.service import MetricsService
from tests.conftest import sample_day

# from before the sample's first day to a week before its last
DAYS = [sample_day(40).isoformat(), sample_day(6).isoformat()]


def _time(granularity: str, date_range=DAYS) -> list[dict]:
    return [{"dimension": "metrics.metric_time", "granularity": granularity, "dateRange": date_range}]


SERVED = {
    "sums by tenant and day": ({"measures": ["metrics.revenue", "metrics.orders", "metrics.events"],
                                "dimensions": ["metrics.tenant"], "timeDimensions": _time("day")}, None),
    "sums re-added by month": ({"measures": ["metrics.revenue", "metrics.new_users"],
                                "timeDimensions": _time("month", None)}, None),
    "ratios by week": ({"measures": ["metrics.average_order_value", "metrics.conversion_rate"],
                        "dimensions": ["metrics.tenant"], "timeDimensions": _time("week")}, None),
    "ratio across models by quarter": ({"measures": ["metrics.customer_acquisition_cost"],
                                        "timeDimensions": _time("quarter", None)}, None),
    "distinct counts per day for one tenant": ({"measures": ["metrics.active_users", "metrics.new_users"],
                                                "timeDimensions": _time("day")}, "t002"),
    "end-of-day balance by tenant": ({"measures": ["metrics.mrr", "metrics.churn_rate"],
                                      "dimensions": ["metrics.tenant"], "timeDimensions": _time("day")}, None),
    "one total over a range": ({"measures": ["metrics.revenue", "metrics.sessions"],
                                "timeDimensions": [{"dimension": "metrics.metric_time", "dateRange": DAYS}]}, None),
    "tenant filters": ({"measures": ["metrics.revenue"], "dimensions": ["metrics.tenant"],
                        "timeDimensions": _time("month", None),
                        "filters": [{"member": "metrics.tenant", "operator": "equals", "values": ["t001", "t003"]},
                                    {"member": "metrics.tenant", "operator": "notEquals", "values": ["t003"]}]},
                       None),
    "a distinct count pinned by a filter": ({"measures": ["metrics.active_users"], "timeDimensions": _time("day"),
                                             "filters": [{"member": "metrics.tenant", "operator": "equals",
                                                          "values": ["t001"]}]}, None),
    "forecasts": ({"measures": ["metrics.forecast_revenue"],
                   "timeDimensions": _time("day", [sample_day(-1).isoformat(), sample_day(-30).isoformat()])}, None),
    "orders by the buyer's country, filtered by device": (
        {"measures": ["metrics.revenue", "metrics.orders", "metrics.average_order_value"],
         "dimensions": ["metrics.tenant", "metrics.user__country"], "timeDimensions": _time("month"),
         "filters": [{"member": "metrics.user__device", "operator": "equals", "values": ["mobile", "tablet"]}]},
        None),
}
USES = {"orders by the buyer's country, filtered by device": "orders_by_customer"}

NOT_SERVED = {
    "a distinct count re-aggregated": {"measures": ["metrics.active_users"], "dimensions": ["metrics.tenant"],
                                       "timeDimensions": _time("month")},
    "a distinct count over all tenants": {"measures": ["metrics.active_users"], "timeDimensions": _time("day")},
    "a dimension the rollups lack": {"measures": ["metrics.revenue"], "dimensions": ["metrics.tenant__industry"]},
    "another time zone": {"measures": ["metrics.revenue"], "timeDimensions": _time("day"),
                          "timezone": "America/New_York"},
    "a filter it cannot apply": {"measures": ["metrics.revenue"], "dimensions": ["metrics.tenant"],
                                 "filters": [{"member": "metrics.tenant", "operator": "contains", "values": ["1"]}]},
    "a metric it lacks": {"measures": ["metrics.weekly_active_users", "metrics.revenue"],
                          "timeDimensions": _time("day")},
}


@pytest.fixture(scope="module")
def services(published):
    publication = DuckDbSnapshots(published.warehouse, published.root / "published")
    with_rollups = MetricsService(publication, SEMANTIC_MANIFEST, workers=2)
    without = MetricsService(publication, SEMANTIC_MANIFEST, workers=2, use_rollups=False)
    assert [r.name for r in with_rollups.current().rollups] == ["daily_kpis", "orders_by_customer"]
    assert without.current().rollups == ()
    return with_rollups, without


def _normalized(rows: list[dict]) -> list[tuple]:
    def value(v):
        try:
            return repr(round(float(v), 9))
        except (TypeError, ValueError):
            return repr(v)  # None and text sort with the numbers
    return sorted(tuple(sorted((k, value(v)) for k, v in row.items())) for row in rows)


def _run(service: MetricsService, query: dict, tenant: str | None):
    plan = Translator(service.catalog, tenant).plan(query)
    return service.submit(plan, tenant or "admin").result(timeout=60)


@pytest.mark.parametrize("name", SERVED)
def test_a_rollup_answers_with_metricflows_numbers(services, name):
    with_rollups, without = services
    query, tenant = SERVED[name]
    served, compiled = _run(with_rollups, query, tenant), _run(without, query, tenant)
    assert served.rollup == USES.get(name, "daily_kpis") and compiled.rollup is None
    assert compiled.rows, "the query must return rows for the comparison to mean something"
    assert _normalized(served.rows) == _normalized(compiled.rows)


@pytest.mark.parametrize("name", NOT_SERVED)
def test_other_queries_go_to_metricflow(services, name):
    with_rollups, _ = services
    assert _run(with_rollups, NOT_SERVED[name], None).rollup is None


def test_the_reply_names_the_rollup_used(server):
    with MetricsClient(server.url, server.token("t001")) as client:
        reply = client.load({"measures": ["metrics.revenue"], "timeDimensions": _time("day")}).results[0]
        assert list(reply["usedPreAggregations"]) == ["rollups.daily_kpis"]
        other = client.load({"measures": ["metrics.revenue"], "dimensions": ["metrics.tenant__industry"]}).results[0]
        assert other["usedPreAggregations"] == {}


def test_rollups_are_in_the_snapshot_and_hold_every_tenant_day(published):
    snapshot = snapshots.current(published.root / "published")
    with snapshot.connect() as conn:
        rows, tenants, days = conn.execute(
            "select count(*), count(distinct tenant), count(distinct metric_time__day) "
            "from rollups.daily_kpis").fetchone()
        built = conn.execute("select name, rows from rollups._catalog order by name").fetchall()
        facts = conn.execute("select count(*) from marts.metrics_daily").fetchone()[0]
    assert built[0] == ("daily_kpis", rows) and built[1][0] == "orders_by_customer" and built[1][1] > 0
    assert rows >= facts and tenants == 3 and days > 28


def test_a_rollup_naming_an_unknown_metric_is_refused(tmp_path):
    from semantic.metricflow_engine import load_semantic_manifest

    bad = tmp_path / "rollups.yml"
    bad.write_text("rollups:\n  - {name: x, metrics: [revenue, revenu], dimensions: [tenant]}\n")
    with pytest.raises(ValueError, match="unknown metric 'revenu'"):
        rollups.declared(load_semantic_manifest(SEMANTIC_MANIFEST), bad)
    bad.write_text("rollups:\n  - {name: x, metrics: [revenue], dimensions: [channel]}\n")
    with pytest.raises(ValueError, match="must keep 'tenant'"):
        rollups.declared(load_semantic_manifest(SEMANTIC_MANIFEST), bad)


def test_a_rollup_that_fails_to_build_publishes_nothing(published, tmp_path):
    """The last good snapshot stays current and no half-built file is left behind."""
    published_dir = tmp_path / "published"
    publication = DuckDbSnapshots(published.warehouse, published_dir)
    first = publication.publish()
    files = sorted((published_dir / "lake").rglob("*"))

    def failing(warehouse, reader, publication, changed):
        raise RuntimeError("rollup build failed")

    with pytest.raises(RuntimeError, match="rollup build failed"):
        publication.publish(build=failing)
    assert snapshots.current(published_dir).version == first.version
    assert sorted((published_dir / "lake").rglob("*")) == files
