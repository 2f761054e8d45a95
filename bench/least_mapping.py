"""The least per-event work of mapping the benchmark's calls onto our event model, in Python: the
collector benchmark's ceiling, as the oracle is bench-ml's.

The collector benchmark posts Segment batches of `track` ("Product Added") and `page` calls
(`bench/collector.py`). Whatever else a collector does (de-duplication, metrics, refusals that name
their field, the privacy rules), it must at least turn each of those calls into the record our
landing zone holds: the event type of its name, the timestamp corrected for the client's clock,
the ids renamed, the required properties of its type checked, the device and the call's provenance
put in its context (`ingestion/events/segment.py` says what each becomes). `lines` does only that,
as tightly as I could write it: the whole batch decoded in one call into the collector's typed
structs (`CommonCall`: msgspec checks the types and the non-empty ids in C), then one loop without a
helper call, and the record encoded by orjson. It handles only what the benchmark sends (refusing
the rest with ValueError, naming nothing), so it is not a collector: a collector can only be slower.
`bench/baseline_collector.py --least` is the baseline server with this mapping in place of its plain
decoding: no de-duplication, no metrics, no framework. Its throughput against the baseline's is the
most a collector that maps each event in Python can reach; the benchmark checks that its lines are
the collector's own (`same_lines`), and so does `tests/bench/test_collector_ceilings.py`.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import orjson

from ingestion.events.schema import EVENT_PROPERTIES, MAX_FUTURE_SKEW
from ingestion.events.segment import MAPPING_VERSION, TRACK_EVENTS, CommonCall, iso

REQUIRED = {event_type: tuple(properties.items()) for event_type, properties in EVENT_PROPERTIES.items()}
TENANT = "t001"
NOT_BEFORE = datetime(2000, 1, 1, tzinfo=UTC)


class Batch(msgspec.Struct):
    batch: list[CommonCall]
    sentAt: str


_decode = msgspec.json.Decoder(Batch).decode


def lines(body: bytes, received: datetime | None = None, tenant: str = TENANT) -> tuple[list[str], list[bytes]]:
    """The ids and landing lines of a batch of the benchmark's calls; ValueError for anything else."""
    received = received or datetime.now(UTC)
    fromiso, dumps, newline = datetime.fromisoformat, orjson.dumps, orjson.OPT_APPEND_NEWLINE
    batch = _decode(body)
    skew, latest, received_iso = received - fromiso(batch.sentAt), received + MAX_FUTURE_SKEW, iso(received)
    ids, out, seen = [], [], set()
    for call in batch.batch:
        at = fromiso(call.timestamp)
        if at.tzinfo is not UTC:
            raise ValueError("timestamp")
        at += skew
        if at > latest or at < NOT_BEFORE:
            raise ValueError("timestamp")
        properties = call.properties
        segment = {"call": call.type, "mapping_version": MAPPING_VERSION, "received_at": received_iso,
                   "integrations": call.integrations, "timestamp": call.timestamp}
        if call.type == "track":
            event_type = TRACK_EVENTS.get(call.event)
            if event_type is None:
                raise ValueError("event")
            segment["event"] = call.event
        elif call.type == "page":
            path = properties.get("path")
            if type(path) is not str or not path:
                raise ValueError("properties.path")
            event_type = "page_view"
            segment["name"] = call.name
        else:
            raise ValueError("type")
        for name, types in REQUIRED[event_type]:
            if type(properties.get(name)) not in types:
                raise ValueError(f"properties.{name}")
        user_id, anonymous_id = call.userId, call.anonymousId
        if user_id is None and anonymous_id is None:
            raise ValueError("userId")
        context = call.context
        device = context.pop("device", None)
        if type(device) is dict:
            segment["device"] = device
            context["device"] = device.get("type")
        context["segment"] = segment
        event_id = call.messageId
        if event_id in seen:
            raise ValueError("messageId")
        seen.add(event_id)
        ids.append(event_id)
        out.append(dumps({"event_id": event_id, "event_type": event_type, "timestamp": iso(at), "tenant_id": tenant,
                          "user_id": user_id, "anonymous_id": anonymous_id, "session_id": user_id or anonymous_id,
                          "properties": properties, "context": context}, option=newline))
    return ids, out
