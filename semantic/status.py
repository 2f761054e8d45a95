"""The status page of the platform, served by the metrics server: `GET /status` (HTML, for people;
it reloads itself every 30 seconds) and `GET /status.json` (the same, for scripts).

It shows the health of every part: the metrics server itself, the published data (its version and
age against `PLATFORM_FRESHNESS_MAX_HOURS`), and each part named in `SEMANTIC_STATUS_PARTS`
(`name=health URL`: the collector's /health, the SQL endpoint's /healthz, Dagster's /server_info...),
probed when the page is asked for, all at once, each within PROBE_SECONDS. A part is `ok` when its
health URL answers 200, `degraded` when it answers otherwise (its own `status` and `problem` shown when
its body has them), `down` when it cannot be reached. Like /readyz, it needs no token: it shows
versions, ages and states, never rows.
"""

from __future__ import annotations

import asyncio
import html
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

PROBE_SECONDS = 3.0
RANK = {"ok": 0, "degraded": 1, "down": 2}


@dataclass(frozen=True)
class Part:
    name: str
    status: str  # ok, degraded, down
    detail: str
    url: str | None = None


def _published(service, limit_seconds: float) -> Part:
    try:
        version = service.current()
    except FileNotFoundError as exc:
        return Part("published data", "down", f"nothing published yet ({exc})")
    age = time.time() - version.published_at.timestamp()
    detail = f"version {version.version}, {age / 3600:.1f} h old (limit {limit_seconds / 3600:g} h)"
    return Part("published data", "ok" if age <= limit_seconds else "degraded",
                detail if age <= limit_seconds else f"stale: {detail}")


async def _probe(client: httpx.AsyncClient, name: str, url: str) -> Part:
    try:
        reply = await client.get(url)
    except httpx.HTTPError as exc:
        return Part(name, "down", f"not reachable: {type(exc).__name__}: {exc}".rstrip(": "), url)
    try:
        body = reply.json()
    except ValueError:
        body = None
    said = ", ".join(f"{key} {body[key]}" for key in ("status", "dataVersion", "problem", "error")
                     if isinstance(body, dict) and body.get(key) not in (None, ""))
    detail = f"HTTP {reply.status_code}" + (f": {said}" if said else "")
    return Part(name, "ok" if reply.status_code == 200 else "degraded", detail, url)


async def report(service, settings) -> dict:
    """Every part's health, probed now."""
    async with httpx.AsyncClient(timeout=PROBE_SECONDS, follow_redirects=False) as client:
        probed = await asyncio.gather(*(_probe(client, name, url) for name, url in settings.status_parts))
    parts = [Part("metrics server", "ok", "answering"), _published(service, settings.freshness_limit.total_seconds()),
             *probed]
    overall = max((part.status for part in parts), key=RANK.__getitem__)
    return {"status": overall, "checkedAt": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "parts": [asdict(part) for part in parts]}


def _html(state: dict) -> str:
    rows = "\n".join(
        f'<tr class="{p["status"]}"><th scope="row">{html.escape(p["name"])}</th>'
        f'<td><span class="badge">{p["status"]}</span></td><td>{html.escape(p["detail"])}</td>'
        f'<td>{html.escape(p["url"] or "")}</td></tr>' for p in state["parts"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="30">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Platform status: {state["status"]}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #1f2933; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ text-align: left; padding: .5rem .75rem; border-bottom: 1px solid #e4e7eb; }}
.badge {{ padding: .1rem .5rem; border-radius: .75rem; color: white; font-weight: 600; }}
.ok .badge {{ background: #2f855a; }}
.degraded .badge {{ background: #b7791f; }}
.down .badge {{ background: #c53030; }}
</style></head>
<body class="{state["status"]}"><h1>Platform status: <span class="badge">{state["status"]}</span></h1>
<p>Checked {state["checkedAt"]}; this page reloads every 30 seconds.</p>
<table><thead><tr><th>Part</th><th>Status</th><th>Detail</th><th>Health URL</th></tr></thead>
<tbody>
{rows}
</tbody></table></body></html>
"""


def routes(service, settings):
    """The two endpoints, for `guards.guarded` to add to the served app."""

    async def status_json(request: Request) -> Response:
        return Response(orjson.dumps(await report(service, settings)), media_type="application/json")

    async def status_page(request: Request) -> HTMLResponse:
        return HTMLResponse(_html(await report(service, settings)))

    return status_json, status_page
