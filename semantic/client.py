"""A Python client for the metrics server's REST API (Cube's), for reports, scripts and notebooks.

    client = MetricsClient("http://127.0.0.1:4000", token)
    rows = client.load({"measures": ["metrics.revenue"],
                        "timeDimensions": [{"dimension": "metrics.metric_time", "granularity": "month"}]}).rows

It speaks the protocol as Cube's own JavaScript client does: the query goes in the URL (or the
body, when long), `queryType=multi`, and a "Continue wait" reply is asked again until the answer
is ready or the timeout passes.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass

import httpx
import orjson

URL_LIMIT = 2000  # like Cube's client: longer queries are POSTed


class MetricsError(Exception):
    """The server refused the query (400) or the token (403); `status` and the server's message."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status, self.message = status, message


@dataclass(frozen=True)
class LoadResult:
    query_type: str
    results: list[dict]

    @property
    def rows(self) -> list[dict]:
        """The data of the first (usually only) result."""
        return self.results[0]["data"]


class MetricsClient:
    def __init__(self, base_url: str, token: str, timeout: float = 60.0, verify: ssl.SSLContext | bool = True):
        """`verify`: how an https server's certificate is checked (an `ssl.SSLContext` trusting a
        private CA: `ssl.create_default_context(cafile=...)`)."""
        self.api = base_url.rstrip("/") + "/cubejs-api/v1"
        self.timeout = timeout
        self.http = httpx.Client(headers={"Authorization": token}, timeout=timeout, verify=verify)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> MetricsClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, path: str, query: dict | list | None = None, multi: bool = False) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            if query is None:
                response = self.http.get(f"{self.api}/{path}")
            else:
                encoded = orjson.dumps(query).decode()
                params = {"queryType": "multi"} if multi else {}
                if len(encoded) < URL_LIMIT:
                    response = self.http.get(f"{self.api}/{path}", params={"query": encoded, **params})
                else:
                    response = self.http.post(f"{self.api}/{path}", json={"query": query, **params})
            body = response.json()
            if response.status_code != 200:
                raise MetricsError(response.status_code, body.get("error", response.text))
            if body.get("error") == "Continue wait":
                if time.monotonic() > deadline:
                    raise MetricsError(504, f"still running after {self.timeout} s")
                continue
            return body

    def load(self, query: dict | list) -> LoadResult:
        body = self._call("load", query, multi=True)
        return LoadResult(body["queryType"], body["results"])

    def meta(self) -> dict:
        return self._call("meta")

    def sql(self, query: dict) -> str:
        return self._call("sql", query)["sql"]["sql"][0]

    def dry_run(self, query: dict | list) -> dict:
        return self._call("dry-run", query)
