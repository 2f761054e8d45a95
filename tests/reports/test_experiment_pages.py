"""The experiments' analysis in the main job and its Evidence pages, opened in headless Chromium:
the index of declared experiments, and one page per experiment with its decision, sample-ratio
status and the lift of its primary metric over time. Screenshots go to tests/artifacts/reports/."""

from __future__ import annotations

from reports import browser
from semantic import snapshots
from tests.reports.test_site import ARTIFACTS, open_page


def _published(data_dir, sql: str) -> list[tuple]:
    conn, _ = snapshots.connect_current(data_dir / "published")
    with conn:
        return conn.execute(sql).fetchall()


def test_the_main_job_analyses_every_declared_experiment_and_publishes_the_results(main_run):
    data_dir, out = main_run
    decisions = dict(_published(data_dir, "select experiment_id, status from marts.fct_experiment_decisions"))
    assert decisions == {"exp_01": "not_enough_data", "exp_02": "no_data", "exp_03": "no_data"}
    assert "exp_01 (not_enough_data): Not enough data yet: about" in out
    latest = _published(data_dir, "select variant, count(*), count(relative_lift) from marts.fct_experiment_results "
                                   "group by 1 order by 1")
    assert latest == [("control", 5, 0), ("treatment", 5, 5)]  # the primary and four secondary metrics
    days, = _published(data_dir, "select count(distinct analysis_date) from marts.fct_experiment_results_daily")[0]
    assert days > 10


def test_each_experiment_has_a_page_with_its_decision_sample_ratio_and_lift_over_time(main_run, chromium):
    data_dir, _ = main_run
    decided = dict(_published(data_dir, "select experiment_id, decision from marts.fct_experiment_decisions"))
    with browser.serving(data_dir / "reports" / "site") as base:
        text, errors, _, _ = open_page(chromium, base + "/experiments", ARTIFACTS / "experiments.png")
        assert errors == [] and browser.EVIDENCE_ERROR not in text
        assert all(f"{e}: " in text for e in decided)  # a link to each experiment's page
        for experiment, decision in decided.items():
            text, errors, charts, _ = open_page(chromium, f"{base}/experiments/{experiment}",
                                                ARTIFACTS / f"experiments-{experiment}.png")
            assert errors == [] and browser.EVIDENCE_ERROR not in text, (experiment, errors)
            assert decision in text, experiment
            if experiment == "exp_01":
                assert "Sample ratio: OK: users per variant match the declared split" in text
                assert "Lift of orders per user over time" in text and charts == 1
            else:
                assert "Sample ratio: not checked: no analysed users yet" in text and charts == 0
