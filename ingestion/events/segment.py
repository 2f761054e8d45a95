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

The collector maps every event it receives here, so this runs per event at up to 10M events a
minute: messages are decoded straight into `Message` structs (msgspec skips the fields the mapping
does not read), what a request's messages share is computed once (`Arrival`), and times are written
by msgspec's encoder rather than `isoformat` (about 10x faster here). The checks stay in Python, in
the spec's words, as the first fault of a message is what its sender reads. A call of a batch in the
shape the SDKs send (`CommonCall`: its types checked by msgspec as it is decoded) takes a shorter way,
`map_common`, which gives the same record or leaves the call to `map_call`: the tests hold the two
equal for every shape of every field (`tests/ingestion/test_segment_mapping.py`).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec
from msgspec import UNSET, UnsetType

from ingestion.events.schema import (
    EVENT_TYPES,
    MAX_FUTURE_SKEW,
    EventError,
    parse_timestamp,
    properties_fault,
    timestamp_fault,
)

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


class Message(msgspec.Struct):
    """One call of the tracking API, as decoded: the fields the mapping reads, each `Any` so that the
    mapping can name a field of the wrong type in its own words (typed fields decoded no faster:
    about 0.5 microseconds a message either way). UNSET marks an absent field where absent and null
    mean different things (`type`, `timestamp`, `sentAt`)."""

    type: Any = UNSET
    messageId: Any = None
    userId: Any = None
    anonymousId: Any = None
    timestamp: Any = UNSET
    originalTimestamp: Any = None
    sentAt: Any = UNSET
    event: Any = None
    name: Any = None
    properties: Any = None
    context: Any = None
    integrations: Any = None
    traits: Any = None
    groupId: Any = None
    previousId: Any = None


NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class CommonCall(msgspec.Struct):
    """A `track`, `page` or `screen` call of a batch in the shape the SDKs send it: what this decoder
    checks (in C) `map_common` need not check again. A message it refuses is any other shape, which
    `map_call` maps (a number as `userId`, a null `properties`, a missing `timestamp`) or refuses."""

    type: Literal["track", "page", "screen"]
    messageId: NonEmpty
    timestamp: str
    userId: NonEmpty | None = None
    anonymousId: NonEmpty | None = None
    originalTimestamp: str | None = None
    sentAt: str | UnsetType = UNSET
    event: str | None = None
    name: str | None = None
    properties: dict[str, Any] = msgspec.field(default_factory=dict)
    context: dict[str, Any] = msgspec.field(default_factory=dict)
    integrations: dict[str, Any] = msgspec.field(default_factory=dict)
    traits: dict[str, Any] | None = None


class Mapped(msgspec.Struct, frozen=True):
    """A call as our model stores it: an event (`kind` "event") or a profile record ("profile")."""

    kind: str
    event_id: str
    record: dict[str, Any]


_encode = msgspec.json.encode


def iso(at: datetime) -> str:
    """A UTC time as `isoformat(timespec="milliseconds")` writes it, with `Z`: from msgspec's RFC 3339
    text (`"YYYY-MM-DDTHH:MM:SS[.ffffff]Z"`, six digits when there is a fraction), cut to milliseconds."""
    text = _encode(at)
    return f"{text[1:24].decode()}Z" if len(text) == 29 else f"{text[1:20].decode()}.000Z"


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


class Arrival:
    """What the messages of one request share: the write key's tenant, when the request arrived (the
    server's clock, UTC), the batch's parsed `sentAt`, and the bounds on event times (`not_before`;
    at most `MAX_FUTURE_SKEW` ahead of arrival)."""

    __slots__ = ("tenant", "received_at", "received_iso", "sent_at", "skew", "not_before", "latest")

    def __init__(self, tenant: str, received_at: datetime, sent_at: datetime | None = None,
                 not_before: datetime | None = None):
        self.tenant, self.received_at, self.sent_at, self.not_before = tenant, received_at, sent_at, not_before
        self.received_iso = iso(received_at)
        self.skew = None if sent_at is None else received_at - sent_at  # the client's clock error, by the batch
        self.latest = received_at + MAX_FUTURE_SKEW


