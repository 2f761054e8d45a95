"""Regularizing series and reading the events calendar: gaps, impossible values, another frequency
than the declared one, and every bad calendar row."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from ml import events
from ml.forecaster import clean_events, conformal_quantile
from ml.series import TOTAL, SeriesFrequencyError, check_frequency, to_panel
from semantic.warehouse import Warehouse
from tests.ml.synthetic import calendar, metrics_daily


def orders_of(panel: pd.DataFrame, tenant: str) -> pd.DataFrame:
    return panel[panel["unique_id"] == f"{tenant}/orders"].set_index("ds")


def test_a_missing_date_is_added_and_filled_never_shifted():
    wide = metrics_daily(days=60, tenants=2)
    gap = wide["date_day"].min() + pd.Timedelta(days=30)
    panel, repairs = to_panel(wide[~((wide["tenant_id"] == "t001") & (wide["date_day"] == gap))], "commerce")
    orders = orders_of(panel, "t001")
    assert len(orders) == 60 and orders.index.is_monotonic_increasing and orders.loc[gap, "filled"]
    assert orders.loc[gap, "y"] == orders.loc[gap - pd.Timedelta(days=7), "y"]  # the same weekday before
    original = wide[wide["tenant_id"] == "t001"].set_index("date_day")["orders"]
    kept = orders.drop(index=gap)["y"]
    assert (kept == original.loc[kept.index]).all()
    assert repairs.missing_dates == {("t001", "orders"): 1, ("t001", "revenue"): 1}


def test_nan_and_negative_values_are_replaced_and_counted():
    wide = metrics_daily(days=60, tenants=1)
    wide.loc[5, "orders"], wide.loc[6, "orders"], wide.loc[7, "revenue"] = np.nan, -3, np.inf
    panel, repairs = to_panel(wide, "commerce")
    assert (panel["y"] >= 0).all() and np.isfinite(panel["y"]).all()
    assert repairs.invalid_values == {("t001", "orders"): 2, ("t001", "revenue"): 1}
    assert any("NaN or impossible" in line for line in repairs.describe())


def test_the_total_is_the_sum_of_the_repaired_tenants():
    panel, _ = to_panel(metrics_daily(days=40, tenants=3), "commerce")
    tenants = panel[panel["tenant_id"] != TOTAL].groupby(["metric", "ds"])["y"].sum()
    total = panel[panel["tenant_id"] == TOTAL].set_index(["metric", "ds"])["y"]
    assert np.allclose(total.sort_index(), tenants.sort_index())


@pytest.mark.parametrize(("dates", "freq", "says"), [
    (pd.date_range("2026-01-04", periods=20, freq="W-SUN"), "D", "'W-SUN'"),  # weekly rows where days are declared
    (pd.date_range("2026-01-01 06:00", periods=40, freq="h"), "D", "off that grid"),  # hours inside days
    (pd.date_range("2026-01-15", periods=12, freq="30D"), "MS", "off that grid"),  # not the first of the month
])
def test_a_series_of_another_frequency_than_declared_is_refused_naming_it(dates, freq, says):
    with pytest.raises(SeriesFrequencyError) as err:
        check_frequency(pd.Series(dates), freq, "tenant t001 (orders)")
    assert "tenant t001 (orders)" in str(err.value) and repr(freq) in str(err.value) and says in str(err.value)


def test_weekly_rows_in_the_daily_mart_fail_before_any_model():
    wide = metrics_daily(days=140, tenants=2)
    weekly = wide[wide["date_day"].dt.day_of_week == 6]
    with pytest.raises(SeriesFrequencyError, match="tenant t001"):
        to_panel(weekly, "engagement")


def test_the_seed_is_a_valid_calendar_with_the_retail_peaks():
    calendar_ = events.validate(events.read_seed(), tenants={"t001", "t002", "t003"})
    names = set(calendar_["event_name"])
    assert {"Black Friday", "Cyber Monday", "Christmas Day", "Thanksgiving"} <= names
    black_friday = calendar_[(calendar_["event_id"] == "black_friday")]["event_date"]
    assert all(d.day_of_week == 4 and d.month == 11 and 23 <= d.day <= 29 for d in black_friday)
    assert (calendar_["tenant_id"] != "").any()  # tenant-specific events are declared too


@pytest.mark.parametrize(("row", "says"), [
    ({"event_date": "2026-02-30"}, "line 3: event_date '2026-02-30' is not a date"),
    ({"event_date": "30/11/2026"}, "line 3: event_date '30/11/2026' is not a date"),
    ({"tenant_id": "t999"}, "line 3: tenant_id 't999' is not a tenant"),
    ({"event_kind": "party"}, "line 3: event_kind 'party' is not one of"),
    ({"event_name": ""}, "line 3: event_id and event_name are required"),
])
def test_a_bad_calendar_row_is_refused_naming_the_row_field_and_value(row, says):
    frame = calendar({"2026-11-27": "Black Friday", "2026-11-30": "Cyber Monday"}, kind="retail_peak")
    for field, value in row.items():
        frame.loc[1, field] = value
    with pytest.raises(events.CalendarError) as err:
        events.validate(frame, tenants={"t001"}, source="events_calendar.csv")
    assert str(err.value).startswith("events_calendar.csv line 3") and says in str(err.value)


def test_the_calendar_is_read_as_dbt_loaded_it_and_is_empty_before_the_seed_was_loaded():
    with Warehouse(duckdb.connect(), "duckdb") as warehouse:
        assert events.read(warehouse.query).empty  # a warehouse built before the seed existed
        warehouse.execute("create schema marts")
        warehouse.execute("create table marts.events_calendar as select '2026-11-27' as event_date, "
                          "'black_friday' as event_id, 'Black Friday' as event_name, "
                          "'retail_peak' as event_kind, cast(null as varchar) as tenant_id")
        frame = events.read(warehouse.query)
    assert frame.to_dict("records") == [{"event_date": "2026-11-27", "event_id": "black_friday",
                                         "event_name": "Black Friday", "event_kind": "retail_peak", "tenant_id": ""}]
    assert events.validate(frame, {"t001"})["event_date"].iloc[0] == pd.Timestamp("2026-11-27")


def test_tenant_events_reach_that_tenant_only_and_every_tenant_event_everyone():
    frame = events.validate(pd.concat([calendar({"2026-11-27": "Black Friday"}, kind="retail_peak"),
                                       calendar({"2026-11-02": "Launch"}, kind="launch", tenant_id="t001")]))
    days = pd.date_range("2026-11-01", periods=30, freq="D")
    for tenant, expected in (("t001", {"Black Friday", "Launch"}), ("t002", {"Black Friday"}),
                             (TOTAL, {"Black Friday"})):
        kinds, names = events.for_series(frame, tenant, days)
        assert set(names) - {""} == expected
        assert kinds[list(days).index(pd.Timestamp("2026-11-27"))] == "retail_peak"


def test_an_event_day_is_cleaned_from_the_history_the_models_read():
    """Black Friday replaced by its neighbouring Fridays, so no later Friday inherits it."""
    z = np.tile([1.0, 1.0, 1.0, 1.0, 2.0, 0.5, 0.5], 5)
    event = np.zeros(35, bool)
    event[18] = True
    spiked = z.copy()
    spiked[18] = 9.0
    cleaned = clean_events(spiked, event, 7)
    assert cleaned[18] == 2.0 and np.array_equal(cleaned[~event], z[~event])


def test_the_conformal_quantile_is_the_finite_sample_one():
    errors = np.arange(1.0, 20.0)  # 19 errors: the 95 % bound is the largest, the 5 % the smallest
    assert conformal_quantile(errors, 0.95) == 19.0 and conformal_quantile(errors, 0.05) == 1.0
    assert conformal_quantile(np.arange(1.0, 100.0), 0.9) == 90.0
