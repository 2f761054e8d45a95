"""Exports of the built site: chosen pages as PDF (headless Chromium), every page's datasets as
CSV, XLSX and Parquet, and the headline numbers (the pages' BigValues) for the deliveries.

Everything is read from the built site, not the warehouse: the datasets are the page's queries run
in DuckDB over the site's own Parquet files, so a file, the PDF and the page a link opens all show
the same data version. Filters take their defaults ("All tenants"), as the PDF does.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd
from pyarrow import parquet

from reports import browser, pages, site

# Tabular figures (Evidence's default) have no Unicode mapping in the PDF's embedded font, so their
# digits would vanish from the PDF's text; proportional figures keep the PDF searchable and copyable.
PRINT_CSS = ("*, *::before, *::after "
             "{ font-variant-numeric: normal !important; font-feature-settings: normal !important; }")
PDF_VIEWPORT = {"width": 1000, "height": 1200}
PDF_MARGIN = {"top": "12mm", "bottom": "12mm", "left": "10mm", "right": "10mm"}
# Evidence's built-in formats the pages use: prefix, decimals, scale, suffix.
FORMATS = {
    **{f"usd{d}": ("$", d, 1, "") for d in range(3)},
    **{f"num{d}": ("", d, 1, "") for d in range(4)},
    **{f"pct{d}": ("", d, 100, "%") for d in range(3)},
}
FORMATS["usd"], FORMATS["pct"] = FORMATS["usd0"], FORMATS["pct0"]
EXCEL_SHEET_NAME = 31  # characters at most


@dataclass(frozen=True)
class HeadlineNumber:
    title: str
    value: str
    change: str = ""
    change_title: str = ""

    @property
    def change_text(self) -> str:
        """`+4.7% vs previous 7 days`, or "" for a number without a comparison."""
        return " ".join(part for part in (self.change, self.change_title) if part) if self.change else ""

    def sentence(self) -> str:
        return f"{self.title}: {self.value}" + (f" ({self.change_text})" if self.change_text else "")


@dataclass
class PageExport:
    page: pages.Page
    pdf: Path | None = None
    files: list[Path] = field(default_factory=list)  # CSV, Parquet and the page's XLSX
    rows: dict[str, int] = field(default_factory=dict)  # per dataset
    headlines: list[HeadlineNumber] = field(default_factory=list)


@dataclass(frozen=True)
class Exported:
    directory: Path
    data_version: str
    pages: list[PageExport]
    pdfs: list[Path]  # in the order they were chosen

    @property
    def headlines(self) -> list[HeadlineNumber]:
        return [number for export in self.pages for number in export.headlines]


def export(site_dir: Path, out_root: Path, pdf_routes: list[str]) -> Exported:
    """Export every page's datasets and render `pdf_routes` to PDF, into `out_root/<data version>/`.

    The directory is written beside its final place and renamed into it, so a reader never sees a
    half export; exporting the same data version again replaces it.
    """
    version = site.data_version(site_dir)
    chosen = [pages.by_route(route) for route in pdf_routes]  # fails early on a route no page has
    directory = out_root / version
    incoming = out_root / f".{version}.partial"
    shutil.rmtree(incoming, ignore_errors=True)
    incoming.mkdir(parents=True)
    with _site_database(site_dir) as conn:
        results = [export_datasets(conn, page, incoming) for page in pages.all_pages()]
    if chosen:
        by_route = {result.page.route: result for result in results}
        with browser.serving(site_dir) as base, browser.chromium() as chromium:
            for page in chosen:
                by_route[page.route].pdf = render_pdf(chromium, base + page.route, incoming / f"{page.name}.pdf")
    (incoming / "manifest.json").write_text(json.dumps({
        "data_version": version, "site": str(site_dir), "pdf": [p.route for p in chosen],
        "datasets": {r.page.route: r.rows for r in results}}, indent=2))
    shutil.rmtree(directory, ignore_errors=True)
    incoming.rename(directory)
    for result in results:
        result.files = [directory / path.relative_to(incoming) for path in result.files]
        result.pdf = directory / result.pdf.name if result.pdf else None
    return Exported(directory, version, results, [directory / f"{page.name}.pdf" for page in chosen])


def export_datasets(conn: duckdb.DuckDBPyConnection, page: pages.Page, out_dir: Path) -> PageExport:
    """Run the page's queries (once each) over the site's Parquet files, as `conn` has them; write each
    as CSV and Parquet, and all of them as the sheets of one XLSX workbook."""
    result = PageExport(page)
    frames = {}
    for name in page.own_queries:
        try:
            table = conn.sql(page.resolve(name)).fetch_arrow_table()  # keeps nullable integers
        except duckdb.Error as error:
            raise site.ReportError(f"{page.where(name)}: the query failed on the built site's data: {error}") \
                from error
        target = out_dir / page.name
        target.mkdir(parents=True, exist_ok=True)
        parquet.write_table(table, target / f"{name}.parquet")
        frame = table.to_pandas()
        frame.to_csv(target / f"{name}.csv", index=False)
        result.files += [target / f"{name}.csv", target / f"{name}.parquet"]
        result.rows[name] = len(frame)
        frames[name] = frame
    if frames:
        workbook = out_dir / f"{page.name}.xlsx"
        with pd.ExcelWriter(workbook, engine="openpyxl") as writer:
            for name, frame in frames.items():
                _for_excel(frame).to_excel(writer, sheet_name=name[:EXCEL_SHEET_NAME], index=False)
        result.files.append(workbook)
    result.headlines = [_headline(headline, frames) for headline in page.headlines if headline.data in frames]
    return result


def render_pdf(chromium, url: str, path: Path) -> Path:
    """The page as printed: A4, backgrounds on, once its charts are drawn."""
    with browser.opened(chromium, url, viewport=PDF_VIEWPORT) as opened:
        opened.page.add_style_tag(content=PRINT_CSS)
        opened.page.emulate_media(media="print")
        browser.settle(opened.page)
        if browser.EVIDENCE_ERROR in opened.text:
            raise site.ReportError(f"page {url} shows an error, not rendering it to PDF: "
                                   f"{_first_line_with(opened.text, browser.EVIDENCE_ERROR)}")
        opened.page.pdf(path=str(path), format="A4", print_background=True, margin=PDF_MARGIN)
    return path


def format_value(value, fmt: str) -> str:
    """A number as Evidence shows it in `fmt` (`usd2`, `num0`, `pct1`, ...); other formats as plain numbers."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if not isinstance(value, int | float):
        return str(value)
    prefix, decimals, scale, suffix = FORMATS.get(fmt, ("", 0 if float(value).is_integer() else 2, 1, ""))
    number = f"{abs(value) * scale:,.{decimals}f}"
    sign = "-" if value * scale < 0 and float(number.replace(",", "")) != 0 else ""
    return f"{sign}{prefix}{number}{suffix}"


