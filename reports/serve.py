"""Serve the built reports site on loopback: `python -m reports.serve` (what `make serve-reports` runs).

The pages query Parquet files in the browser (DuckDB-wasm), which a `file://` page cannot fetch, so
the site needs an HTTP server. This one answers byte ranges, which lets DuckDB-wasm read only the
parts of a Parquet file a query needs.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import re
from pathlib import Path

RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


class SiteHandler(http.server.SimpleHTTPRequestHandler):
    """Static files, with single byte ranges (`Range: bytes=a-b`) answered as 206."""

    def __init__(self, *args, log_requests: bool = False, **kwargs):
        self.log_requests = log_requests  # before the base class's __init__, which serves the request
        super().__init__(*args, **kwargs)

    def send_head(self):
        match = RANGE.match(self.headers.get("Range", ""))
        path = Path(self.translate_path(self.path))
        if not match or not path.is_file():
            return super().send_head()
        size = path.stat().st_size
        first, last = match.groups()
        start = int(first) if first else max(size - int(last or 0), 0)
        end = min(int(last), size - 1) if first and last else size - 1
        if start >= size or start > end:
            self.send_error(416, f"range {self.headers['Range']} outside 0-{size - 1}")
            return None
        handle = path.open("rb")
        handle.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self._remaining = end - start + 1
        return handle

    def copyfile(self, source, outputfile):
        remaining = getattr(self, "_remaining", None)
        if remaining is None:
            return super().copyfile(source, outputfile)
        self._remaining = None
        while remaining > 0:
            chunk = source.read(min(remaining, 1 << 16))
            if not chunk:
                break
            outputfile.write(chunk)
            remaining -= len(chunk)

    def handle(self):
        """A reader who moves on closes the connection mid-file: that is no error to print."""
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            super().handle()

    def log_message(self, format, *args):
        if self.log_requests:
            super().log_message(format, *args)


def server(site_dir: Path, port: int = 3100, host: str = "127.0.0.1",
           log_requests: bool = False) -> http.server.ThreadingHTTPServer:
    """The site's server; `log_requests` prints a line per request (REPORTS_SERVE_LOG, read by the environment)."""
    handler = functools.partial(SiteHandler, directory=str(site_dir), log_requests=log_requests)
    return http.server.ThreadingHTTPServer((host, port), handler)


def main() -> None:
    from orchestration.environment import current_environment

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=3100)
    args = parser.parse_args()
    env = current_environment()
    site_dir = env.reports_site_dir
    if not (site_dir / "index.html").exists():
        raise SystemExit(f"no site in {site_dir}: run the main job (`make run`) first")
    httpd = server(site_dir, args.port, log_requests=env.reports_request_log)
    print(f"reports on http://127.0.0.1:{args.port}/ (from {site_dir}); Ctrl-C stops")
    with contextlib.suppress(KeyboardInterrupt):
        httpd.serve_forever()


if __name__ == "__main__":
    main()
