"""Great Expectations' Data Docs, readable offline, and served on loopback (`make serve-quality-docs`).

GE's page templates load Bootstrap, jQuery, Font Awesome, bootstrap-table and Vega from CDNs: offline, a page is
unstyled and the index, a table that bootstrap-table draws, is empty. GE cannot be configured around it: the
custom views directory of its site builder is searched after GE's own templates, so it can add templates but not
replace these. So after each build, `make_offline` points the pages' CDN addresses at copies of the same
libraries in the site's `static/vendor/`, taken from their npm packages (expectations/data_docs_assets,
installed from its lock file by `make`). Without them installed the pages keep their CDN addresses (they work
online) and a warning says how to install them.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import logging
import os
import re
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent / "data_docs_assets" / "node_modules"
VENDOR = Path("static") / "vendor"
# Each address GE's templates (great_expectations/render/view/templates) load, and the file of the npm package
# that replaces it, as a path under node_modules (copied to the same path under static/vendor/).
REPLACEMENTS = {
    "https://cdn.jsdelivr.net/npm/vega@5": "vega/build/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega-lite/build/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega-embed/build/vega-embed.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css":
        "@fortawesome/fontawesome-free/css/all.min.css",
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery/dist/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "popper.js/dist/umd/popper.min.js",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap/dist/js/bootstrap.min.js",
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap/dist/css/bootstrap.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js":
        "bootstrap-table/dist/bootstrap-table.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css":
        "bootstrap-table/dist/bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js":
        "bootstrap-table/dist/extensions/filter-control/bootstrap-table-filter-control.min.js",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css":
        "bootstrap-table/dist/extensions/filter-control/bootstrap-table-filter-control.min.css",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css":
        "bootstrap-table/dist/extensions/filter-control/bootstrap-table-filter-control.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js":
        "bootstrap-datepicker/dist/js/bootstrap-datepicker.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css":
        "bootstrap-datepicker/dist/css/bootstrap-datepicker.min.css",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css":
        "@forevolve/bootstrap-dark/dist/css/bootstrap-prefers-dark.css",
}
# GE's own images, which its navigation bar loads from its web site (with the data context's id in the query);
# GE also copies them into the site's static/images/.
GE_IMAGES = "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/"
# Folders a copied file refers to by relative URL (Font Awesome's stylesheet loads ../webfonts/).
FOLDERS = ("@fortawesome/fontawesome-free/webfonts",)
ADDRESS = re.compile(r'(src|href)="(https://[^"]+)"')
# Subresource-integrity hashes pin the CDN's bytes; the local copies are the packages' own builds.
INTEGRITY = re.compile(r'\s(?:integrity|crossorigin)="[^"]*"')
# <script src>, <img src> and <link href> that still leave the machine (a newer GE may add some)
EXTERNAL = re.compile(r'<(?:script[^>]*\ssrc|img[^>]*\ssrc|link[^>]*\shref)="(https?://[^"]+)"')


def make_offline(site_dir: Path, since: float = 0.0) -> list[Path]:
    """Point the CDN addresses of the site's pages (those written after `since`) at local copies.

    Returns the pages rewritten. Missing packages leave the pages as GE wrote them, with a warning.
    """
    if not all((ASSETS / path).exists() for path in (*REPLACEMENTS.values(), *FOLDERS)):
        log.warning("Data Docs keep their CDN addresses (they need a network): the local copies are not installed; "
                    "run `npm ci --prefix expectations/data_docs_assets` (make does)")
        return []
    vendor = site_dir / VENDOR
    for path in (*REPLACEMENTS.values(), *FOLDERS):
        source, target = ASSETS / path, vendor / path
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copyfile)(source, target)
    rewritten = []
    for page in site_dir.rglob("*.html"):
        if page.stat().st_mtime < since:
            continue
        html = page.read_text()
        local = ADDRESS.sub(functools.partial(_local, page_dir=page.parent, vendor=vendor), html)
        if local != html:
            page.write_text(INTEGRITY.sub("", local))
            rewritten.append(page)
    return rewritten


def external_addresses(html: str) -> list[str]:
    """The scripts, images and stylesheets a page still loads from outside the machine."""
    return EXTERNAL.findall(html)


def _local(match: re.Match, page_dir: Path, vendor: Path) -> str:
    attribute, url = match.groups()
    if url.startswith(GE_IMAGES):
        image = vendor.parent / "images" / url[len(GE_IMAGES):].split("?")[0]
        local = image if image.exists() else None
    else:
        local = vendor / REPLACEMENTS[url] if url in REPLACEMENTS else None
    if local is None:
        return match.group(0)
    return f'{attribute}="{Path(os.path.relpath(local, page_dir)).as_posix()}"'


def server(site_dir: Path, port: int, host: str = "127.0.0.1") -> http.server.ThreadingHTTPServer:
    """The site's files over HTTP (the standard library's static file handler)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site_dir))
    return http.server.ThreadingHTTPServer((host, port), handler)


def main() -> None:
    from expectations.runner import data_docs_index
    from orchestration.environment import current_environment

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=3200)
    args = parser.parse_args()
    index = data_docs_index(current_environment().quality_dir)
    if not index.exists():
        raise SystemExit(f"no Data Docs at {index}: run the main job (`make run`) first")
    httpd = server(index.parent, args.port)
    print(f"Data Docs on http://127.0.0.1:{args.port}/ (from {index.parent}); Ctrl-C stops")
    with contextlib.suppress(KeyboardInterrupt):
        httpd.serve_forever()


if __name__ == "__main__":
    main()
