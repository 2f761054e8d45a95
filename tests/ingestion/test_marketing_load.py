"""Marketing CSVs: header checked per file, bad rows quarantined, good files still load."""

from __future__ import annotations

import json

from ingestion import pipelines
from ingestion.paths import write_atomically
from ingestion.sample_data.landing_files import MARKETING_COLUMNS
from tests.ingestion.helpers import load, query, scalar


def _write(layout, name: str, header: list[str], rows: list[list]) -> None:
    text = "\n".join(",".join(map(str, r)) for r in [header, *rows]) + "\n"
    write_atomically(layout.marketing_dir / name, text.encode())


def test_sample_spend_loads_whole(sample):
    truth = json.loads(sample.ground_truth.read_text())["marketing"]
    load(sample, pipelines.MARKETING)
    assert scalar(sample, "select count(*) from raw_marketing.spend") == truth["rows"]
    assert load(sample, pipelines.MARKETING) == {}


def test_missing_column_quarantines_the_file_and_names_the_column(sample):
    load(sample, pipelines.MARKETING)
    before = scalar(sample, "select count(*) from raw_marketing.spend")
    header = [c for c in MARKETING_COLUMNS if c != "spend"]
    _write(sample, "spend_tv_2026-11-01.csv", header, [["2026-11-01", "t001", "tv", "tv_launch", 10, 1]])
    _write(sample, "spend_radio_2026-11-01.csv", MARKETING_COLUMNS,
           [["2026-11-01", "t001", "radio", "radio_launch", 100, 3, "12.50"]])
    load(sample, pipelines.MARKETING)
    assert scalar(sample, "select count(*) from raw_marketing.spend") == before + 1  # the good file loaded
    field, reason = query(sample, "select field, reason from raw_marketing.spend_quarantine "
                                  "where source_file = 'spend_tv_2026-11-01.csv'")[0]
    assert field == "header" and "missing column(s) 'spend'" in reason


def test_extra_column_is_added_under_evolve(sample):
    header = [*MARKETING_COLUMNS, "utm_source"]
    row = ["2026-11-01", "t001", "tv", "tv_launch", 10, 1, "5.00", "newsletter"]
    _write(sample, "spend_tv_2026-11-01.csv", header, [row])
    load(sample, pipelines.MARKETING, contract="evolve")
    assert query(sample, "select utm_source from raw_marketing.spend where channel = 'tv'") == [("newsletter",)]


def test_extra_column_refused_under_freeze(sample):
    truth = json.loads(sample.ground_truth.read_text())["marketing"]
    _write(sample, "spend_tv_2026-11-01.csv", [*MARKETING_COLUMNS, "utm_source"],
           [["2026-11-01", "t001", "tv", "tv_launch", 10, 1, "5.00", "newsletter"]])
    load(sample, pipelines.MARKETING, contract="freeze")
    assert scalar(sample, "select count(*) from raw_marketing.spend") == truth["rows"]
    (reason,) = query(sample, "select reason from raw_marketing.spend_quarantine")[0]
    assert "'utm_source'" in reason and "freeze" in reason


def test_bad_values_quarantine_rows_not_files(sample):
    _write(sample, "spend_tv_2026-11-02.csv", MARKETING_COLUMNS, [
        ["2026-11-02", "t001", "tv", "a", 10, 1, "5.00"],
        ["2026-11-02", "t001", "tv", "b", 10, 1, "lots"],
        ["2026-11-31", "t001", "tv", "c", 10, 1, "5.00"],
        ["2026-11-02", "t001", "tv", "d", 10, 1, "-3.00"],
    ])
    load(sample, pipelines.MARKETING)
    assert query(sample, "select campaign from raw_marketing.spend where channel = 'tv'") == [("a",)]
    refused = query(sample, "select line_number, field from raw_marketing.spend_quarantine order by 1")
    assert refused == [(3, "spend"), (4, "date"), (5, "spend")]