def _id(value: Any, field: str) -> str | None | EventError:
    if value is None or type(value) is str and value:
        return value
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return EventError(field, f"expected a string, got {type(value).__name__}")
    text = str(value)
    return text if text else EventError(field, "must not be empty")


def _object(value: Any, field: str) -> dict | EventError:
    if type(value) is dict:
        return value
    if value is None:
        return {}
    return EventError(field, f"expected an object, got {type(value).__name__}")


def corrected_timestamp(message: Message, arrival: Arrival) -> datetime | EventError:
    """The event's time on the server's clock: `receivedAt - (sentAt - timestamp)` when both are known."""
    value = message.timestamp
    if type(value) is str and message.sentAt is UNSET:  # the common case: the batch's sentAt, if any
        try:
            at = parse_timestamp(value)
            return at if arrival.skew is None else at + arrival.skew
        except (ValueError, OverflowError):
            pass  # told below
    field, value = ("timestamp", message.timestamp) if message.timestamp is not UNSET else (
        "originalTimestamp", message.originalTimestamp)
    sent_at = arrival.sent_at if message.sentAt is UNSET else sent_at_of(message.sentAt)
    if isinstance(sent_at, EventError):
        return sent_at
    if value is None:
        return arrival.received_at
    if not isinstance(value, str):
        return EventError(field, f"expected an ISO 8601 string, got {type(value).__name__}")
    try:
        at = parse_timestamp(value)
    except ValueError as exc:
        return EventError(field, f"not an ISO 8601 timestamp with offset ({exc})")
    if sent_at is None:
        return at
    try:
        return arrival.received_at - (sent_at - at)
    except OverflowError:
        return EventError(field, f"{value} with sentAt {sent_at.isoformat()} falls outside the years 1 to 9999")


def _page_path(call: str, message: Message, properties: dict, context: dict) -> str | EventError:
    """The first non-empty string among the candidates, in order; a url is parsed only when reached,
    and one that cannot be parsed is passed over."""
    path = properties.get("path")
    if type(path) is str and path:
        return path
    page = context.get("page") if isinstance(context.get("page"), dict) else {}
    if call == "screen":
        paths, urls = (properties.get("path"), message.name, properties.get("name")), ()
    else:
        paths, urls = (properties.get("path"), page.get("path")), (properties.get("url"), page.get("url"))
    for value in paths:
        if isinstance(value, str) and value:
            return value
    for url in urls:
        if isinstance(url, str):
            try:
                return urlsplit(url).path or "/"
            except ValueError:  # "http://[::1": not a url, so no path from it
                continue
    where = "properties.path or name" if call == "screen" else "properties.path, context.page.path or a url"
    return EventError("properties.path", f"a {call} call needs {where} (it becomes a page_view)")


def _event_properties(event_type: str, properties: dict) -> dict:
    """The properties without null values, a required one filled from the spec's name for it."""
    sources = PROPERTY_SOURCES.get(event_type)
    if sources is None and None not in properties.values():
        return properties
    filled = dict(properties)
    for name, names in (sources or {}).items():
        if filled.get(name) is None:
            filled[name] = next((properties[s] for s in names if properties.get(s) is not None), None)
    return {k: v for k, v in filled.items() if v is not None}


def _context(context: dict, segment: dict) -> dict:
    """The event's context: the message's (its own dict, changed in place), the device as its type,
    the country, and what came from Segment."""
    out = context
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


