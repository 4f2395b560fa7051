"""`SocketEngine`: the `EngineClient` of an attached console, over the control socket.

The engine pushes a snapshot and then its change feed; a `Replica` rebuilt from them answers
`changes_since` and `job` locally, so the console never waits on the socket. Commands are
sent as frames and their outcome awaited. When the connection drops the console keeps what it
has, `link` says so at once, and the client reconnects on its own (to the same engine, or to
the next one started on the state dir).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path

from validator_tui.control import frames
from validator_tui.control.frame_commands import ClientCommands
from validator_tui.control.interface import EngineInfo, EngineMode, Link, LinkStatus
from validator_tui.control.paths import find_socket, state_dir_key
from validator_tui.control.replica import Replica
from validator_tui.sanitize import clean_line
from validator_tui.shared.delta import StateDelta
from validator_tui.shared.records import JobRecord, OutboxRow, Outcome

logger = logging.getLogger("validator_tui.attach")

CONNECT_TIMEOUT_S = 5.0
RECONNECT_FIRST_S = 0.25
RECONNECT_CAP_S = 2.0
#: VM log lines a console may be behind on before the oldest are dropped.
LOG_BACKLOG_LINES = 5000
LOST_ANSWER = (
    "the connection to the engine was lost before it answered: the command may or may not "
    "have run (see the event log once reconnected)"
)


class EngineUnavailable(RuntimeError):
    """No engine answers at the control socket (the message says why, and what to do)."""


class _LogStream:
    """VM log lines received for one `vm_logs` reader (bounded: the oldest are dropped)."""

    def __init__(self) -> None:
        self.lines: deque[str] = deque()
        self.dropped = 0
        self.ended = False
        self.error = ""
        self.arrived = asyncio.Event()

    def feed(self, lines: list[str]) -> None:
        self.lines.extend(lines)
        while len(self.lines) > LOG_BACKLOG_LINES:
            self.lines.popleft()
            self.dropped += 1
        self.arrived.set()

    def end(self, error: str) -> None:
        self.ended, self.error = True, error
        self.arrived.set()


class SocketEngine(ClientCommands):
    """A console's view of an engine in another process (connect first, close after)."""

    def __init__(
        self,
        state_dir: Path,
        *,
        read_only: bool = False,
        client: str = "attach",
        socket: Path | None = None,
        reconnect_cap: float = RECONNECT_CAP_S,
    ) -> None:
        self.state_dir = state_dir_key(state_dir)
        self._socket = socket
        self._want_read_only = read_only
        self._client = client
        self._reconnect_cap = reconnect_cap
        self._info = EngineInfo(str(self.state_dir), 0, EngineMode.CONSOLE, "", 0.0)
        self._read_only = read_only
        self._link = Link(LinkStatus.GONE, time.time(), "not connected yet")
        self.replica = Replica()
        self.origin = ""
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[Outcome]] = {}
        self._lookups: dict[int, asyncio.Future[JobRecord | None]] = {}
        self._outboxes: dict[int, asyncio.Future[list[OutboxRow] | None]] = {}
        self._streams: dict[int, _LogStream] = {}
        self._ids = 0
        self._bye: frames.Bye | None = None
        self._runner: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def socket_path(self) -> Path:
        return self._socket or find_socket(self.state_dir)

    # -- connecting -----------------------------------------------------------------------------

    async def connect(self, timeout: float = CONNECT_TIMEOUT_S) -> None:
        """Connect and wait for the engine's snapshot; EngineUnavailable if no engine answers.
        From then on the client reconnects on its own until `close()`."""
        await self._open(timeout)
        snapshots = self.replica.snapshots
        self._runner = asyncio.create_task(self._run(), name="attach-link")
        deadline = asyncio.get_running_loop().time() + timeout
        while self.replica.snapshots == snapshots and self._writer is not None:
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        """Leave the engine (it keeps running) and stop reconnecting."""
        self._closed = True
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        self._drop_connection("the console closed")

    async def _open(self, timeout: float = CONNECT_TIMEOUT_S) -> None:
        path = self.socket_path
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(path, limit=frames.MAX_FRAME_BYTES),
                timeout,
            )
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise EngineUnavailable(
                f"no validator engine is running on state dir {self.state_dir} "
                f"(nothing listens at {path})"
            ) from exc
        except PermissionError as exc:
            raise EngineUnavailable(
                f"permission denied on {path}: attach as the user the engine runs as"
            ) from exc
        except (OSError, TimeoutError) as exc:
            raise EngineUnavailable(f"cannot reach the engine at {path}: {exc!r}") from exc
        try:
            hello = await asyncio.wait_for(self._handshake(reader, writer), timeout)
        except TimeoutError as exc:
            writer.transport.abort()
            raise EngineUnavailable(f"the engine did not answer within {timeout:g}s") from exc
        except BaseException:
            writer.transport.abort()
            raise
        same = (hello.engine.pid, hello.engine.started_at) == (
            self._info.pid,
            self._info.started_at,
        )
        if not same:
            self.replica.new_engine()
        self.replica.reconnected()
        self._info, self._read_only, self.origin = hello.engine, hello.read_only, hello.origin
        self.replica.read_only = hello.read_only
        self._reader, self._writer, self._bye = reader, writer, None
        self._set_link(LinkStatus.CONNECTED, f"pid {hello.engine.pid}")
        self.replica.note(
            "info",
            "link",
            f"attached to the engine (pid {hello.engine.pid}, {hello.engine.mode}) as "
            f"{clean_line(hello.origin, 80)}",
        )

    async def _handshake(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> frames.EngineHello:
        hello = frames.Hello(
            protocol=frames.PROTOCOL_VERSION, client=self._client, read_only=self._want_read_only
        )
        writer.write(frames.encode(hello))
        await writer.drain()
        try:
            line = await reader.readline()
        except (ValueError, ConnectionError) as exc:
            raise EngineUnavailable(f"the engine closed the connection: {exc!r}") from exc
        if not line:
            raise EngineUnavailable("the engine closed the connection without a word")
        try:
            answer = frames.decode_server(line)
        except frames.FrameError as exc:
            raise EngineUnavailable(f"the engine's answer is not a hello: {exc}") from exc
        if isinstance(answer, frames.ErrorFrame):
            raise EngineUnavailable(f"the engine refused the console: {answer.message}")
        if not isinstance(answer, frames.EngineHello):
            raise EngineUnavailable(f"the engine answered {answer.type!r}, not hello")
        if answer.protocol != frames.PROTOCOL_VERSION:
            raise EngineUnavailable(
                f"the engine speaks control protocol {answer.protocol}, this console "
                f"{frames.PROTOCOL_VERSION}: use the same validator-tui version for both"
            )
        return answer

    async def _run(self) -> None:
        """Read frames; when the connection ends, reconnect with backoff, forever."""
        while not self._closed:
            await self._read_frames()
            bye = self._bye
            if bye is not None:
                detail = clean_line(bye.message, 200)
                self._drop_connection(detail, LinkStatus.GONE)
            else:
                self._drop_connection("connection lost", LinkStatus.RECONNECTING)
            await self._reconnect()

    async def _reconnect(self) -> None:
        delay = RECONNECT_FIRST_S
        while not self._closed:
            self._link = Link(self._link.status, self._link.since, self._link.detail, delay)
            await asyncio.sleep(delay)
            try:
                await self._open()
                return
            except EngineUnavailable as exc:
                gone = isinstance(exc.__cause__, (FileNotFoundError, ConnectionRefusedError))
                status = LinkStatus.GONE if gone else LinkStatus.RECONNECTING
                if status is not self._link.status:
                    self._set_link(status, clean_line(str(exc), 200))
            delay = min(self._reconnect_cap, delay * 2)

    async def _read_frames(self) -> None:
        reader = self._reader
        while reader is not None:
            try:
                line = await reader.readline()
            except (ValueError, ConnectionError) as exc:
                logger.warning("control connection: %r", exc)
                return
            if not line:
                return
            try:
                frame = frames.decode_server(line)
            except frames.FrameError as exc:
                self.replica.note("warn", "link", f"bad frame from the engine: {exc}")
                continue
            self._dispatch(frame)

    def _dispatch(self, frame: frames.ServerFrame) -> None:
        if isinstance(frame, frames.StateFrame):
            self.replica.apply(frame)
        elif isinstance(frame, frames.OutcomeFrame):
            future = self._pending.pop(frame.id, None)
            if future is not None and not future.done():
                future.set_result(frame.outcome)
        elif isinstance(frame, frames.JobAnswer):
            lookup = self._lookups.pop(frame.id, None)
            if lookup is not None and not lookup.done():
                lookup.set_result(frame.job)
        elif isinstance(frame, frames.OutboxAnswer):
            listing = self._outboxes.pop(frame.id, None)
            if listing is not None and not listing.done():
                listing.set_result(frame.rows)
        elif isinstance(frame, frames.LogLines):
            stream = self._streams.get(frame.id)
            if stream is not None:
                stream.feed(frame.lines)
        elif isinstance(frame, frames.LogEnd):
            stream = self._streams.get(frame.id)
            if stream is not None:
                stream.end(frame.error)
        elif isinstance(frame, frames.ErrorFrame):
            self.replica.note("warn", "link", f"the engine says: {clean_line(frame.message, 300)}")
        elif isinstance(frame, frames.Bye):
            self._bye = frame

    def _drop_connection(self, detail: str, status: LinkStatus = LinkStatus.GONE) -> None:
        """Forget the connection: pending commands are answered, log streams end."""
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.transport.abort()
            level = "info" if self._closed else "warn"
            self.replica.note(level, "link", f"connection to the engine closed: {detail}")
        for future in self._pending.values():
            if not future.done():
                future.set_result(Outcome.refused(LOST_ANSWER))
        self._pending.clear()
        for lookup in self._lookups.values():
            if not lookup.done():
                lookup.set_result(None)
        self._lookups.clear()
        for listing in self._outboxes.values():
            if not listing.done():
                listing.set_result(None)
        self._outboxes.clear()
        for stream in self._streams.values():
            stream.end("the connection to the engine was lost")
        if self._link.status is not status or self._link.detail != detail:
            self._set_link(status, detail)

    def _set_link(self, status: LinkStatus, detail: str) -> None:
        self._link = Link(status, time.time(), detail)

    def _send(
        self,
        frame: frames.CommandFrame
        | frames.LogsOpen
        | frames.LogsClose
        | frames.JobRequest
        | frames.OutboxRequest,
    ) -> bool:
        if self._writer is None:
            return False
        self._writer.write(frames.encode(frame))
        return True

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    # -- EngineClient ---------------------------------------------------------------------------

    @property
    def info(self) -> EngineInfo:
        return self._info

    @property
    def read_only(self) -> bool:
        return self._read_only

    @property
    def embedded(self) -> bool:
        return False

    @property
    def link(self) -> Link:
        return self._link

    async def changes_since(self, version: int, event_seq: int) -> StateDelta:
        return self.replica.changes_since(version, event_seq)

    async def job(self, job_id: str) -> JobRecord | None:
        """From the replica; a job older than the snapshot carried is asked of the engine
        (None when it is unknown there too, or the connection is down)."""
        known = self.replica.job(job_id)
        if known is not None:
            return known
        request = self._next_id()
        lookup: asyncio.Future[JobRecord | None] = asyncio.get_running_loop().create_future()
        self._lookups[request] = lookup
        if not self._send(frames.JobRequest(id=request, job_id=job_id)):
            self._lookups.pop(request, None)
            return None
        return await lookup

    async def command(self, command: frames.Command) -> Outcome:
        request = self._next_id()
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._pending[request] = future
        if not self._send(frames.CommandFrame(id=request, command=command)):
            self._pending.pop(request, None)
            return Outcome.refused(
                f"not connected to the engine ({self._link.status}): the command was not sent"
            )
        return await future

    # -- the results outbox (`validator-tui outbox` on a running engine) ----------------------

    async def list_outbox(self, limit: int = 1000) -> list[OutboxRow]:
        """The engine's results outbox (dead letters first).

        Raises `EngineUnavailable` when the connection is down or drops before the answer.
        """
        request = self._next_id()
        listing: asyncio.Future[list[OutboxRow] | None]
        listing = asyncio.get_running_loop().create_future()
        self._outboxes[request] = listing
        if not self._send(frames.OutboxRequest(id=request, limit=limit)):
            self._outboxes.pop(request, None)
            raise EngineUnavailable("the connection to the engine was lost")
        rows = await listing
        if rows is None:
            raise EngineUnavailable("the connection to the engine was lost")
        return rows

    async def vm_logs(
        self, vm_id: str, *, lines: int = 200, follow: bool = True
    ) -> AsyncIterator[str]:
        """The VM's log lines as the engine streams them (raw: sanitise before display)."""
        request = self._next_id()
        stream = _LogStream()
        self._streams[request] = stream
        try:
            if not self._send(frames.LogsOpen(id=request, vm_id=vm_id, lines=lines, follow=follow)):
                raise EngineUnavailable("not connected to the engine")
            while True:
                await stream.arrived.wait()
                stream.arrived.clear()
                if stream.dropped:
                    yield f"[validator-tui] {stream.dropped} log lines dropped (console behind)"
                    stream.dropped = 0
                while stream.lines:
                    yield stream.lines.popleft()
                if stream.ended:
                    if stream.error:
                        raise EngineUnavailable(stream.error)
                    return
        finally:
            self._streams.pop(request, None)
            if not stream.ended:
                self._send(frames.LogsClose(id=request))
