"""The mapping of Segment's calls and the intake of a batch, in-process: the records stored for
common calls (pinned, so that a faster mapping cannot change what lands), and inputs that once
raised instead of being refused."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from ingestion.collector.intake import Rules, split_batch, take_in, valid_utf8
from ingestion.events.schema import parse_timestamp
from ingestion.events.segment import Arrival, CommonCall, Mapped, Message, map_call, map_common

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


# Every shape a field of a call may take, in the ways the SDKs and bad clients send it (ABSENT: not sent).
ABSENT = object()
STAMPS = ("2026-11-20T10:04:00Z", "2026-11-20T12:00:00.5+02:00", "2026-11-20T10:04:00.250+00:00",
          "2026-11-20T10:04:00-00:00", "2026-11-20T10:04:00", "1999-12-31T23:00:00Z", "2026-11-21T10:04:00Z",
          "0001-01-01T00:00:00Z", "soon", 5, None, ABSENT)
FIELDS = {
    "type": ("track", "page", "screen", "identify", "shout", None, ABSENT),
    "messageId": ("m1", "", 7, None, ABSENT),
    "userId": ("u1", "", 42, None, ABSENT),
    "anonymousId": ("a1", "", 4.5, None, ABSENT),
    "timestamp": STAMPS,
    "originalTimestamp": STAMPS,
    "sentAt": ("2026-11-20T10:04:30Z", "then", ABSENT, ABSENT, ABSENT),
    "event": ("Order Completed", "Product Added", "Experiment Viewed", "feature_used", "Not A Thing", "", 3, None,
              ABSENT),
    "name": ("Pricing", "", 3, None, ABSENT),
    "properties": ({"path": "/p"}, {"path": ""}, {"url": "https://shop.example/a?b=1"}, {"name": "Home"},
                   {"product_id": "p", "quantity": 1, "price": 9.5}, {"product_id": "p", "quantity": True, "price": 1},
                   {"order_id": "o", "total": 3, "coupon": None}, {"order_id": "o", "revenue": None, "total": 2.5},
                   {"feature": "f", "session_id": 5}, {"experiment_id": "e", "variation_name": "B"}, {}, None, "x",
                   ABSENT),
    "context": ({}, {"device": {"type": "mobile", "id": "d"}}, {"device": "tablet"}, {"device": {"type": 3}},
                {"location": {"country": "DE"}}, {"sessionId": 7}, {"sessionId": ""}, {"page": {"path": "/c"}},
                {"ip": "203.0.113.9"}, None, 5, ABSENT),
    "integrations": ({"All": True}, {}, None, 3, ABSENT),
    "traits": ({"plan": "pro"}, None, 3, ABSENT),
}


# Calls in the shape the SDKs send, each taken as is or with up to three fields changed to any shape above.
COMMON_CALLS = (
    {"type": "track", "event": "Product Added", "messageId": "m1", "anonymousId": "a1",
     "timestamp": "2026-11-20T10:04:00.5Z", "properties": {"product_id": "p", "quantity": 2, "price": 9.5},
     "context": {"device": {"type": "mobile"}, "location": {"country": "FR"}}, "integrations": {"All": True}},
    {"type": "track", "event": "Order Completed", "messageId": "m2", "userId": "u1",
     "timestamp": "2026-11-20T10:04:00Z", "properties": {"order_id": "o", "total": 12, "coupon": None},
     "context": {"sessionId": "s9"}},
    {"type": "page", "messageId": "m3", "userId": "u1", "anonymousId": "a1", "timestamp": "2026-11-20T10:04:00Z",
     "name": "Home", "properties": {"path": "/"}, "originalTimestamp": "2026-11-20T10:03:59Z"},
    {"type": "screen", "messageId": "m4", "anonymousId": "a2", "timestamp": "2026-11-20T10:04:01.125Z",
     "name": "Cart", "properties": {"path": "/cart", "session_id": 12}, "context": {"device": "phone"}},
)
CHANGES = [(name, value) for name, values in FIELDS.items() for value in values]


def assert_mapped_alike(fields: dict, batch_sent_at: str | None) -> bool:
    """`map_common` gives the record `map_call` gives (the same keys in the same order), or leaves the
    call to it; never another record, never one that `map_call` refuses. True if it mapped the call."""
    message = orjson.dumps({name: value for name, value in fields.items() if value is not ABSENT})
    arrival = Arrival("t001", NOW, None if batch_sent_at is None else parse_timestamp(batch_sent_at),
                      RULES.not_before)
    try:
        common = map_common(msgspec.json.decode(message, type=CommonCall), arrival)
    except msgspec.ValidationError:
        return False
    if common is None:
        return False
    general = map_call(msgspec.json.decode(message, type=Message), None, arrival, message)
    assert type(general) is Mapped, (fields, general)
    assert (common.kind, common.event_id) == (general.kind, general.event_id)
    assert orjson.dumps(common.record) == orjson.dumps(general.record), fields
    return True


def test_the_common_case_is_mapped_as_every_call_is_whatever_one_field_holds():
    """`map_common` is the fast path of nearly every event: each common call with each of its fields
    in each shape above, with and without the batch's sentAt."""
    mapped = sum(assert_mapped_alike({**call, name: value}, sent_at) for call in COMMON_CALLS
                 for name, value in CHANGES for sent_at in ("2026-11-20T10:04:30Z", None))
    assert mapped > len(COMMON_CALLS) * len(CHANGES) / 2  # most single changes keep a call common


@given(st.sampled_from(COMMON_CALLS), st.lists(st.sampled_from(CHANGES), min_size=2, max_size=4),
       st.sampled_from(("2026-11-20T10:04:30Z", None)))
@settings(max_examples=1000, derandomize=True, deadline=None)
def test_the_common_case_is_mapped_as_every_call_is_whatever_several_fields_hold(call, changes, batch_sent_at):
    assert_mapped_alike({**call, **dict(changes)}, batch_sent_at)


def test_calls_in_the_sdks_shape_take_the_common_path():
    """The equivalence above holds for calls that do take that path (not only for those it leaves)."""
    arrival = Arrival("t001", NOW, parse_timestamp("2026-11-20T10:04:30Z"), RULES.not_before)
    for message in COMMON_CALLS:
        raw = orjson.dumps(message)
        common = map_common(msgspec.json.decode(raw, type=CommonCall), arrival)
        assert type(common) is Mapped
        assert common == map_call(msgspec.json.decode(raw, type=Message), None, arrival, raw)
