"""The mapping of Segment's calls and the intake of a batch, in-process: the records stored for
common calls (pinned, so that a faster mapping cannot change what lands), and inputs that once
raised instead of being refused."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from ingestion.collector.intake import Rules, split_batch, take_in, valid_utf8

NOW = datetime(2026, 11, 20, 10, 5, 0, 123456, tzinfo=UTC)
RULES = Rules("t001", NOW, datetime(2000, 1, 1, tzinfo=UTC), 32 << 10)


def intake(body: bytes):
    raws, envelope = split_batch(body)
    return take_in(raws, None, RULES, envelope.sentAt, lambda i: f"batch[{i}]", valid_utf8(body))


def test_common_calls_become_the_same_records_as_ever():
    context = {"library": {"name": "analytics-python"}, "device": {"type": "mobile", "id": "d1"},
               "location": {"country": "DE", "city": "Berlin"}}
    batch = [
        {"type": "track", "event": "Order Completed", "messageId": "m1", "userId": "u1", "anonymousId": None,
         "timestamp": "2026-11-20T12:00:00.5+02:00", "properties": {"order_id": "o1", "total": 42.5, "coupon": None},
         "context": context, "integrations": {"All": True}},
        {"type": "page", "name": "Pricing", "messageId": "m2", "anonymousId": "a1",
         "originalTimestamp": "2026-11-20T10:04:00Z", "properties": {"url": "https://shop.example/pricing?x=1"},
         "context": {"sessionId": 7}},
    ]
    out = intake(orjson.dumps({"batch": batch, "sentAt": "2026-11-20T10:04:30Z"}))
    assert out.rejected == [] and out.event_ids == ["m1", "m2"]
    order, page = (orjson.loads(line) for line in out.event_lines)
    assert order == {
        "event_id": "m1", "event_type": "checkout_completed", "timestamp": "2026-11-20T10:00:30.623Z",
        "tenant_id": "t001", "user_id": "u1", "anonymous_id": None, "session_id": "u1",
        "properties": {"order_id": "o1", "total": 42.5, "revenue": 42.5},
        "context": {"library": {"name": "analytics-python"}, "location": {"country": "DE", "city": "Berlin"},
                    "device": "mobile", "country": "DE",
                    "segment": {"call": "track", "mapping_version": 1, "received_at": "2026-11-20T10:05:00.123Z",
                                "integrations": {"All": True}, "timestamp": "2026-11-20T12:00:00.5+02:00",
                                "event": "Order Completed",
                                "device": {"type": "mobile", "id": "d1"}}},
    }
    assert page == {
        "event_id": "m2", "event_type": "page_view", "timestamp": "2026-11-20T10:04:30.123Z", "tenant_id": "t001",
        "user_id": None, "anonymous_id": "a1", "session_id": "7",
        "properties": {"url": "https://shop.example/pricing?x=1", "path": "/pricing"},
        "context": {"sessionId": 7, "segment": {
            "call": "page", "mapping_version": 1, "received_at": "2026-11-20T10:05:00.123Z", "integrations": {},
            "originalTimestamp": "2026-11-20T10:04:00Z", "name": "Pricing"}},
    }


def test_a_url_that_cannot_be_parsed_is_refused_naming_the_field_not_raised():
    bad = {"type": "page", "messageId": "p1", "userId": "u", "properties": {"url": "http://[::1"}}
    good = {**bad, "messageId": "p2", "properties": {"url": "http://[::1", "path": "/ok"}}
    out = intake(orjson.dumps([bad, good]))
    assert out.event_ids == ["p2"]
    assert [(r["index"], r["field"]) for r in out.rejected] == [(0, "properties.path")]


def test_a_field_name_that_is_not_utf8_is_named_escaped_in_a_reply_that_is_json():
    body = (b'{"batch": [{"type": "track", "event": "Signed Up", "messageId": "k1", "userId": "u",'
            b' "properties": {"plan": "pro", "caf\xe9": 1}}, {"type": "track", "event": "Signed Up",'
            b' "messageId": "k2", "userId": "u", "properties": {"plan": "pro"}}]}')
    out = intake(body)
    assert out.event_ids == ["k2"]
    assert out.rejected == [{"index": 0, "field": "properties.caf\\xe9",
                             "reason": "field name: invalid UTF-8 in a string"}]
    assert orjson.loads(orjson.dumps(out.rejected)) == out.rejected and len(out.quarantine_lines) == 1
