"""From a request body to landing lines: decode, map, validate and encode each event on its own.

A batch is first split into its events without decoding them (`msgspec.Raw`), so that one bad
event (invalid UTF-8, an integer above 64 bits, a lone surrogate, nesting deeper than the encoder
allows, a size above the per-event limit) is refused by itself, naming its field, while the rest of
the batch is stored. The fast path is msgspec and orjson: a call of a batch in the shape the SDKs
send is decoded into `segment.CommonCall`, whose types msgspec checks, and mapped by `map_common`;
any other call is decoded into `segment.Message` (the fields the mapping does not read are skipped)
and mapped by `map_call`, which names what is wrong. The record is encoded by orjson, which refuses
what no JSON line can carry (an integer above 64 bits, nesting deeper than 254); only an event they
refuse is decoded again with the standard library's `json` to find which field is at fault
(`locate_fault`). Skipping a field does not check its UTF-8, so a body that is not valid UTF-8 as a
whole (`valid_utf8`) has each event decoded in full first.

A message with a `type` is a call of Segment's tracking API (mapped by `ingestion.events.segment`);
one without is an event of our own schema (`ingestion.events.schema`). Either is then given to the
privacy rules (`ingestion.privacy`: consent, hashed ids, truncated IP addresses), which may withhold
it: a withheld event is answered as a success and never stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
import orjson
from msgspec import UNSET

from ingestion.events.schema import EventError, validate_event
from ingestion.events.segment import Arrival, CommonCall, Mapped, Message, map_call, map_common, sent_at_of
from ingestion.privacy import Privacy

# orjson refuses deeper documents (its recursion limit); an event is refused at that depth
MAX_DEPTH = 254
INT_RANGE = (-(1 << 63), (1 << 64) - 1)
WITHHELD = b""  # the line of an event the privacy rules keep out of the landing zone


class RequestError(Exception):
    """A request refused as a whole: its status, a code SDKs can read, and a message naming the fault."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


class Envelope(msgspec.Struct):
    """A batch body as Segment's SDKs send it (our own clients may send a bare array instead)."""

    batch: list[msgspec.Raw] | None = None
    sentAt: Any = None
    writeKey: Any = None
    context: Any = None


_envelope = msgspec.json.Decoder(Envelope)
_array = msgspec.json.Decoder(list[msgspec.Raw])
_value = msgspec.json.Decoder()
_message = msgspec.json.Decoder(Message)
_common = msgspec.json.Decoder(CommonCall)


