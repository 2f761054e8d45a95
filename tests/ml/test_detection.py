"""Anomaly detection out of sample: no day explains itself, an anomaly does not widen the noise of
the days after it, and a calendar event is expected and named, never flagged."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from ml import detection, events, insights
from ml.forecaster import Setup
from ml.forecasting import find_insights
from ml.series import to_panel
from tests.ml.synthetic import calendar, metrics_daily

SETUP = Setup("D", 7, 7)
DAYS = 84


def judged(wide: pd.DataFrame, calendar_: pd.DataFrame | None = None) -> pd.DataFrame:
    panel, _ = to_panel(wide, "commerce", calendar_)
    return detection.judge(panel[panel["metric"] == "orders"], SETUP).set_index(["unique_id", "ds"])


@pytest.fixture(scope="module")
def clean() -> pd.DataFrame:
    return judged(metrics_daily(days=DAYS))


def day(index: int) -> pd.Timestamp:
    return pd.date_range(end="2026-10-31", periods=DAYS, freq="D")[index]


def test_a_day_is_judged_against_a_forecast_made_without_it(clean):
    """Multiplying one day by ten changes nothing that was expected of it."""
    spiked = judged(metrics_daily(days=DAYS, anomalies=(("t002", 60, "orders", 10.0),)))
    key = ("t002/orders", day(60))
    assert spiked.loc[key, "expected"] == pytest.approx(clean.loc[key, "expected"])
    assert spiked.loc[key, "z"] > 8 and abs(clean.loc[key, "z"]) < detection.THRESHOLD


def test_spikes_and_drops_are_flagged_and_ordinary_days_are_not(clean):
    found = judged(metrics_daily(days=DAYS, anomalies=(("t001", 50, "orders", 2.8), ("t003", 70, "orders", 0.25))))
    flagged = found[found["score"].abs() >= detection.THRESHOLD]
    assert {("t001/orders", day(50)), ("t003/orders", day(70))} <= set(flagged.index)
    assert set(flagged.index.get_level_values("ds")) == {day(50), day(70)}  # the total may move with its tenant
    assert (clean["score"].abs() < detection.THRESHOLD).all()  # 4 series x 55 days: no false alarm


def test_a_drop_to_zero_neither_widens_the_noise_nor_lowers_the_forecasts_after_it(clean):
    dropped = judged(metrics_daily(days=DAYS, anomalies=(("t001", 45, "orders", 0.0),)))
    later = [("t001/orders", day(i)) for i in range(53, DAYS)]
    assert dropped.loc[("t001/orders", day(45)), "score"] < -detection.THRESHOLD
    # as if the day had been ordinary (refits on a history that differs by one day move them a little)
    ratio = dropped.loc[later, "scale"] / clean.loc[later, "scale"]
    assert abs(ratio.median() - 1) < 0.1 and ratio.max() < 1.25
    for forecast in ("expected_model", "expected_weekday"):  # both predictions a day can be judged against
        assert np.allclose(dropped.loc[later, forecast], clean.loc[later, forecast], rtol=0.05)


def test_a_calendar_event_is_expected_named_and_never_an_anomaly():
    wide = metrics_daily(days=DAYS, events={day(40).date().isoformat(): 2.5, day(75).date().isoformat(): 2.5})
    promotions = calendar({day(40).date().isoformat(): "Autumn sale", day(75).date().isoformat(): "Winter sale"})
    found = find_insights(wide, events.validate(promotions, {"t001", "t002", "t003"}), families=("commerce",))
    on_sale = found[pd.to_datetime(found["date_day"]).isin([day(40), day(75)])]
    assert not on_sale["insight_type"].str.startswith("anomaly").any()
    named = on_sale[on_sale["insight_type"] == "expected_event"]
    assert not named.empty and named["explanation"].str.contains("Winter sale|Autumn sale").all()
    assert (named["severity"] == "low").all()
    without = find_insights(wide, families=("commerce",))  # the same days, without the calendar, are anomalies
    assert pd.to_datetime(without[without["insight_type"] == "anomaly_spike"]["date_day"]).isin([day(75)]).any()


def test_series_too_short_for_a_model_fall_back_to_a_robust_z_score():
    wide = metrics_daily(days=21, tenants=2, anomalies=(("t002", 15, "orders", 4.0),))
    found = find_insights(wide)
    spike = found[found["insight_type"].str.startswith("anomaly") & (found["tenant_id"] == "t002")
                  & (found["metric"] == "orders")].iloc[0]
    assert spike["method"] == "robust_zscore" and spike["insight_type"] == "anomaly_spike"
    assert str(spike["date_day"]) == str(pd.date_range(end="2026-10-31", periods=21)[15].date())


JARGON = re.compile(r"z-score|\bt = |anomaly_|trend_|change_point|expected_event|\bt00\d\b|Revenue [^.]*\bwere\b")


def test_explanations_read_as_sentences_for_a_business_reader():
    """Tenants by name, money in dollars, verbs that agree, and no statistic or type code in the sentence."""
    wide = metrics_daily(days=DAYS, events={day(75).date().isoformat(): 2.5},
                         anomalies=(("t002", 60, "orders", 4.0), ("t001", 50, "revenue", 0.2)))
    promotions = events.validate(calendar({day(75).date().isoformat(): "Winter sale"}), {"t001", "t002", "t003"})
    names = {"t001": "Acme Retail", "t002": "Borealis Books", "t003": "Cobalt Coffee"}
    found = find_insights(wide, promotions, tenant_names=names)
    assert {"anomaly_spike", "expected_event"} <= set(found["insight_type"]), found["insight_type"].value_counts()
    for text in found["explanation"]:
        assert not JARGON.search(text), text
        assert any(name in text for name in names.values()) or "all tenants" in text, text
    revenue = found[found["metric"] == "revenue"]["explanation"]
    assert revenue.str.contains(r"\$\d").all() and revenue.str.contains(r"Revenue for [^.]* was ").any()
    assert found[found["metric"] == "orders"]["explanation"].str.contains(r"Orders for [^.]* were ").any()
    short = find_insights(metrics_daily(days=21, tenants=2, anomalies=(("t002", 15, "orders", 4.0),)))
    assert short["explanation"].str.contains("tenant t002").any()  # without a name, the id, said as such


def schedule(days: int = 98, changed_from: int = 63, anomaly: int = 80) -> pd.DataFrame:
    """Flights a day: the same count every weekday (one more or fewer on a day in three, so the
    MAD of the errors is zero), Saturdays cut from 270 to 230 for good from `changed_from`, and one
    day 30 flights short at `anomaly`."""
    dates = pd.date_range(end="2026-10-31", periods=days, freq="D")
    y = np.array([300.0, 290, 295, 305, 310, 270, 300])[dates.day_of_week]
    y += np.random.default_rng(1).choice([-1.0, 0, 0, 0, 0, 1], days)
    y[(np.arange(days) >= changed_from) & (dates.day_of_week == 5)] -= 40
    y[anomaly] -= 30
    return pd.DataFrame({"unique_id": "departures", "ds": dates, "y": y, "metric": "departures", "nonneg": True,
                         "counts": False, "event": "", "tenant_id": "", "event_name": ""})


def test_a_schedule_is_followed_exactly_and_a_changed_weekday_is_a_lasting_move():
    """A series forecast to the flight for weeks still has a noise (one step of its values), and a
    weekday cut for good is a new schedule, not an anomaly every week after it."""
    panel = schedule()
    found = detection.judge(panel, SETUP).set_index("ds")
    flagged = found[(found["score"].abs() >= detection.THRESHOLD) & ~found["shift"]]
    assert list(flagged.index) == [panel["ds"][80]] and flagged["score"].iloc[0] < 0
    saturdays = found[(found.index >= panel["ds"][63]) & (found.index.day_of_week == 5)]
    assert saturdays["shift"].iloc[:2].all() and abs(saturdays["score"].iloc[-1]) < detection.THRESHOLD
    # from the week after the move, the Saturdays' median reads the new schedule only (four weeks' mixed 250)
    assert np.allclose(saturdays["expected_weekday"].iloc[2:], 230, atol=1.5)


def test_a_lasting_move_is_continued_at_half_the_threshold_and_a_spike_on_top_stays_an_anomaly():
    """The second and third days of a new level count toward the move from half the threshold; a
    day twice as far out as the move, and by the threshold, is an anomaly on top of it."""
    def run(scores: list[float], flagged: list[bool]) -> list[list[int]]:
        streak: dict = {}
        return [detection._lasting(streak, "s", f, abs(z) >= detection.CONFIRM * detection.THRESHOLD, i, z,
                                   detection.SHIFT_RUN, on_top=True)
                for i, (z, f) in enumerate(zip(scores, flagged, strict=True))]

    t = detection.THRESHOLD
    assert run([-1.3 * t, -1.1 * t, -0.55 * t], [True, True, False])[-1] == [0, 1, 2]  # a schedule cut from a Tuesday
    assert not any(run([-0.6 * t, -0.6 * t, -0.6 * t], [False] * 3))  # never started by an anomaly
    assert not any(run([-1.1 * t, 0.6 * t, 0.6 * t], [True, False, False]))  # the other way: no run
    assert not any(run([-1.1 * t, -0.4 * t, -1.1 * t], [True, False, True]))  # broken by an ordinary day
    assert run([1.8 * t, 0.57 * t, 0.55 * t], [True, False, False])[-1] == [1, 2]  # a spike, then busier days
    assert run([-6.6 * t, -8.7 * t, -7.5 * t], [True] * 3)[-1] == [0, 1, 2]  # one big move, in tiny noise units


def test_a_new_schedule_is_withdrawn_once_confirmed_and_a_real_drop_stays_confirmed():
    """As of the day, the first Tuesday and Wednesday of a new schedule (30 flights fewer for good)
    are anomalies, published as provisional; two weeks later the weeks after them say they were the
    new schedule: the confirmed verdict withdraws them, and keeps the drop of `schedule()`'s day 80."""
    panel = schedule(days=105, changed_from=200)
    change = [i for i in range(56, 63) if panel["ds"][i].day_of_week in (1, 2)]  # that week's Tuesday, Wednesday
    panel.loc[(panel.index >= change[0]) & panel["ds"].dt.day_of_week.isin([1, 2]), "y"] -= 30
    days = panel["ds"][change].tolist()
    that_week = insights.anomalies(detection.judge(panel.iloc[:change[1] + 2], SETUP))  # the run of that Thursday
    on_the_day = that_week[that_week["date_day"].isin(days)]
    assert list(on_the_day["insight_type"]) == ["anomaly_drop"] * 2 and (on_the_day["verdict"] == "provisional").all()
    assert on_the_day["explanation"].str.contains("Provisional").all()
    judged = detection.judge(panel, SETUP)
    found = insights.anomalies(judged).set_index("date_day")
    assert list(found.loc[days, "insight_type"]) == ["withdrawn_anomaly"] * 2
    assert (found.loc[days, "verdict"] == "confirmed").all() and (found.loc[days, "severity"] == "low").all()
    assert found.loc[days, "explanation"].str.contains("no longer an anomaly").all()
    assert np.allclose(found.loc[days, "expected"], panel["y"][change], atol=1.5)  # the weeks after: the new schedule
    drop = found.loc[panel["ds"][80]]
    assert drop["insight_type"] == "anomaly_drop" and drop["verdict"] == "confirmed"
    assert drop["score"] <= -detection.CONFIRMED_THRESHOLD
    others = found.drop(index=[*days, panel["ds"][80]])
    assert not others["insight_type"].str.startswith("anomaly").any(), others  # the later Tuesdays: a lasting move
    last = judged.set_index("ds")["verdict"]
    assert (last.iloc[-14:] == "provisional").all() and (last.iloc[:-14] == "confirmed").all()
    # a missing day: the weeks around a day are read by date, not by row
    gapped = detection.judge(panel.drop(index=[70]), SETUP).set_index("ds").loc[panel["ds"][80]]
    assert gapped["expected_confirmed"] == pytest.approx(judged.set_index("ds").loc[panel["ds"][80],
                                                                                     "expected_confirmed"])