def map_call(message: Message, call: str | None, arrival: Arrival, raw: bytes | msgspec.Raw) -> Mapped | EventError:
    """One Segment call as our model stores it, or the first fault found (naming the message's field).

    `call` is the call type given by the route (`/v1/track`); on `/v1/batch` it is None and the
    message's `type` decides. Events are checked as `validate_event` checks them; `raw` (the message
    as sent) names a message without `messageId`. Each check tests the common case first (`type(x)
    is str`) and only then finds out what is wrong: this runs for every event received.
    """
    call = call or (None if message.type is UNSET else message.type)
    if call not in CALLS:
        return EventError("type", f"{call!r} is not a call of the tracking API (one of {', '.join(CALLS)})")
    message_id, user_id, anonymous_id = message.messageId, message.userId, message.anonymousId
    if type(message_id) is not str or not message_id:
        message_id = _id(message_id, "messageId")
        if isinstance(message_id, EventError):
            return message_id
        if message_id is None:
            key = arrival.tenant.encode() + b"\0" + bytes(raw)
            message_id = "digest-" + hashlib.blake2b(key, digest_size=16).hexdigest()
    if user_id is not None and (type(user_id) is not str or not user_id):
        user_id = _id(user_id, "userId")
        if isinstance(user_id, EventError):
            return user_id
    if anonymous_id is not None and (type(anonymous_id) is not str or not anonymous_id):
        anonymous_id = _id(anonymous_id, "anonymousId")
        if isinstance(anonymous_id, EventError):
            return anonymous_id
    at = corrected_timestamp(message, arrival)
    if type(at) is EventError:
        return at
    context, integrations, properties, traits = (message.context, message.integrations, message.properties,
                                                 message.traits)
    if type(context) is dict and type(properties) is dict and integrations is None and traits is None:
        integrations, traits = {}, {}  # the common case
    else:
        objects = _objects(message)
        if type(objects) is EventError:
            return objects
        context, integrations, properties, traits = objects
    segment = {"call": call, "mapping_version": MAPPING_VERSION, "received_at": arrival.received_iso,
               "integrations": integrations}
    if type(message.timestamp) is str:
        segment["timestamp"] = message.timestamp
    if type(message.originalTimestamp) is str:
        segment["originalTimestamp"] = message.originalTimestamp
    if type(message.sentAt) is str:
        segment["sentAt"] = message.sentAt
    written = iso(at)
    if call in PROFILE_CALLS:
        return _profile(message, call, message_id, arrival, user_id, anonymous_id, at, written, context, traits,
                        segment)

    if call == "track":
        name = message.event
        event_type = TRACK_EVENTS.get(name) if type(name) is str else None
        if event_type is None:
            if not isinstance(name, str) or not name:
                return EventError("event", "a track call needs the event's name")
            return EventError("event", f"{name!r} is not in the event catalog: send one of "
                                       f"{', '.join(sorted(TRACK_EVENTS))}")
        segment["event"] = name
        properties = _event_properties(event_type, properties)
    else:
        path = _page_path(call, message, properties, context)
        if type(path) is EventError:
            return path
        event_type = "page_view"
        properties["path"] = path  # the decoded message's own dict: nothing else holds it
        if type(message.name) is str:
            segment["name"] = message.name
    if user_id is None and anonymous_id is None:
        return EventError("userId", "one of userId or anonymousId is required")
    # the envelope is built here, so only what came from the message is checked (as `validate_event` would)
    fault = _time_fault(at, written, arrival) or properties_fault(event_type, properties)
    if fault is not None:
        return fault
    return _event(message_id, event_type, written, arrival, user_id, anonymous_id, properties, context, segment)


def _event(message_id: str, event_type: str, written: str, arrival: Arrival, user_id: str | None,
           anonymous_id: str | None, properties: dict, context: dict, segment: dict) -> Mapped:
    """The record of an event call, checked, from what `map_call` or `map_common` made of it."""
    session = context.get("sessionId") or properties.get("session_id") or user_id or anonymous_id
    event = {
        "event_id": message_id, "event_type": event_type, "timestamp": written, "tenant_id": arrival.tenant,
        "user_id": user_id, "anonymous_id": anonymous_id,
        "session_id": session if type(session) is str else str(session),
        "properties": properties, "context": _context(context, segment),
    }
    return Mapped("event", message_id, event)


