"""Helpers for control-socket tests: an engine with its socket, raw protocol connections, and
the process's open descriptors."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

from tests.support.engine import all_challenges_active, wait_for
from validator_tui.config import ValidatorConfig
from validator_tui.control import frames
from validator_tui.control.host import EngineHost
from validator_tui.control.interface import EngineMode
from validator_tui.engine.validator import Validator


@contextlib.asynccontextmanager
async def hosted(
    config: ValidatorConfig,
    *,
    read_only: bool = False,
    challenges: int = 3,
    **options: Any,
) -> AsyncIterator[EngineHost]:
    """A started engine serving its control socket on this loop; stopped cleanly after."""
    validator = Validator(config, read_only=read_only)
    host = EngineHost(validator, mode=EngineMode.HEADLESS, **options)
    task = asyncio.create_task(host.run())
    try:
        await asyncio.wait_for(validator.wait_started(), 15)
        await wait_for(
            lambda: all_challenges_active(validator, challenges), 20, "challenge CVMs active"
        )
        yield host
    finally:
        await validator.stop()
        await asyncio.wait_for(task, 30)


class Raw:
    """A bare protocol connection: send lines, read frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: EngineHost, *, rcvbuf: int | None = None) -> Raw:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, os.fsencode(host.server.path))
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=frames.MAX_FRAME_BYTES)
        return cls(reader, writer)

    async def send(self, line: bytes) -> None:
        self.writer.write(line if line.endswith(b"\n") else line + b"\n")
        await self.writer.drain()

    async def frame(self, timeout: float = 10.0) -> frames.ServerFrame | None:
        """The next frame, or None at end of stream."""
        line = await asyncio.wait_for(self.reader.readline(), timeout)
        return frames.decode_server(line) if line else None

    async def until(self, kind: type[Any], timeout: float = 10.0) -> Any:
        """Skip frames until one of `kind` arrives (AssertionError if the stream ends)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await self.frame(max(0.1, deadline - loop.time()))
            assert frame is not None, f"stream ended before a {kind.__name__}"
            if isinstance(frame, kind):
                return frame

    async def hello(self, **fields: Any) -> frames.EngineHello:
        await self.send(frames.encode(frames.Hello(protocol=frames.PROTOCOL_VERSION, **fields)))
        answer = await self.frame()
        assert isinstance(answer, frames.EngineHello), answer
        return answer

    async def ended(self, timeout: float = 10.0) -> bool:
        """True once the engine has closed the connection (frames before that are skipped)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            try:
                line = await asyncio.wait_for(self.reader.readline(), deadline - loop.time())
            except (ConnectionError, ValueError):
                return True
            except TimeoutError:
                return False
            if not line:
                return True
        return False

    def close(self) -> None:
        self.writer.transport.abort()


async def sleeper(host: EngineHost, *, read_snapshot: bool = False) -> socket.socket:
    """A console that says hello and then never reads again (a plain socket: no event loop
    reads it behind the test's back). With `read_snapshot`, it reads the snapshot first."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, os.fsencode(host.server.path))
    await loop.sock_sendall(sock, frames.encode(frames.Hello(protocol=frames.PROTOCOL_VERSION)))
    if read_snapshot:
        pending = b""
        while True:
            pending += await loop.sock_recv(sock, 65536)
            lines = pending.split(b"\n")
            pending = lines.pop()
            if any(b'"final":true' in line and b'"snapshot":true' in line for line in lines):
                break
    return sock


def open_fds() -> set[int]:
    """This process's open file descriptors."""
    return {int(name) for name in os.listdir("/proc/self/fd")}


def unix_socket_fds() -> set[int]:
    """Those of this process's descriptors that are Unix sockets."""
    with open("/proc/net/unix") as table:
        inodes = {line.split()[6] for line in list(table)[1:] if len(line.split()) > 6}
    found = set()
    for fd in open_fds():
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:[") and target[8:-1] in inodes:
                found.add(fd)
    return found
