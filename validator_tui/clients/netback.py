"""An asyncio-native network backend for httpcore, the connection layer under httpx.

httpcore's default backend goes through anyio: a cancel scope around every read and write, an
attribute table rebuilt on each `get_extra_info`, a `poll()` of every idle pooled socket on each
request. The profile of the engine at full load had anyio at 14 % of its CPU, more than the
engine's own code. httpcore documents the network backend as a replaceable part
(`AsyncConnectionPool(network_backend=…)`); this one is a plain asyncio protocol: a read that
finds data buffered returns it without a timer, and whether an idle connection has news
(the server closed it) is known from the protocol's state, with no system call.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Iterable
from typing import Any

import httpcore

#: Stop reading from the socket while this many received bytes wait to be read.
READ_HIGH_WATER = 256 * 1024


class _Protocol(asyncio.Protocol):
    """Buffers what the socket receives until `AsyncioStream.read` takes it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.eof = False
        self.lost = False
        self.error: Exception | None = None
        self.reading_paused = False
        self.writing_paused = False
        self._wakeup: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > READ_HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()
            self.reading_paused = True
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.error = exc
        self._wake()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._wake()

    def take(self, max_bytes: int) -> bytes:
        """Up to `max_bytes` of what was received (there must be some)."""
        chunk = self.chunks.popleft()
        if len(chunk) > max_bytes:
            self.chunks.appendleft(chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        self.buffered -= len(chunk)
        if self.reading_paused and self.buffered <= READ_HIGH_WATER // 2:
            self.reading_paused = False
            if self.transport is not None:
                self.transport.resume_reading()
        return chunk

    async def wait(self, timeout: float | None) -> None:
        """Until something happens on the connection (data, EOF, loss, writable again)."""
        self._wakeup = asyncio.get_running_loop().create_future()
        try:
            if timeout is None:
                await self._wakeup
            else:
                async with asyncio.timeout(timeout):
                    await self._wakeup
        finally:
            self._wakeup = None

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)


#: httpcore's names for what `get_extra_info` answers, and asyncio's.
_EXTRA_NAMES = {
    "ssl_object": "ssl_object",
    "client_addr": "sockname",
    "server_addr": "peername",
    "socket": "socket",
}


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One connection, as httpcore reads and writes it."""

    def __init__(self, protocol: _Protocol) -> None:
        self._protocol = protocol
        self._extra: dict[str, Any] = {}
        self._note_extra()

    def _note_extra(self) -> None:
        """Keep the transport's details now: a closed TLS transport can no longer tell them."""
        transport = self._protocol.transport
        assert transport is not None
        self._extra = {
            ours: transport.get_extra_info(theirs) for ours, theirs in _EXTRA_NAMES.items()
        }

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        protocol = self._protocol
        while not protocol.chunks:
            if protocol.lost and protocol.error is not None:
                raise httpcore.ReadError(str(protocol.error) or type(protocol.error).__name__)
            if protocol.eof or protocol.lost:
                return b""
            try:
                await protocol.wait(timeout)
            except TimeoutError:
                raise httpcore.ReadTimeout("timed out reading") from None
        return protocol.take(max_bytes)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        protocol = self._protocol
        if protocol.lost or protocol.transport is None or protocol.transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        protocol.transport.write(buffer)
        while protocol.writing_paused and not protocol.lost:
            try:
                await protocol.wait(timeout)
            except TimeoutError:
                raise httpcore.WriteTimeout("timed out writing") from None
        if protocol.lost:
            raise httpcore.WriteError("the connection was lost while writing")

    async def aclose(self) -> None:
        if self._protocol.transport is not None:
            self._protocol.transport.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        protocol = self._protocol
        assert protocol.transport is not None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(
                    protocol.transport, protocol, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError:
            await self.aclose()
            raise httpcore.ConnectTimeout("timed out in the TLS handshake") from None
        except (OSError, ssl.SSLError) as exc:
            await self.aclose()
            raise httpcore.ConnectError(str(exc)) from None
        if transport is None:
            raise httpcore.ConnectError("the connection closed during the TLS handshake")
        protocol.transport = transport
        self._note_extra()
        return self

    def get_extra_info(self, info: str) -> Any:
        protocol = self._protocol
        if info == "is_readable":
            # Idle, the only news a connection can have is that the server closed it.
            return bool(protocol.chunks) or protocol.eof or protocol.lost
        return self._extra.get(info)


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """Opens `AsyncioStream`s over TCP or a Unix socket."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        local = (local_address, 0) if local_address else None
        return await _connect(
            loop.create_connection(_Protocol, host, port, local_addr=local), timeout, socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        return await _connect(loop.create_unix_connection(_Protocol, path), timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def _connect(
    opening: Any,
    timeout: float | None,
    socket_options: Iterable[httpcore.SOCKET_OPTION] | None,
) -> AsyncioStream:
    try:
        async with asyncio.timeout(timeout):
            transport, protocol = await opening
    except TimeoutError:
        raise httpcore.ConnectTimeout("timed out connecting") from None
    except ConnectionRefusedError:
        raise httpcore.ConnectError("connection refused") from None
    except OSError as exc:
        raise httpcore.ConnectError(str(exc) or type(exc).__name__) from None
    sock = transport.get_extra_info("socket")
    for option in socket_options or ():
        sock.setsockopt(*option)
    return AsyncioStream(protocol)
