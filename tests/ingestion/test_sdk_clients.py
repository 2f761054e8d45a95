"""The official SDKs users already send events with, pointed at the collector on loopback:
PyPI's `segment-analytics-python` (Basic auth) and `rudder-sdk-python` (Basic auth, gzip), and npm's
`@segment/analytics-node`. Their events reach `marts.fct_events` through the events pipeline and
dbt; their identify/group/alias calls are kept as profile records; a misspelt event name comes
back to each SDK as an error it can read (`code`, `message`), while the rest is stored."""

from __future__ import annotations

import json
import subprocess

import httpx
import pytest
from rudderstack.analytics import Client as RudderClient
from segment.analytics import Client as SegmentClient

from ingestion import pipelines
from tests.conftest import REPO_ROOT, dbt
from tests.ingestion.collector_process import collector
from tests.ingestion.conftest import landed
from tests.ingestion.helpers import load, query

NODE_HARNESS = REPO_ROOT / "tests" / "ingestion" / "segment_node"


def send_with_python_sdk(client_class, url: str, key: str, prefix: str, **options) -> list:
    errors = []
    client = client_class(write_key=key, host=url, max_retries=1, on_error=lambda e, batch: errors.append(e),
                          **options)
    client.identify(f"{prefix}-user", {"plan": "pro"}, message_id=f"{prefix}-identify")
    client.group(f"{prefix}-user", f"{prefix}-team", {"name": "Team"}, message_id=f"{prefix}-group")
    client.alias(f"{prefix}-anon", f"{prefix}-user", message_id=f"{prefix}-alias")
    client.page(f"{prefix}-user", name="Pricing", properties={"path": "/pricing"}, message_id=f"{prefix}-page")
    client.screen(f"{prefix}-user", name="Home", message_id=f"{prefix}-screen")
    client.track(f"{prefix}-user", "Signed Up", {"plan": "pro"}, message_id=f"{prefix}-signup")
    client.track(f"{prefix}-user", "Order Completed", {"order_id": f"{prefix}-o1", "total": 42.5},
                 message_id=f"{prefix}-order")
    client.flush()
    assert errors == [], errors
    client.track(f"{prefix}-user", "Order Complted", {"total": 1}, message_id=f"{prefix}-typo")
    client.flush()
    client.join()
    return errors


@pytest.fixture
def node_harness():
    if not (NODE_HARNESS / "node_modules" / "@segment" / "analytics-node").exists():
        pytest.fail("run `make test` (or `npm ci --prefix tests/ingestion/segment_node`) to install the Node SDK")
    return NODE_HARNESS


def test_official_sdks_deliver_events_that_reach_fct_events(sample, node_harness):
    with collector(sample) as running:
        segment_errors = send_with_python_sdk(SegmentClient, running.url, "key-t001", "sdk-py")
        rudder_errors = send_with_python_sdk(RudderClient, running.url, "key-t002", "sdk-rudder")
        node = subprocess.run(["node", "send.mjs", running.url, "key-t001", "sdk-node"], cwd=node_harness,
                              capture_output=True, text=True, timeout=60)
        assert node.returncode == 0, node.stderr
        metrics = httpx.get(f"{running.url}/metrics").text
    # each SDK read the misspelt name's refusal: a 400 whose body names the field
    for errors in (segment_errors, rudder_errors):
        assert len(errors) == 1 and errors[0].status == 400 and errors[0].code == "invalid_events", errors
        assert errors[0].message.startswith("batch[0].event: 'Order Complted' is not in the event catalog")
    report = json.loads(node.stdout)
    assert sorted(report["delivered"]) == ["sdk-node-added", "sdk-node-identify", "sdk-node-order", "sdk-node-page"]
    assert len(report["errors"]) == 1 and "400" in report["errors"][0]
    assert 'collector_requests_total{route="/v1/batch",status="400"} 3.0' in metrics

    profiles = {p["message_id"]: p for p in landed(sample.profiles_dir, "sdk-")}
    assert {k for k in profiles if k.startswith("sdk-py")} == {"sdk-py-identify", "sdk-py-group", "sdk-py-alias"}
    assert profiles["sdk-rudder-group"]["group_id"] == "sdk-rudder-team"
    assert profiles["sdk-node-identify"]["traits"] == {"plan": "pro"}

    for target in pipelines.TARGETS:
        load(sample, target)
    dbt(sample, "build", "--select", "+fct_events", "+dim_tenants", "--indirect-selection", "cautious")
    rows = query(sample, """
        select event_id, event_type, tenant_id, coalesce(user_id, anonymous_id), page_path, order_id, revenue
        from marts.fct_events where event_id like 'sdk-%' order by 1""")
    assert rows == [
        ("sdk-node-added", "add_to_cart", "t001", "sdk-node-user", None, None, None),
        ("sdk-node-order", "checkout_completed", "t001", "sdk-node-anon", None, "sdk-node-o1", 42.5),
        ("sdk-node-page", "page_view", "t001", "sdk-node-user", "/pricing", None, None),
        ("sdk-py-order", "checkout_completed", "t001", "sdk-py-user", None, "sdk-py-o1", 42.5),
        ("sdk-py-page", "page_view", "t001", "sdk-py-user", "/pricing", None, None),
        ("sdk-py-screen", "page_view", "t001", "sdk-py-user", "Home", None, None),
        ("sdk-py-signup", "signup", "t001", "sdk-py-user", None, None, None),
        ("sdk-rudder-order", "checkout_completed", "t002", "sdk-rudder-user", None, "sdk-rudder-o1", 42.5),
        ("sdk-rudder-page", "page_view", "t002", "sdk-rudder-user", "/pricing", None, None),
        ("sdk-rudder-screen", "page_view", "t002", "sdk-rudder-user", "Home", None, None),
        ("sdk-rudder-signup", "signup", "t002", "sdk-rudder-user", None, None, None),
    ]