def map_common(call: CommonCall, arrival: Arrival) -> Mapped | None:
    """A call that `CommonCall` decoded, mapped as `map_call` maps it with fewer checks (msgspec made
    them) and fewer branches; None when it holds anything the common case leaves to `map_call` (its own
    `sentAt`, a time with another offset than UTC, a fault to name). This runs for nearly every event
    received: measured here, 1.8 microseconds a call against `map_call`'s 2.3, and a batch of 100 taken
    in 12 % less time (`make bench-collector`'s in-process figure). The tests hold the two equal
    (`tests/ingestion/test_segment_mapping.py`)."""
    user_id, anonymous_id = call.userId, call.anonymousId
    if call.sentAt is not UNSET or user_id is None and anonymous_id is None:
        return None
    try:
        at = datetime.fromisoformat(call.timestamp)
        if at.tzinfo is not UTC:
            return None
        if arrival.skew is not None:
            at += arrival.skew
    except (ValueError, OverflowError):
        return None
    if at > arrival.latest or (arrival.not_before is not None and at < arrival.not_before):
        return None
    properties = call.properties
    segment = {"call": call.type, "mapping_version": MAPPING_VERSION, "received_at": arrival.received_iso,
               "integrations": call.integrations, "timestamp": call.timestamp}
    if call.originalTimestamp is not None:
        segment["originalTimestamp"] = call.originalTimestamp
    if call.type == "track":
        event_type = TRACK_EVENTS.get(call.event)
        if event_type is None:
            return None
        segment["event"] = call.event
        properties = _event_properties(event_type, properties)
    else:
        path = properties.get("path")
        if type(path) is not str or not path:
            return None
        event_type = "page_view"
        if call.name is not None:
            segment["name"] = call.name
    if properties_fault(event_type, properties) is not None:
        return None
    return _event(call.messageId, event_type, iso(at), arrival, user_id, anonymous_id, properties, call.context,
                  segment)


def _objects(message: Message) -> tuple[dict, dict, dict, dict] | EventError:
    """`context`, `integrations`, `properties` and `traits`, each an object (absent or null: empty)."""
    objects = (message.context, message.integrations, message.properties, message.traits)
    checked = []
    for value, field in zip(objects, ("context", "integrations", "properties", "traits"), strict=True):
        checked.append(_object(value, field))
        if type(checked[-1]) is EventError:
            return checked[-1]
    return tuple(checked)


def _time_fault(at: datetime, written: str, arrival: Arrival) -> EventError | None:
    if at > arrival.latest or (arrival.not_before is not None and at < arrival.not_before):
        return timestamp_fault(at, written, arrival.received_at, arrival.not_before)
    return None


def _profile(message: Message, call: str, message_id: str, arrival: Arrival, user_id: str | None,
             anonymous_id: str | None, at: datetime, written: str, context: dict, traits: dict,
             segment: dict) -> Mapped | EventError:
    ids = {}
    for field, key, value in (("groupId", "group_id", message.groupId),
                              ("previousId", "previous_id", message.previousId)):
        ids[key] = _id(value, field)
        if isinstance(ids[key], EventError):
            return ids[key]
    if call == "alias" and (user_id is None or ids["previous_id"] is None):
        return EventError("previousId" if user_id else "userId", "an alias call needs userId and previousId")
    if call != "alias" and user_id is None and anonymous_id is None:
        return EventError("userId", f"an {call} call needs userId or anonymousId")
    if call == "group" and ids["group_id"] is None:
        return EventError("groupId", "a group call needs groupId")
    fault = _time_fault(at, written, arrival)
    if fault is not None:
        return fault
    record = {"message_id": message_id, "call": call, "tenant_id": arrival.tenant, "user_id": user_id,
              "anonymous_id": anonymous_id, **ids, "timestamp": written, "traits": traits,
              "context": context, "segment": segment}
    return Mapped("profile", message_id, record)
