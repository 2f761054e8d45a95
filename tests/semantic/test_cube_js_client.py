"""Cube's official JavaScript client (`@cubejs-client/core` from npm), run with Node against the server.

The server here answers "Continue wait" to every new query, so each load also proves that the
client's re-request cycle works against it.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from tests.conftest import SAMPLE_END
from tests.ingestion.helpers import query as sql

CHECK = Path(__file__).with_name("cube_js") / "check.mjs"


def test_the_official_cube_client_loads_meta_and_sql(impatient_server, published):
    proc = subprocess.run(["node", str(CHECK), f"{impatient_server.url}/cubejs-api/v1", impatient_server.admin,
                           f"{SAMPLE_END.year - 1}-01-01", f"{SAMPLE_END.year}-12-31"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)

    got = {(r["orders.tenant"], r["orders.metric_time.month"][:7]): Decimal(r["orders.revenue"])
           for r in out["rows"]}
    expected = {(t, m): Decimal(str(v)) for t, m, v in sql(published, """
        select tenant_id, strftime(date_day, '%Y-%m'), sum(revenue) from marts.metrics_daily
        where tenant_id in ('t001', 't002') group by 1, 2""")}
    assert got == expected and got
    # the client pivots by tenant: one series per tenant and measure, one point per month
    assert {s["key"] for s in out["series"]} == {f"{t},orders.{m}" for t in ("t001", "t002")
                                                 for m in ("revenue", "orders")}

    today = datetime.now(UTC).date()
    assert out["recentQuery"]["timeDimensions"][0]["dateRange"] == [
        f"{today - timedelta(days=7)}T00:00:00.000", f"{today - timedelta(days=1)}T23:59:59.999"]
    assert "acquisition.customer_acquisition_cost" in out["measures"] and "orders.revenue" in out["measures"]
    assert "metric_query" in out["sql"]