def _decoded(decoder, body: bytes, what: str):
    try:
        return decoder.decode(body)
    except RecursionError:
        raise RequestError(400, "invalid_body", f"{what}: nested deeper than the parser's limit") from None
    except UnicodeDecodeError as exc:
        raise RequestError(400, "invalid_body", f"{what}: invalid UTF-8 at byte {exc.start}") from None
    except msgspec.ValidationError as exc:
        raise RequestError(400, "invalid_body", f"{what}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise RequestError(400, "invalid_body", f"{what}: not valid JSON ({exc})") from None


def _split_slowly(body: bytes) -> tuple[list[msgspec.Raw], Envelope] | None:
    """A body msgspec refuses as a whole for what only one event holds (a lone surrogate escape,
    which even splitting checks): the standard library decodes it, and each event is written again
    in ASCII JSON, so the bad one is refused alone and names its field. None if that fails too."""
    try:
        document = json.loads(body.decode("utf-8", "surrogateescape"))
    except (ValueError, RecursionError):
        return None
    events = document.get("batch") if isinstance(document, dict) else document
    if not isinstance(events, list):
        return None
    try:
        raws = [msgspec.Raw(json.dumps(e).encode()) for e in events]
    except (ValueError, RecursionError):
        return None
    fields = {k: document.get(k) for k in ("sentAt", "writeKey", "context")} if isinstance(document, dict) else {}
    return raws, Envelope(batch=raws, **fields)


def split_batch(body: bytes) -> tuple[list[msgspec.Raw], Envelope]:
    """The raw events of a batch body and its envelope (sentAt, writeKey)."""
    start = body.lstrip()[:1]
    if start not in (b"[", b"{"):
        raise RequestError(400, "invalid_body", 'body: expected {"batch": [event, ...]} or a JSON array of events')
    try:
        if start == b"[":
            return _decoded(_array, body, "body"), Envelope()
        envelope = _decoded(_envelope, body, "body")
    except RequestError as exc:
        if "nested deeper" in exc.message or (slow := _split_slowly(body)) is None:
            raise
        return slow
    if envelope.batch is None:
        raise RequestError(400, "invalid_body", 'body: expected {"batch": [event, ...]} or a JSON array of events')
    return envelope.batch, envelope


def single_message(body: bytes) -> tuple[list[msgspec.Raw], Envelope]:
    """A body of one call (`/v1/track`, `/v1/events`): the message itself, and its writeKey."""
    if body.lstrip()[:1] != b"{":
        raise RequestError(400, "invalid_body", "body: expected a JSON object")
    envelope = _decoded(_envelope, body, "body")
    return [msgspec.Raw(body)], Envelope(writeKey=envelope.writeKey)


def _walk_fault(value: Any) -> tuple[str, str] | None:
    """The first field of a decoded value that no JSON line can carry: (path, reason)."""
    stack: list[tuple[Any, str, int, str]] = [(value, "", 0, "")]
    while stack:
        item, path, depth, field = stack.pop()  # field: the path down to the second level, named for depth
        if depth > MAX_DEPTH:
            return field or "event", f"nested deeper than {MAX_DEPTH} levels"
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                bad = item[exc.start]
                what = "invalid UTF-8" if "\udc80" <= bad <= "\udcff" else "a lone UTF-16 surrogate"
                return path or "event", f"{what} in a string"
        elif isinstance(item, bool) or item is None or isinstance(item, float):
            continue
        elif isinstance(item, int):
            if not INT_RANGE[0] <= item <= INT_RANGE[1]:
                return path or "event", "integer outside the 64-bit range"
        elif isinstance(item, dict):
            for key, child in reversed(list(item.items())):
                child_path = f"{path}.{key}" if path else str(key)
                fault = _walk_fault(key)  # keys are strings: check them the same way
                if fault is not None:  # named with the bad bytes escaped, as the reply must be valid JSON
                    return _escaped(child_path), f"field name: {fault[1]}"
                stack.append((child, child_path, depth + 1, child_path if depth < 2 else field))
        elif isinstance(item, list):
            for i in reversed(range(len(item))):
                stack.append((item[i], f"{path}[{i}]", depth + 1, f"{path}[{i}]" if depth < 2 else field))
    return None


def _escaped(text: str) -> str:
    """`text` with its invalid UTF-8 bytes (decoded as surrogate escapes) written `\\xe9`, and lone
    surrogates `\\ud800`."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def locate_fault(raw: bytes | None, value: Any = None) -> EventError:
    """Why an event the fast path refused cannot be stored, naming the field."""
    if value is None:
        try:
            value = json.loads(raw.decode("utf-8", "surrogateescape"))
        except RecursionError:
            return EventError("event", "nested deeper than the parser's limit")
        except ValueError as exc:
            return EventError("event", f"not valid JSON ({exc})")
    fault = _walk_fault(value)
    return EventError(*fault) if fault else EventError("event", "cannot be written as a JSON line")


@dataclass
class Intake:
    """What a request becomes: lines to store (with their ids), lines to quarantine, and refusals."""

    event_ids: list[str] = field(default_factory=list)
    event_lines: list[bytes] = field(default_factory=list)
    profile_ids: list[str] = field(default_factory=list)
    profile_lines: list[bytes] = field(default_factory=list)
    quarantine_lines: list[bytes] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    first_seen: dict[str, int] = field(default_factory=dict)  # where each id stored came in the request
    withheld: int = 0  # events the privacy rules kept out (no consent)


@dataclass(frozen=True)
class Rules:
    tenant: str
    received_at: datetime
    not_before: datetime
    max_event_bytes: int
    privacy: Privacy | None = None


def valid_utf8(body: bytes) -> bool:
    if body.isascii():
        return True
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _decode(raw: msgspec.Raw, call: str | None, utf8: bool) -> tuple[Message | None, Any, EventError | None]:
    """(the message as a Segment call, or None; else its generic value; or the fault that stops it).
    A message is decoded into `Message` unless it is not an object, or one of our own events (on
    `/v1/events`, or without `type` on `/v1/batch`): those are decoded generically, as our events
    are stored as sent. Where the body is not valid UTF-8 as a whole (`utf8` False), each message
    is first decoded generically, which checks the UTF-8 of every field, skipped ones included."""
    try:
        if call == "own":
            return None, _value.decode(raw), None
        if not utf8:
            value = _value.decode(raw)
            if not isinstance(value, dict) or call is None and "type" not in value:
                return None, value, None
            return _message.decode(raw), None, None
        try:
            message = _message.decode(raw)
        except msgspec.ValidationError:  # not an object: refused below, naming what it is
            return None, _value.decode(raw), None
        if call is not None or message.type is not UNSET:
            return message, None, None
        return None, _value.decode(raw), None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None, None, locate_fault(bytes(raw))


def take_in(raws: list[msgspec.Raw], call: str | None, rules: Rules, sent_at: Any, where,
            utf8: bool = True, into: Intake | None = None, first: int = 0) -> Intake:
    """Map and validate every event of a request. `call` is the route's Segment call ("track", ...),
    "own" for our own schema's single-event route, or None on `/v1/batch` (each message decides).
    `utf8`: the body is valid UTF-8 as a whole (`valid_utf8`). A request may be taken in slices:
    `raws` from its event number `first` on, added to `into`. Raises RequestError(403) when one of
    our events names another tenant: nothing is stored then."""
    out = into if into is not None else Intake()
    first_seen = out.first_seen
    batch_sent_at = sent_at_of(sent_at)
    now, tenant = rules.received_at, rules.tenant
    arrival = Arrival(tenant, now, None if isinstance(batch_sent_at, EventError) else batch_sent_at,
                      rules.not_before)
    dumps, newline, decode, max_bytes = orjson.dumps, orjson.OPT_APPEND_NEWLINE, _message.decode, rules.max_event_bytes
    decode_common = _common.decode
    private = rules.privacy.apply if rules.privacy is not None else None
    fast = utf8 and call != "own" and not isinstance(batch_sent_at, EventError)
    common = fast and call is None  # on /v1/batch: each message's `type` is its call
    for i, raw in enumerate(raws, first):
        if fast and len(raw) <= max_bytes:
            # the common case: a well-formed Segment call, stored; anything else is taken again below
            try:
                mapped = None
                if common:
                    try:  # noqa: SIM105 (contextlib.suppress costs a quarter of a microsecond an event)
                        mapped = map_common(decode_common(raw), arrival)
                    except msgspec.DecodeError:  # not in the common shape
                        pass
                if mapped is None:
                    message = decode(raw)
                    mapped = map_call(message, call, arrival, raw) if call or message.type is not UNSET else None
                if type(mapped) is Mapped:
                    record = mapped.record if private is None else private(mapped.kind, mapped.record)
                    line = WITHHELD if record is None else dumps(record, option=newline)
                else:
                    line = None
            except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, orjson.JSONEncodeError):
                line = None
            if line is not None and mapped.event_id not in first_seen:
                first_seen[mapped.event_id] = i
                if line is WITHHELD:
                    out.withheld += 1
                elif mapped.kind == "event":
                    out.event_ids.append(mapped.event_id)
                    out.event_lines.append(line)
                else:
                    out.profile_ids.append(mapped.event_id)
                    out.profile_lines.append(line)
                continue
        message = value = mapped = None
        if len(raw) > max_bytes:
            error = EventError("event", f"{len(raw):,} bytes is above the per-event limit of {max_bytes:,}")
        else:
            message, value, error = _decode(raw, call, utf8)
        if error is None and isinstance(batch_sent_at, EventError):
            error = EventError(f"sentAt (of the batch) {batch_sent_at.field}", batch_sent_at.reason)
        # a Segment call (or, not being an object, refused as one), else one of our own events
        segment = message is not None or call != "own" and not isinstance(value, dict)
        if error is None:
            if not segment:
                named = value.get("tenant_id") if isinstance(value, dict) else None
                if isinstance(named, str) and named != tenant:
                    raise RequestError(403, "forbidden", f"{where(i)}.tenant_id: {named!r} is not the tenant of "
                                                         "this write key; nothing from this request was stored")
                error = validate_event(value, now, rules.not_before)
                mapped = None if error else Mapped("event", value["event_id"], value)
            elif message is not None:
                mapped = map_call(message, call, arrival, raw)
                error = mapped if isinstance(mapped, EventError) else None
            else:
                error = EventError("message", f"expected a JSON object, got {type(value).__name__}")
        if error is None and mapped.event_id in first_seen:
            error = EventError("messageId" if segment else "event_id",
                               f"duplicate of {where(first_seen[mapped.event_id])} in this request")
        if error is None:
            record = mapped.record if private is None else private(mapped.kind, mapped.record)
            if record is None:
                first_seen[mapped.event_id] = i
                out.withheld += 1
                continue
            try:
                line = dumps(record, option=newline)
            except orjson.JSONEncodeError:
                error = locate_fault(None, record)
        if error is not None:
            if value is None and message is not None:
                value = _quietly_decoded(raw)
            out.rejected.append({"index": i, "field": error.field, "reason": error.reason})
            out.quarantine_lines.append(_quarantine_line(now, where(i), error, value, raw))
            continue
        first_seen[mapped.event_id] = i
        if mapped.kind == "event":
            out.event_ids.append(mapped.event_id)
            out.event_lines.append(line)
        else:
            out.profile_ids.append(mapped.event_id)
            out.profile_lines.append(line)
    return out


def _quietly_decoded(raw: msgspec.Raw) -> Any:
    try:
        return _value.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None


def _quarantine_line(now: datetime, where: str, error: EventError, value: Any, raw: msgspec.Raw) -> bytes:
    """The refused event with its reason; as text when it cannot be written as JSON."""
    held = {"received_at": now.isoformat(), "where": where, "field": error.field, "reason": error.reason}
    if value is not None:
        try:
            return orjson.dumps({**held, "event": value}) + b"\n"
        except orjson.JSONEncodeError:
            pass
    return orjson.dumps({**held, "raw": bytes(raw).decode("utf-8", "replace")}) + b"\n"
