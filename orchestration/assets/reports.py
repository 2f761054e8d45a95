"""The Evidence reports site as a Dagster asset, built after the data it shows is published.

It reads the published data, never the warehouse, so it needs no slot in the warehouse pool and
a micro-batch may write while it builds. Evidence reads a DuckDB file: an extract of the published
tables the pages read (`Publication.extract`). The micro-batch job does not rebuild it: a site
build takes a minute or more, longer than a micro-batch.
"""

import dagster as dg

from orchestration.assets.publish import PUBLISHED_KEY
from orchestration.environment import current_environment
from reports import site

REPORTS_KEY = dg.AssetKey(["reports", "site"])


@dg.asset(
    key=REPORTS_KEY,
    deps=[PUBLISHED_KEY],
    group_name="serving",
    kinds={"evidence"},
    description="The Evidence reports (executive KPIs, engagement, forecasts, insights, data quality) built to a "
    "static site from the published snapshot.",
)
def reports_site(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    env = current_environment()
    publication = env.publication()
    version = publication.current()
    if version is None:
        raise dg.Failure("nothing published yet: the reports read only published data")
    extract = env.published_dir / "reports" / f"warehouse-{version.version}.duckdb"
    try:
        built = site.build(publication.extract(site.tables_read(), extract), env.reports_site_dir)
    except site.ReportError as error:
        raise dg.Failure(str(error)) from error
    finally:
        for old in sorted(extract.parent.glob("warehouse-*.duckdb"))[:-2]:  # the last two, for readers mid-read
            old.unlink(missing_ok=True)
    context.log.info(f"built {len(built.pages)} pages from data version {version.version} into {built.path} "
                     f"(sources {built.sources_seconds:.1f} s, pages {built.build_seconds:.1f} s)")
    return dg.MaterializeResult(metadata={
        "built": True, "data_version": version.version, "pages": ", ".join(built.pages),
        "path": dg.MetadataValue.path(str(built.index)),
        "sources_seconds": round(built.sources_seconds, 1), "build_seconds": round(built.build_seconds, 1),
    })
