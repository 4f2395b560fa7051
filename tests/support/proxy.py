"""A TCP fault proxy between the engine and a simulator, switchable at run time.

`FaultProxy(upstream_url)` listens on an ephemeral loopback port; point the engine's
`platform_api_url` or `dstack_vmm_url` at `proxy.url`. Modes (`await proxy.set_mode(...)`):

- `up`: forward both ways.
- `refuse`: the listening socket is closed (new connections get "connection refused") and every
  open connection is reset.
- `blackhole`: connections are accepted and never answered; whatever arrives (on new and open
  connections) is dropped.
- `trickle`: what the server sends reaches the client one byte every `interval` seconds.
- `slow`: every chunk, both ways, is delayed by `delay` seconds.

`cut(pattern, where, then=…)` makes the next request whose bytes contain `pattern` lose its answer
(`where="response"`: the server gets the request and answers, the client's connection is reset
instead of answered) or be lost itself (`where="request"`: the server never sees it, the client
is reset after sending), and can switch the mode at that moment.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

Mode = Literal["up", "refuse", "blackhole", "trickle", "slow"]
CHUNK = 65536


@dataclass
class _Cut:
    pattern: bytes
    where: Literal["request", "response"]
    then: Mode | None = None


class _Link:
    """One client connection and its upstream connection."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.cut_response: _Cut | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    def abort(self) -> None:
        """Reset both sides (RST on the client side)."""
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()


class FaultProxy:
    """An asyncio TCP proxy on 127.0.0.1 in front of `upstream_url` (http://host:port)."""

    def __init__(self, upstream_url: str, *, interval: float = 2.0, delay: float = 1.0) -> None:
        parts = urlsplit(upstream_url)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"expected http://host:port, got {upstream_url!r}")
        self.upstream = (parts.hostname, parts.port)
        self.mode: Mode = "up"
        self.interval = interval
        self.delay = delay
        self.port = 0
        self.url = ""
        self.stats: Counter[str] = Counter()
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._cuts: list[_Cut] = []

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def start(self) -> str:
        """Listen on an ephemeral loopback port; returns the proxy's URL."""
        await self._listen()
        self.url = f"http://127.0.0.1:{self.port}"
        return self.url

    async def stop(self) -> None:
        """Stop listening and reset every connection."""
        await self._close_listener()
        self._reset_all()

    async def set_mode(
        self, mode: Mode, *, interval: float | None = None, delay: float | None = None
    ) -> None:
        """Switch mode now (it applies to open connections too)."""
        if interval is not None:
            self.interval = interval
        if delay is not None:
            self.delay = delay
        previous, self.mode = self.mode, mode
        self.stats[f"mode {mode}"] += 1
        if mode == "refuse":
            await self._close_listener()
            self._reset_all()
        elif previous == "refuse":
            await self._listen()

    def cut(
        self,
        pattern: bytes,
        where: Literal["request", "response"] = "response",
        *,
        then: Literal["blackhole", "trickle", "slow"] | None = None,
    ) -> None:
        """Lose the answer to (or the whole of) the next request containing `pattern`; with
        `then`, switch to that mode at the moment of the cut."""
        self._cuts.append(_Cut(pattern, where, then))

    @property
    def connections(self) -> int:
        return len(self._links)

    # -- internals --------------------------------------------------------------------------

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close_listener(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    def _reset_all(self) -> None:
        for link in list(self._links):
            link.abort()
            for task in link.tasks:
                task.cancel()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats["accepted"] += 1
        link = _Link(writer)
        self._links.add(link)
        try:
            if self.mode == "blackhole":
                self.stats["blackholed"] += 1
                while await reader.read(CHUNK):
                    pass
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                self.stats["upstream refused"] += 1
                link.abort()
                return
            link.upstream = up_writer
            tasks = {
                asyncio.create_task(self._pump(link, reader, up_writer, to_server=True)),
                asyncio.create_task(self._pump(link, up_reader, writer, to_server=False)),
            }
            link.tasks = tasks
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._links.discard(link)
            for side in (link.client, link.upstream):
                if side is not None:
                    side.close()

    async def _pump(
        self,
        link: _Link,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        *,
        to_server: bool,
    ) -> None:
        while True:
            data = await source.read(CHUNK)
            if not data:
                with contextlib.suppress(OSError, RuntimeError):
                    sink.write_eof()
                return
            if self.mode == "blackhole":
                continue
            if to_server and self._cut_request(link, data):
                return
            if not to_server and link.cut_response is not None:
                self.stats["responses cut"] += 1
                self._after_cut(link.cut_response)
                link.abort()
                return
            if self.mode == "slow":
                await asyncio.sleep(self.delay)
            if self.mode == "trickle" and not to_server:
                for index in range(len(data)):
                    sink.write(data[index : index + 1])
                    await sink.drain()
                    await asyncio.sleep(self.interval)
                continue
            sink.write(data)
            await sink.drain()

    def _cut_request(self, link: _Link, data: bytes) -> bool:
        """Apply the first matching cut; True when the request was dropped (link reset)."""
        for cut in self._cuts:
            if cut.pattern in data:
                self._cuts.remove(cut)
                if cut.where == "request":
                    self.stats["requests cut"] += 1
                    self._after_cut(cut)
                    link.abort()
                    return True
                link.cut_response = cut
                return False
        return False

    def _after_cut(self, cut: _Cut) -> None:
        if cut.then is not None:
            self.mode = cut.then
            self.stats[f"mode {cut.then}"] += 1
