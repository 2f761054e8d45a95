"""Segment's tracking API spec mapped onto our event model: the one place that says what a
`track`, `page`, `screen`, `identify`, `group` or `alias` call becomes.

Mapping version 1 (`MAPPING_VERSION`, stamped into every record as `context.segment.mapping_version`):

- `page` is a `page_view` whose `path` is `properties.path`, else `context.page.path`, else the path of
  `properties.url` or `context.page.url`; `screen` (the mobile page) is a `page_view` whose path is
  `properties.path`, else the screen's `name`.
- `track` maps by event name: the names of Segment's semantic specs in `TRACK_EVENTS` (e-commerce,
  B2B SaaS, A/B testing), or one of our event types written as is (`feature_used`, `error`, ...).
  A required property may come under the spec's name (`PROPERTY_SOURCES`: an `Order Completed`
  carries `total` or `revenue`, an `Experiment Viewed` a `variation_name`). Any other name is refused
  naming `event`: the catalog is closed (the marts count its types), so a misspelt name is an error the
  sender sees, never an event that silently goes missing from the metrics.
- `identify`, `group` and `alias` are not events: they become profile records (traits and ids) kept
  in the landing zone's `profiles/` folder, as received, for a profile loader.
- `messageId` is the event id; a message without one gets a digest of the tenant and its bytes, so
  that resending the same bytes is still recognised.
- `userId`/`anonymousId` become `user_id`/`anonymous_id` (numbers are written as strings, as the SDKs
  do); the client's session id, when the app sends one (`context.sessionId`, `properties.session_id`),
  is kept, else the visitor id stands in: sessions are rebuilt from event times downstream anyway.
- Timestamps are corrected for the client's clock as Segment does: when `sentAt` is known (on the
  message or the batch), `timestamp = receivedAt - (sentAt - timestamp)`; the original and `sentAt`
  stay in `context.segment`. `context.device` becomes its `type` (the marts read a device name) and
  `context.location.country` becomes `country`; the rest of `context` and `integrations` is kept.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from ingestion.events.schema import EVENT_TYPES, EventError, parse_timestamp, properties_fault, timestamp_fault

MAPPING_VERSION = 1

EVENT_CALLS = ("track", "page", "screen")
PROFILE_CALLS = ("identify", "group", "alias")
CALLS = EVENT_CALLS + PROFILE_CALLS

# Segment's semantic event names and what they are in our catalog; our own type names map to themselves.
TRACK_EVENTS: dict[str, str] = {
    "Order Completed": "checkout_completed",
    "Checkout Started": "checkout_started",
    "Product Added": "add_to_cart",
    "Signed Up": "signup",
    "Experiment Viewed": "experiment_assigned",
    **{event_type: event_type for event_type in sorted(EVENT_TYPES)},
}

# Where a required property may be found under a spec's own names, first present wins.
PROPERTY_SOURCES: dict[str, dict[str, tuple[str, ...]]] = {
    "checkout_completed": {"revenue": ("revenue", "total")},
    "checkout_started": {"cart_value": ("cart_value", "value", "revenue", "total")},
    "experiment_assigned": {"variant": ("variant", "variation_name", "variation_id")},
    "experiment_converted": {"variant": ("variant", "variation_name", "variation_id")},
}


@dataclass(frozen=True)
class Mapped:
    """A call as our model stores it: an event (`kind` "event") or a profile record ("profile")."""

    kind: str
    event_id: str
    record: dict[str, Any]


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _id(value: Any, field: str) -> str | None | EventError:
    if value is None or type(value) is str and value:
        return value
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return EventError(field, f"expected a string, got {type(value).__name__}")
    text = str(value)
    return text if text else EventError(field, "must not be empty")


def _object(message: dict, field: str) -> dict | EventError:
    value = message.get(field)
    if type(value) is dict:
        return value
    if value is None:
        return {}
    return EventError(field, f"expected an object, got {type(value).__name__}")


def sent_at_of(value: Any, field: str = "sentAt") -> datetime | None | EventError:
    """A batch's or message's `sentAt`, parsed; None when absent."""
    if value is None:
        return None
    if not isinstance(value, str):
        return EventError(field, f"expected an ISO 8601 string, got {type(value).__name__}")
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        return EventError(field, f"not an ISO 8601 timestamp with offset ({exc})")


def corrected_timestamp(message: dict, received_at: datetime, batch_sent_at: datetime | None) -> datetime | EventError:
    """The event's time on the server's clock: `receivedAt - (sentAt - timestamp)` when both are known."""
    field = "timestamp" if "timestamp" in message else "originalTimestamp"
    value = message.get(field)
    sent_at = sent_at_of(message.get("sentAt")) if "sentAt" in message else batch_sent_at
    if isinstance(sent_at, EventError):
        return sent_at
    if value is None:
        return received_at
    if not isinstance(value, str):
        return EventError(field, f"expected an ISO 8601 string, got {type(value).__name__}")
    try:
        at = parse_timestamp(value)
    except ValueError as exc:
        return EventError(field, f"not an ISO 8601 timestamp with offset ({exc})")
    if sent_at is None:
        return at
    try:
        return received_at - (sent_at - at)
    except OverflowError:
        return EventError(field, f"{value} with sentAt {sent_at.isoformat()} falls outside the years 1 to 9999")


def _page_path(call: str, message: dict, properties: dict, context: dict) -> str | EventError:
    page = context.get("page") if isinstance(context.get("page"), dict) else {}
    if call == "screen":
        candidates = (properties.get("path"), message.get("name"), properties.get("name"))
    else:
        urls = [u for u in (properties.get("url"), page.get("url")) if isinstance(u, str)]
        candidates = (properties.get("path"), page.get("path"), *(urlsplit(u).path or "/" for u in urls))
    for value in candidates:
        if isinstance(value, str) and value:
            return value
    where = "properties.path or name" if call == "screen" else "properties.path, context.page.path or a url"
    return EventError("properties.path", f"a {call} call needs {where} (it becomes a page_view)")


def _event_properties(event_type: str, properties: dict) -> dict:
    filled = dict(properties)
    for name, sources in PROPERTY_SOURCES.get(event_type, {}).items():
        if filled.get(name) is None:
            filled[name] = next((properties[s] for s in sources if properties.get(s) is not None), None)
    return {k: v for k, v in filled.items() if v is not None}


def _context(context: dict, segment: dict) -> dict:
    out = dict(context)
    device, location = out.pop("device", None), context.get("location")
    if isinstance(device, dict):
        segment["device"] = device
        if isinstance(device.get("type"), str):
            out["device"] = device["type"]
    elif isinstance(device, str):
        out["device"] = device
    if isinstance(location, dict) and isinstance(location.get("country"), str):
        out["country"] = location["country"]
    out["segment"] = segment
    return out


def map_call(message: Any, call: str | None, tenant: str, received_at: datetime, batch_sent_at: datetime | None,
             raw: bytes, now: datetime | None = None, not_before: datetime | None = None) -> Mapped | EventError:
    """One Segment call as our model stores it, or the first fault found (naming the message's field).

    `call` is the call type given by the route (`/v1/track`); on `/v1/batch` it is None and the
    message's `type` decides. Events are checked as `validate_event` checks them.
    """
    if not isinstance(message, dict):
        return EventError("message", f"expected a JSON object, got {type(message).__name__}")
    call = call or message.get("type")
    if call not in CALLS:
        return EventError("type", f"{call!r} is not a call of the tracking API (one of {', '.join(CALLS)})")
    message_id = _id(message.get("messageId"), "messageId")
    if isinstance(message_id, EventError):
        return message_id
    if message_id is None:
        message_id = "digest-" + hashlib.blake2b(tenant.encode() + b"\0" + raw, digest_size=16).hexdigest()
    user_id, anonymous_id = _id(message.get("userId"), "userId"), _id(message.get("anonymousId"), "anonymousId")
    for found in (user_id, anonymous_id):
        if isinstance(found, EventError):
            return found
    at = corrected_timestamp(message, received_at, batch_sent_at)
    if isinstance(at, EventError):
        return at
    objects = {}
    for field in ("context", "integrations", "properties", "traits"):
        objects[field] = _object(message, field)
        if isinstance(objects[field], EventError):
            return objects[field]
    context, properties = objects["context"], objects["properties"]
    segment = {"call": call, "mapping_version": MAPPING_VERSION, "received_at": _iso(received_at),
               "integrations": objects["integrations"]}
    for field in ("timestamp", "originalTimestamp", "sentAt"):
        if isinstance(message.get(field), str):
            segment[field] = message[field]

    if call in PROFILE_CALLS:
        return _profile(message, call, message_id, tenant, user_id, anonymous_id, at, objects, segment, now, not_before)

    if call == "track":
        name = message.get("event")
        if not isinstance(name, str) or not name:
            return EventError("event", "a track call needs the event's name")
        event_type = TRACK_EVENTS.get(name)
        if event_type is None:
            return EventError("event", f"{name!r} is not in the event catalog: send one of "
                                       f"{', '.join(sorted(TRACK_EVENTS))}")
        segment["event"] = name
        properties = _event_properties(event_type, properties)
    else:
        path = _page_path(call, message, properties, context)
        if isinstance(path, EventError):
            return path
        event_type, properties = "page_view", {**properties, "path": path}
        if isinstance(message.get("name"), str):
            segment["name"] = message["name"]
    if user_id is None and anonymous_id is None:
        return EventError("userId", "one of userId or anonymousId is required")
    # the envelope is built here, so only what came from the message is checked (as `validate_event` would)
    fault = timestamp_fault(at, _iso(at), now, not_before) or properties_fault(event_type, properties)
    if fault is not None:
        return fault
    session = context.get("sessionId") or properties.get("session_id") or user_id or anonymous_id
    event = {
        "event_id": message_id, "event_type": event_type, "timestamp": _iso(at), "tenant_id": tenant,
        "user_id": user_id, "anonymous_id": anonymous_id, "session_id": str(session),
        "properties": properties, "context": _context(context, segment),
    }
    return Mapped("event", message_id, event)


def _profile(message: dict, call: str, message_id: str, tenant: str, user_id: str | None, anonymous_id: str | None,
             at: datetime, objects: dict, segment: dict, now: datetime | None,
             not_before: datetime | None) -> Mapped | EventError:
    ids = {}
    for field, key in (("groupId", "group_id"), ("previousId", "previous_id")):
        ids[key] = _id(message.get(field), field)
        if isinstance(ids[key], EventError):
            return ids[key]
    if call == "alias" and (user_id is None or ids["previous_id"] is None):
        return EventError("previousId" if user_id else "userId", "an alias call needs userId and previousId")
    if call != "alias" and user_id is None and anonymous_id is None:
        return EventError("userId", f"an {call} call needs userId or anonymousId")
    if call == "group" and ids["group_id"] is None:
        return EventError("groupId", "a group call needs groupId")
    fault = timestamp_fault(at, _iso(at), now, not_before)
    if fault is not None:
        return fault
    record = {"message_id": message_id, "call": call, "tenant_id": tenant, "user_id": user_id,
              "anonymous_id": anonymous_id, **ids, "timestamp": _iso(at), "traits": objects["traits"],
              "context": objects["context"], "segment": segment}
    return Mapped("profile", message_id, record)
