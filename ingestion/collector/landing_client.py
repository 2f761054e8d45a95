"""A worker's connection to the landing process: requests multiplexed on one Unix socket.

An `asyncio.Protocol` rather than streams: a reply resolves its request's future straight from
`data_received`, with no reader task, as this runs for every request.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import msgspec

from ingestion.collector.protocol import Frames, Health, Refused, Status, Store, Stored, frame, reply_decoder


class LandingUnreachable(ConnectionError):
    """The landing process did not answer: whether the request was stored is unknown."""


class _Replies(asyncio.Protocol):
    def __init__(self, pending: dict[int, asyncio.Future]):
        self.pending, self.frames = pending, Frames(reply_decoder)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            replies = self.frames.feed(data)
        except (ValueError, msgspec.DecodeError):
            self.transport.close()
            return
        for reply in replies:
            waiter = self.pending.pop(reply.request, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(reply)

    def connection_lost(self, exc) -> None:
        pending = list(self.pending.values())
        self.pending.clear()
        for waiter in pending:
            if not waiter.done():
                waiter.set_exception(LandingUnreachable("the landing process stopped before answering"))


class LandingClient:
    def __init__(self, path: Path):
        self.path = path
        self._transport: asyncio.Transport | None = None
        self._pending: dict[int, asyncio.Future] = {}
        self._numbers = itertools.count(1)
        self._connecting = asyncio.Lock()

    async def _connection(self) -> asyncio.Transport:
        if self._transport is not None and not self._transport.is_closing():
            return self._transport
        async with self._connecting:
            if self._transport is None or self._transport.is_closing():
                self._pending = {}  # the old connection's protocol failed its waiters
                loop = asyncio.get_running_loop()
                try:
                    self._transport, _ = await loop.create_unix_connection(lambda: _Replies(self._pending),
                                                                           str(self.path))
                except OSError as exc:
                    raise LandingUnreachable(f"the landing process is not running ({exc.strerror})") from None
            return self._transport

    async def _call(self, make) -> Stored | Refused | Health:
        transport = await self._connection()
        number = next(self._numbers)
        waiter = asyncio.get_running_loop().create_future()
        self._pending[number] = waiter
        transport.write(frame(make(number)))
        return await waiter

    async def store(self, event_ids: list[str], event_lines: list[bytes], profile_ids: list[str],
                    profile_lines: list[bytes], quarantine_lines: list[bytes]) -> Stored | Refused:
        join = b"".join
        return await self._call(lambda n: Store(n, event_ids, join(event_lines), profile_ids, join(profile_lines),
                                                join(quarantine_lines)))

    async def health(self) -> Health:
        return await self._call(Status)

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
