"""Seasonality of the simulated product: weekly and yearly cycles, growth, and holidays."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """The n-th given weekday of a month (n=-1: the last one)."""
    if n > 0:
        first = date(year, month, 1)
        return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))
    last = date(year + (month == 12), month % 12 + 1, 1) - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def us_holidays(year: int) -> dict[date, str]:
    """The US holidays that move a commerce product's traffic, by date."""
    thanksgiving = _nth_weekday(year, 11, 3, 4)
    return {
        date(year, 1, 1): "new_year",
        _nth_weekday(year, 5, 0, -1): "memorial_day",
        date(year, 7, 4): "independence_day",
        _nth_weekday(year, 9, 0, 1): "labor_day",
        thanksgiving: "thanksgiving",
        thanksgiving + timedelta(days=1): "black_friday",
        thanksgiving + timedelta(days=4): "cyber_monday",
        date(year, 12, 25): "christmas",
    }


def holidays_between(start: date, end: date) -> dict[date, str]:
    found: dict[date, str] = {}
    for year in range(start.year, end.year + 1):
        found.update({d: n for d, n in us_holidays(year).items() if start <= d <= end})
    return found


def day_factors(start: date, days: int) -> tuple[np.ndarray, np.ndarray]:
    """Multipliers per day for (activity, purchase propensity).

    Activity dips at weekends and on holidays; purchases rise at weekends and spike on Black
    Friday and Cyber Monday; both follow a yearly cycle peaking in December.
    """
    dates = [start + timedelta(days=i) for i in range(days)]
    holidays = holidays_between(dates[0], dates[-1])
    weekday = np.array([d.weekday() for d in dates])
    doy = np.array([d.timetuple().tm_yday for d in dates])
    yearly = 1.0 + 0.12 * np.cos(2 * np.pi * (doy - 350) / 365.25)
    activity = np.where(weekday >= 5, 0.78, 1.0) * yearly
    purchase = np.where(weekday >= 5, 1.15, 1.0) * yearly
    for i, d in enumerate(dates):
        name = holidays.get(d)
        if name in ("black_friday", "cyber_monday"):
            purchase[i] *= 2.2
        elif name is not None:
            activity[i] *= 0.7
            purchase[i] *= 0.8
    return activity, purchase
