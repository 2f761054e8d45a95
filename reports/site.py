"""Build the Evidence site from the published read snapshot, into `data/reports/site`.

Evidence runs in two steps: `evidence sources` runs each `sources/warehouse/*.sql` against the
snapshot (DuckDB through `@duckdb/node-api`) and writes the results as Parquet; `evidence build:strict`
pre-renders every page, whose queries run on those results in DuckDB-wasm. The file is an extract of
the published version (`Publication.extract`), a file of its own: the pipeline keeps publishing
while a site builds.

Before the slow build, every page query is checked against the source queries, so a page that
reads a table no source provides fails at once, naming the page and the query. The new site is
built beside the old one and swapped in, so a failed build leaves the last good site in place.

Evidence builds inside its project folder (`.evidence/`, `build/`), so each build runs in a private
copy of the project (its pages, sources and settings, with `node_modules` linked) beside the site it
builds: builds of different sites run side by side instead of waiting for each other (the test
suite's workers did, for a minute at a time), and two builds of one site take turns (a lock beside it).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import sqlglot

from reports import pages

PROJECT_DIR = pages.PROJECT_DIR
SOURCE = "warehouse"
SOURCE_DIR = PROJECT_DIR / "sources" / SOURCE
NODE_MODULES = PROJECT_DIR / "node_modules"
# Evidence's own telemetry is off: builds must not reach outside the machine. A larger young generation
# for V8 (semi-space 64 MB): Vite's compile of ~4,400 modules allocates fast, and the build took 39.0 s
# instead of 42.8 s on the tiny sample (2 cores, quiet).
EVIDENCE_ENV = {"SEND_ANONYMOUS_USAGE_STATS": "no",
                "NODE_OPTIONS": "--max-old-space-size=4096 --max-semi-space-size=64"}
# Evidence's Vite config with our one change (see the file); given relative to where Evidence runs Vite.
VITE_CONFIG = "../../vite.build.config.js"
# What a built site was built from, written into it: the exports and deliveries name its data version.
BUILD_STAMP = "build.json"
FAILED_SOURCE = re.compile(r"^\s*(\w+) ✖ (.*)$", re.M)
# What a build needs of the project, copied into its private folder (node_modules is linked).
PROJECT_FILES = ("evidence.plugins.yaml", "package.json", "pages", "partials", "server-charts", "simple-icons.js",
                 "sources", "vite.build.config.js")
# Where `evidence sources` writes each source query's result, as <query>/<query>.parquet, in a project.
SOURCE_DATA = Path(".evidence") / "template" / "static" / "data" / SOURCE
# A Parquet file is at least its two 4-byte magic numbers and a footer length.
PARQUET_MIN_BYTES = 12


class ReportError(Exception):
    """A report cannot be built; the message names the page or source query at fault."""


@dataclass(frozen=True)
class Site:
    path: Path
    pages: tuple[str, ...]
    snapshot: Path
    sources_seconds: float
    build_seconds: float

    @property
    def index(self) -> Path:
        return self.path / "index.html"


def page_routes() -> tuple[str, ...]:
    """The site's routes, from the page files: `index.md` is `/`, `engagement.md` is `/engagement`."""
    return tuple(page.route for page in pages.all_pages())


def source_tables() -> set[str]:
    """The tables the source queries give the pages: one per `sources/warehouse/*.sql`."""
    return {path.stem for path in SOURCE_DIR.glob("*.sql")}


def tables_read() -> list[str]:
    """The published tables ("schema.table") the source queries read."""
    found = set()
    for path in SOURCE_DIR.glob("*.sql"):
        parsed = sqlglot.parse_one(path.read_text(), dialect="duckdb")
        ctes = {cte.alias for cte in parsed.find_all(sqlglot.exp.CTE)}
        found |= {f"{t.db}.{t.name}" for t in parsed.find_all(sqlglot.exp.Table) if t.db and t.name not in ctes}
    return sorted(found)


def check_pages(pages_dir: Path = pages.PAGES_DIR, tables: set[str] | None = None) -> None:
    """Fail on a page query that reads a table no source query provides, naming page and query."""
    tables = source_tables() if tables is None else tables
    try:
        found = pages.all_pages(pages_dir)
    except pages.PageError as error:
        raise ReportError(str(error)) from error
    problems = []
    for page in found:
        for name in page.queries:
            try:
                parsed = sqlglot.parse_one(page.resolve(name, unset="x"), dialect="duckdb")
            except pages.PageError as error:
                problems.append(str(error))
                continue
            except sqlglot.errors.ParseError as error:
                problems.append(f"{page.where(name)}: SQL does not parse: {error}")
                continue
            ctes = {cte.alias for cte in parsed.find_all(sqlglot.exp.CTE)}
            for table in parsed.find_all(sqlglot.exp.Table):
                if not table.name or table.name in ctes:
                    continue
                if table.db != SOURCE or table.name not in tables:
                    problems.append(f"{page.where(name)}: table {table.sql(dialect='duckdb')} does not exist; "
                                    f"pages read {SOURCE}.<source query>, one of: {', '.join(sorted(tables))}")
    if problems:
        raise ReportError("report pages read missing tables:\n  " + "\n  ".join(problems))


def ensure_installed() -> None:
    """Install the locked Evidence packages once, as the Makefile does (see there why not `npm ci`)."""
    if (NODE_MODULES / ".package-lock.json").exists():
        return
    _run(["npm", "install", "--no-save", "--no-audit", "--no-fund", "--loglevel=error"], "npm install (reports/)",
         timeout=900)


