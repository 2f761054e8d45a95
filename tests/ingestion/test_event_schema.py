"""Event validation names the field at fault for every kind of bad event."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ingestion.events.schema import validate_event

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def good_event(**changes):
    event = {
        "event_id": "e1", "event_type": "checkout_completed", "timestamp": "2026-10-31T12:00:00Z",
        "tenant_id": "t001", "user_id": "u1", "anonymous_id": None, "session_id": "s1",
        "properties": {"order_id": "o1", "revenue": 12.5}, "context": {"device": "mobile"},
    }
    event.update(changes)
    return event


def test_good_event_passes():
    assert validate_event(good_event(), NOW) is None
    assert validate_event(good_event(user_id=None, anonymous_id="a1"), NOW) is None


@pytest.mark.parametrize(("event", "field", "words"), [
    ([1, 2], "event", "JSON object"),
    ({k: v for k, v in good_event().items() if k != "tenant_id"}, "tenant_id", "missing"),
    (good_event(event_type="page_veiw"), "event_type", "unknown event type 'page_veiw'"),
    (good_event(timestamp=1767225600), "timestamp", "expected a string, got int"),
    (good_event(timestamp="yesterday"), "timestamp", "ISO 8601"),
    (good_event(timestamp="2026-10-31T12:00:00"), "timestamp", "time zone"),
    (good_event(timestamp="2027-10-31T12:00:00Z"), "timestamp", "future"),
    (good_event(user_id=None), "user_id", "one of user_id or anonymous_id"),
    (good_event(user_id=42), "user_id", "expected a string"),
    (good_event(properties=[]), "properties", "expected an object"),
    (good_event(properties={"order_id": "o1"}), "properties.revenue", "required for checkout_completed"),
    (good_event(properties={"order_id": "o1", "revenue": "12"}), "properties.revenue", "expected int or float"),
    (good_event(event_id=""), "event_id", "empty"),
])
def test_bad_events_name_the_field(event, field, words):
    error = validate_event(event, NOW)
    assert error is not None
    assert error.field == field
    assert words in error.reason
