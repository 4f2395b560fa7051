"""WebSocket fan-out for the Platform API simulator.

Each connection has its own bounded send queue drained by its own task, so a broadcast never
waits for a slow client; a connection whose queue overflows is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from starlette.websockets import WebSocket, WebSocketDisconnect

SEND_QUEUE_LIMIT = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_TRY_AGAIN_LATER = 1013


@dataclass(frozen=True, slots=True)
class Frame:
    """A text frame; `before_send` (if any) runs right before each write of it."""

    text: str
    before_send: Callable[[], None] | None = None


class _Connection:
    def __init__(self, ws: WebSocket, hotkey: str) -> None:
        self.ws = ws
        self.hotkey = hotkey
        self.queue: asyncio.Queue[Frame] = asyncio.Queue(SEND_QUEUE_LIMIT)
        self.close_code = CLOSE_GOING_AWAY
        self.sender: asyncio.Task[None] | None = None


class WsHub:
    """The connected validators; `serve` runs one connection, `broadcast` and `flood` fan out."""

    def __init__(self, on_frame_sent: Callable[[], None]) -> None:
        self._connections: set[_Connection] = set()
        self._on_frame_sent = on_frame_sent
        self._floods: set[asyncio.Task[None]] = set()

    def hotkeys(self) -> list[str]:
        """The hotkeys of the connected validators."""
        return sorted(connection.hotkey for connection in self._connections)

    async def serve(self, ws: WebSocket, hotkey: str) -> None:
        """Accept `ws` and serve it until the client leaves or the hub drops it."""
        await ws.accept()
        connection = _Connection(ws, hotkey)
        connection.sender = asyncio.create_task(self._send_loop(connection))
        receiver = asyncio.create_task(_drain(ws))
        self._connections.add(connection)
        try:
            await asyncio.wait({connection.sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            client_left = receiver.done() and not receiver.cancelled()
            self._connections.discard(connection)
            for task in (connection.sender, receiver):
                task.cancel()
            await asyncio.gather(connection.sender, receiver, return_exceptions=True)
            if not client_left:
                with contextlib.suppress(Exception):
                    await ws.close(connection.close_code)

    async def _send_loop(self, connection: _Connection) -> None:
        while True:
            frame = await connection.queue.get()
            if frame.before_send is not None:
                frame.before_send()
            await connection.ws.send_text(frame.text)
            self._on_frame_sent()

    def broadcast(self, frame: Frame) -> int:
        """Queue `frame` for every connection (dropping any that overflow); return how many."""
        sent = 0
        for connection in list(self._connections):
            try:
                connection.queue.put_nowait(frame)
                sent += 1
            except asyncio.QueueFull:
                self._drop(connection, CLOSE_TRY_AGAIN_LATER)
        return sent

    def flood(self, frame: Frame, count: int) -> None:
        """In the background, queue `frame` `count` times for every connection, waiting for
        room in its queue instead of dropping it (`close` stops it)."""
        task = asyncio.create_task(self._flood(frame, count))
        self._floods.add(task)
        task.add_done_callback(self._floods.discard)

    async def _flood(self, frame: Frame, count: int) -> None:
        for connection in list(self._connections):
            for _ in range(count):
                while connection in self._connections:
                    try:
                        connection.queue.put_nowait(frame)
                    except asyncio.QueueFull:
                        await asyncio.sleep(0.001)
                    else:
                        break

    async def close(self) -> None:
        """Stop every flood, then close every connection."""
        for task in list(self._floods):
            task.cancel()
        await asyncio.gather(*self._floods, return_exceptions=True)
        self.drop_all()

    def drop_all(self) -> int:
        """Close every connection; return how many there were."""
        connections = list(self._connections)
        for connection in connections:
            self._drop(connection, CLOSE_GOING_AWAY)
        return len(connections)

    def _drop(self, connection: _Connection, code: int) -> None:
        self._connections.discard(connection)
        connection.close_code = code
        if connection.sender is not None:
            connection.sender.cancel()


async def _drain(ws: WebSocket) -> None:
    """Read and ignore client frames until the client disconnects."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