def build(snapshot: Path, site_dir: Path, timeout: float = 900) -> Site:
    """Build every page from `snapshot` into `site_dir`; the previous site stays if this fails."""
    if not snapshot.exists():
        raise ReportError(f"no published snapshot at {snapshot}: run the main job (`make run`) first")
    check_pages()
    ensure_installed()
    site_dir.parent.mkdir(parents=True, exist_ok=True)
    with _site_lock(site_dir), _private_project(site_dir.parent) as project:
        return _build(project, snapshot, site_dir, timeout)


@contextlib.contextmanager
def _site_lock(site_dir: Path) -> Iterator[None]:
    """One build of a site at a time, across processes (the last one started is the one kept)."""
    with open(site_dir.with_name(f".{site_dir.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def _private_project(beside: Path) -> Iterator[Path]:
    """A copy of the Evidence project for one build, removed afterwards (see the module's docstring).
    It starts without results: Evidence writes nothing for a query without rows, so a result left by
    an earlier build would be shown as today's."""
    with tempfile.TemporaryDirectory(prefix=".evidence-build-", dir=beside) as folder:
        project = Path(folder)
        for name in PROJECT_FILES:
            source = PROJECT_DIR / name
            if source.is_dir():
                shutil.copytree(source, project / name)
            else:
                shutil.copy2(source, project / name)
        (project / "node_modules").symlink_to(NODE_MODULES)
        yield project


def _build(project: Path, snapshot: Path, site_dir: Path, timeout: float) -> Site:
    # Evidence joins the source's directory to `filename`, so the snapshot is given relative to it.
    env = {**os.environ, **EVIDENCE_ENV, f"EVIDENCE_SOURCE__{SOURCE}__filename": os.path.relpath(
        snapshot.resolve(), (project / "sources" / SOURCE).resolve())}
    started = time.monotonic()
    output = _run(["npx", "--no-install", "evidence", "sources"], "evidence sources", project, env, timeout)
    failed = FAILED_SOURCE.findall(output)
    if failed:
        raise ReportError("source queries failed:\n  " + "\n  ".join(
            f"sources/{SOURCE}/{name}.sql: {why}" for name, why in failed))
    write_empty_results(snapshot, project / SOURCE_DATA)
    sources_seconds = time.monotonic() - started
    built = project / "build"
    _run(["npx", "--no-install", "evidence", "build:strict", "--config", VITE_CONFIG], "evidence build:strict",
         project, env, timeout)
    build_seconds = time.monotonic() - started - sources_seconds
    (built / BUILD_STAMP).write_text(json.dumps({
        "data_version": snapshot.stem.removeprefix("warehouse-"), "snapshot": str(snapshot),
        "built_at": datetime.now(UTC).isoformat(timespec="seconds")}))
    _swap_in(built, site_dir)
    return Site(site_dir, page_routes(), snapshot, sources_seconds, build_seconds)


def write_empty_results(snapshot: Path, data_dir: Path) -> list[str]:
    """Give every source query that returned no rows a valid, empty Parquet file with its columns.

    For a query without rows, `evidence sources` writes its schema but no Parquet file (or, in
    older versions, an empty one), which the build's DuckDB then refuses ("too small to be a
    Parquet file", evidence-dev/evidence#2466): a day without insights would fail the whole site.
    The query is run again with `limit 0` on the snapshot, which gives its columns and types.
    Queries Evidence did not run (no schema) are left alone. Returns the queries so mended.
    """
    mended = []
    for query in sorted(SOURCE_DIR.glob("*.sql")):
        folder = data_dir / query.stem
        result = folder / f"{query.stem}.parquet"
        if not (folder / f"{query.stem}.schema.json").exists():
            continue
        if result.exists() and result.stat().st_size >= PARQUET_MIN_BYTES:
            continue
        with duckdb.connect() as conn:
            conn.execute(f"attach '{snapshot}' as snapshot (read_only)")
            conn.execute("use snapshot")
            sql = query.read_text().strip().rstrip(";")
            conn.execute(f"copy (select * from ({sql}) as q limit 0) to '{result}' (format parquet)")
        mended.append(query.stem)
    return mended


def data_version(site_dir: Path) -> str:
    """The published data version a built site shows (from the stamp `build` leaves in it)."""
    stamp = site_dir / BUILD_STAMP
    if not stamp.exists():
        raise ReportError(f"no built site in {site_dir} (no {BUILD_STAMP}): run the main job (`make run`) first")
    return json.loads(stamp.read_text())["data_version"]


def _swap_in(built: Path, site_dir: Path) -> None:
    """Replace `site_dir` with the new build in two renames, so a reader never sees half a site."""
    site_dir.parent.mkdir(parents=True, exist_ok=True)
    incoming = site_dir.with_name(site_dir.name + ".new")
    shutil.rmtree(incoming, ignore_errors=True)
    shutil.move(str(built), incoming)
    outgoing = site_dir.with_name(site_dir.name + ".old")
    shutil.rmtree(outgoing, ignore_errors=True)
    if site_dir.exists():
        site_dir.rename(outgoing)
    incoming.rename(site_dir)
    shutil.rmtree(outgoing, ignore_errors=True)


def _run(command: list[str], what: str, project: Path = PROJECT_DIR, env: dict[str, str] | None = None,
         timeout: float = 900) -> str:
    """Run an npm/Evidence command in a project; on failure, the error names the step and its output."""
    try:
        proc = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as error:
        raise ReportError(f"{what} did not finish in {timeout:.0f} s") from error
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise ReportError(f"{what} failed (exit {proc.returncode}):\n{_tail(output)}")
    return output


def _tail(output: str, lines: int = 40) -> str:
    kept = [line for line in output.splitlines() if line.strip() and not line.lstrip().startswith(("at ", "npm warn"))]
    return "\n".join(kept[-lines:])