def _headline(headline: pages.Headline, frames: dict[str, pd.DataFrame]) -> HeadlineNumber:
    frame = frames[headline.data]
    if frame.empty or headline.value not in frame:
        return HeadlineNumber(headline.title, "-")
    row = frame.iloc[0]
    value = python_scalar(row[headline.value])
    change = ""
    if headline.comparison and headline.comparison in frame:
        delta = python_scalar(row[headline.comparison])
        if delta is not None:
            change = ("+" if delta > 0 else "") + format_value(delta, headline.comparison_fmt)
    return HeadlineNumber(headline.title, format_value(value, headline.fmt), change, headline.comparison_title)


def python_scalar(value):
    """numpy and pandas scalars as Python ones; missing values as None."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def _for_excel(frame: pd.DataFrame) -> pd.DataFrame:
    """Excel has no time zones: time-zone-aware columns are written as UTC wall time."""
    frame = frame.copy()
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            frame[column] = frame[column].dt.tz_convert("UTC").dt.tz_localize(None)
    return frame


@contextmanager
def _site_database(site_dir: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB whose `warehouse.<table>` views read the site's Parquet files."""
    data_dir = site_dir / "data" / site.SOURCE
    if not data_dir.is_dir():
        raise site.ReportError(f"no datasets in {data_dir}: build the site first (`make run`)")
    conn = duckdb.connect()
    try:
        conn.execute(f"create schema {site.SOURCE}")
        for parquet in sorted(data_dir.glob("*/*.parquet")):
            literal = str(parquet).replace("'", "''")
            conn.execute(f"create view {site.SOURCE}.\"{parquet.stem}\" as select * from read_parquet('{literal}')")
        yield conn
    finally:
        conn.close()


def _first_line_with(text: str, needle: str) -> str:
    return next((line for line in text.splitlines() if needle in line), needle)
