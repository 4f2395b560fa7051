"""`Outbound`: one connection's bounded send queue and the task that writes it out.

The engine only ever appends to the queue (`push` never waits): a console that stops reading
fills its queue, `push` says no, and the server cuts that console off. Bulk senders (the
snapshot, VM logs) use `push_when_room`, which waits while the queue is half full, so they
never push a live console over the edge, and gives up (the console is cut off) when no room
comes within `stall` seconds.
"""

from __future__ import annotations

import asyncio
from collections import deque

#: Bytes handed to the transport per write.
WRITE_BATCH = 256 * 1024


class Outbound:
    """Frames waiting for one connection (at most `limit` bytes of them)."""

    def __init__(self, writer: asyncio.StreamWriter, limit: int, stall: float) -> None:
        self._writer = writer
        self.limit = limit
        self.stall = stall
        self._frames: deque[bytes] = deque()
        self.queued = 0
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self.closed = False
        self.done = False

    def push(self, frame: bytes) -> bool:
        """Queue `frame`; False (nothing queued) when it does not fit in the limit."""
        if self.closed:
            return True
        if self.queued + len(frame) > self.limit:
            return False
        self._frames.append(frame)
        self.queued += len(frame)
        self._ready.set()
        if self.queued > self.limit // 2:
            self._room.clear()
        return True

    async def push_when_room(self, frame: bytes) -> bool:
        """Wait until the queue is at most half full, then `push`; False when that took more
        than `stall` seconds (the console is not reading)."""
        while not self.closed and self.queued > self.limit // 2:
            self._room.clear()
            try:
                await asyncio.wait_for(self._room.wait(), self.stall)
            except TimeoutError:
                return False
        return self.push(frame)

    def close(self) -> None:
        """Drop what is queued; wake every waiter."""
        self.closed = True
        self._frames.clear()
        self.queued = 0
        self._room.set()
        self._ready.set()

    async def run(self) -> None:
        """Write queued frames as they come (the connection's writer task)."""
        try:
            await self._write_all()
        finally:
            self.done = True

    async def _write_all(self) -> None:
        while not self.closed:
            await self._ready.wait()
            self._ready.clear()
            while self._frames and not self.closed:
                batch: list[bytes] = []
                size = 0
                while self._frames and size < WRITE_BATCH:
                    frame = self._frames.popleft()
                    batch.append(frame)
                    size += len(frame)
                self.queued -= size
                if self.queued <= self.limit // 2:
                    self._room.set()
                self._writer.write(b"".join(batch))
                await self._writer.drain()

    async def flush(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for the queue to be written out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (
            not self.done
            and (self._frames or self._writer.transport.get_write_buffer_size())
            and loop.time() < deadline
        ):
            await asyncio.sleep(0.01)
