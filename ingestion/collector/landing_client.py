"""A worker's connection to the landing process: requests multiplexed on one Unix socket."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from pathlib import Path

from ingestion.collector.protocol import Health, Refused, Status, Store, Stored, frame, read_frame, reply_decoder


class LandingUnreachable(ConnectionError):
    """The landing process did not answer: whether the request was stored is unknown."""


class LandingClient:
    def __init__(self, path: Path):
        self.path = path
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future] = {}
        self._numbers = itertools.count(1)
        self._connecting = asyncio.Lock()
        self._reading: asyncio.Task | None = None

    async def _connection(self) -> asyncio.StreamWriter:
        async with self._connecting:
            if self._writer is None or self._writer.is_closing():
                try:
                    reader, self._writer = await asyncio.open_unix_connection(str(self.path))
                except OSError as exc:
                    raise LandingUnreachable(f"the landing process is not running ({exc.strerror})") from None
                self._reading = asyncio.ensure_future(self._read(reader, self._writer))
            return self._writer

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                reply = reply_decoder.decode(await read_frame(reader))
                waiter = self._pending.pop(reply.request, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(reply)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()
            pending, self._pending = self._pending, {}
            for waiter in pending.values():
                if not waiter.done():
                    waiter.set_exception(LandingUnreachable("the landing process stopped before answering"))

    async def _call(self, make) -> Stored | Refused | Health:
        writer = await self._connection()
        number = next(self._numbers)
        waiter = asyncio.get_running_loop().create_future()
        self._pending[number] = waiter
        try:
            writer.write(frame(make(number)))
            await writer.drain()
        except ConnectionError as exc:
            self._pending.pop(number, None)
            raise LandingUnreachable(f"the landing process closed the connection ({exc})") from None
        return await waiter

    async def store(self, event_ids: list[str], event_lines: list[bytes], profile_ids: list[str],
                    profile_lines: list[bytes], quarantine_lines: list[bytes]) -> Stored | Refused:
        join = b"".join
        return await self._call(lambda n: Store(n, event_ids, join(event_lines), profile_ids, join(profile_lines),
                                                join(quarantine_lines)))

    async def health(self) -> Health:
        return await self._call(Status)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        if self._reading is not None:
            with contextlib.suppress(Exception):
                await self._reading
