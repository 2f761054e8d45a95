"""Messages between the HTTP workers and the landing process, as length-prefixed msgpack frames.

A worker sends what it validated (event lines with their ids, profile lines, quarantine lines); the
landing process answers once they are on disk, or says why nothing was stored. The lines of a kind
travel as one block of bytes (each line ends in a newline; orjson escapes newlines in strings), in
the order of their ids: the landing process claims a request's ids as a set and appends the block
whole, and splits it into lines only when some of its ids were stored before.
"""

from __future__ import annotations

import struct

import msgspec

HEADER = struct.Struct(">I")
MAX_FRAME = 1 << 30


class Store(msgspec.Struct, tag="store"):
    request: int
    event_ids: list[str]
    events: bytes
    profile_ids: list[str]
    profiles: bytes
    quarantine: bytes


def lines(block: bytes) -> list[bytes]:
    """The lines of a block, each with its newline."""
    return [line + b"\n" for line in block.split(b"\n")[:-1]]


class Status(msgspec.Struct, tag="status"):
    request: int


class Stored(msgspec.Struct, tag="stored"):
    request: int
    events: int
    profiles: int
    duplicates: int
    quarantined: bool
    quarantine_error: str = ""


class Refused(msgspec.Struct, tag="refused"):
    """Nothing of the request was stored: `reason` is "busy" (429) or "unavailable" (503)."""

    request: int
    reason: str
    message: str


class Health(msgspec.Struct, tag="health"):
    request: int
    writable: bool
    problem: str
    free_bytes: int
    pending_bytes: int
    open_files: int
    closed_files: int
    remembered_ids: int


Request = Store | Status
Reply = Stored | Refused | Health

_encoder = msgspec.msgpack.Encoder()
request_decoder = msgspec.msgpack.Decoder(Request)
reply_decoder = msgspec.msgpack.Decoder(Reply)


def frame(message) -> bytearray:
    """The message encoded after its length, in one buffer (a 20,000-event request is ~10 MB: no
    copy is made to put the header in front)."""
    buffer = bytearray(HEADER.size)
    _encoder.encode_into(message, buffer, HEADER.size)
    HEADER.pack_into(buffer, 0, len(buffer) - HEADER.size)
    return buffer


class Frames:
    """Cuts the bytes received on a connection into frames and decodes them (for an `asyncio.Protocol`)."""

    def __init__(self, decoder: msgspec.msgpack.Decoder):
        self.decoder, self.buffer = decoder, bytearray()

    def feed(self, data: bytes) -> list:
        """The messages completed by `data` (decoded where they lie in the buffer, without copying
        them out first); ValueError on a frame above `MAX_FRAME`, msgspec.DecodeError on one that
        is not a message."""
        buffer = self.buffer
        buffer += data
        messages, start = [], 0
        with memoryview(buffer) as view:
            while len(buffer) - start >= HEADER.size:
                (size,) = HEADER.unpack_from(buffer, start)
                if size > MAX_FRAME:
                    raise ValueError(f"frame of {size} bytes")
                end = start + HEADER.size + size
                if len(buffer) < end:
                    break
                with view[start + HEADER.size:end] as payload:
                    messages.append(self.decoder.decode(payload))
                start = end
        del buffer[:start]
        return messages
