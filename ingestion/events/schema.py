"""Versioned schemas of product events and the one validation every loader and collector applies.

An event is an envelope (`event_id`, `event_type`, `timestamp`, `tenant_id`, `user_id` or
`anonymous_id`, `session_id`, `properties`, `context`) whose `properties` depend on its type.
Validation returns the first fault as an `EventError` naming the field, so a quarantined row
always says exactly what was wrong with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

# Per event type: the properties it must carry and their Python types. A new version of an
# event type adds an entry here; old versions stay readable.
EVENT_PROPERTIES: dict[str, dict[str, tuple[type, ...]]] = {
    "session_start": {"landing_page": (str,)},
    "page_view": {"path": (str,)},
    "feature_used": {"feature": (str,)},
    "add_to_cart": {"product_id": (str,), "quantity": (int,), "price": (int, float)},
    "checkout_started": {"cart_value": (int, float)},
    "checkout_completed": {"order_id": (str,), "revenue": (int, float)},
    "error": {"code": (str,), "message": (str,)},
    "signup": {"plan": (str,)},
    "experiment_assigned": {"experiment_id": (str,), "variant": (str,)},
    "experiment_converted": {"experiment_id": (str,), "variant": (str,)},
}
EVENT_TYPES = frozenset(EVENT_PROPERTIES)

_REQUIRED_STRINGS = ("event_id", "event_type", "timestamp", "tenant_id", "session_id")
MAX_FUTURE_SKEW = timedelta(hours=1)


@dataclass(frozen=True)
class EventError:
    """Why an event was refused: the field at fault and a sentence a person can act on."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


def parse_timestamp(value: str) -> datetime:
    """ISO 8601 with an offset or `Z`; naive timestamps are refused rather than guessed. A time whose
    UTC equivalent falls outside years 1-9999 (`9999-12-31T23:59:59-01:00`) is refused too."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("timestamp has no time zone offset")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError("outside the years 1 to 9999 once converted to UTC") from None


def timestamp_fault(at: datetime, written: str, now: datetime | None, not_before: datetime | None,
                    field: str = "timestamp") -> EventError | None:
    """The collector's bounds on a parsed timestamp: not ahead of `now` by more than `MAX_FUTURE_SKEW`,
    not before `not_before`."""
    if now is not None and at > now + MAX_FUTURE_SKEW:
        return EventError(field, f"{written} is in the future")
    if not_before is not None and at < not_before:
        return EventError(field, f"{written} is before the lower bound {not_before.isoformat()}")
    return None


def validate_event(event: Any, now: datetime | None = None, not_before: datetime | None = None) -> EventError | None:
    """Return None for a valid event, else the first fault found (envelope first, then properties).

    `now` enables the clock's rule (no more than `MAX_FUTURE_SKEW` ahead) and `not_before` a lower
    bound on timestamps: the collector applies both, a loader neither (a replay must give the same
    result whenever it runs)."""
    if not isinstance(event, dict):
        return EventError("event", f"expected a JSON object, got {type(event).__name__}")
    for field in _REQUIRED_STRINGS:
        value = event.get(field)
        if value is None:
            return EventError(field, "required field is missing")
        if not isinstance(value, str):
            return EventError(field, f"expected a string, got {type(value).__name__}")
        if not value:
            return EventError(field, "must not be empty")
    event_type = event["event_type"]
    if event_type not in EVENT_TYPES:
        return EventError("event_type", f"unknown event type {event_type!r}")
    try:
        at = parse_timestamp(event["timestamp"])
    except ValueError as exc:
        return EventError("timestamp", f"not an ISO 8601 timestamp with offset ({exc})")
    fault = timestamp_fault(at, event["timestamp"], now, not_before)
    if fault is not None:
        return fault
    user_id, anonymous_id = event.get("user_id"), event.get("anonymous_id")
    if user_id is None and anonymous_id is None:
        return EventError("user_id", "one of user_id or anonymous_id is required")
    for field, value in (("user_id", user_id), ("anonymous_id", anonymous_id)):
        if value is not None and not isinstance(value, str):
            return EventError(field, f"expected a string, got {type(value).__name__}")
    for field in ("properties", "context"):
        if not isinstance(event.get(field, {}), dict):
            return EventError(field, f"expected an object, got {type(event[field]).__name__}")
    return properties_fault(event_type, event.get("properties") or {})


def properties_fault(event_type: str, properties: dict) -> EventError | None:
    """The first required property of `event_type` missing from `properties` or of the wrong type."""
    for name, types in EVENT_PROPERTIES[event_type].items():
        value = properties.get(name)
        if type(value) in types:  # the common case (a bool is not an int here: its type is bool)
            continue
        if value is None:
            return EventError(f"properties.{name}", f"required for {event_type} events")
        if isinstance(value, bool) or not isinstance(value, types):
            expected = " or ".join(t.__name__ for t in types)
            return EventError(f"properties.{name}", f"expected {expected}, got {type(value).__name__}")
    return None
