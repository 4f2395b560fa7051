"""`Session`: one console's connection to the control socket, from hello to close."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from validator_tui.control import frames
from validator_tui.control.interface import VM_LOG_SETTLE_S
from validator_tui.control.outbound import Outbound
from validator_tui.sanitize import clean_line
from validator_tui.shared.records import OutboxRow, Outcome

if TYPE_CHECKING:
    from validator_tui.control.server import ControlServer

HELLO_TIMEOUT_S = 5.0
#: Malformed frames tolerated (each answered with an error frame) before the connection closes.
MAX_BAD_FRAMES = 20
MAX_COMMANDS_IN_FLIGHT = 16
MAX_LOG_STREAMS = 4
LOG_BATCH_LINES = 200
LOG_BATCH_BYTES = 64 * 1024
MAX_LOG_LINE = 16 * 1024
#: How long a log stream gathers lines before sending them as one frame.
LOG_COALESCE_S = 0.02
#: Seconds a closing session gives its queue to reach a console that reads.
FINISH_FLUSH_S = 1.0


class Session:
    """Serves one console: hello, snapshot and feed, commands, VM log streams."""

    def __init__(
        self,
        server: ControlServer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        out: Outbound,
        pid: int,
        number: int,
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.out = out
        self.pid = pid
        self.number = number
        self.origin = f"console #{number} (pid {pid})"
        self.read_only = False
        self._streams: dict[int, asyncio.Task[None]] = {}
        self._commands = 0
        self._bad = 0
        self._greeted = False
        self._said_fatal = False

    async def serve(self) -> None:
        """Run the connection until the console leaves or is cut off."""
        writer_task = asyncio.create_task(self._write(), name=f"control-out-{self.number}")
        try:
            if await self._hello() and await self.server.sync(self):
                await self._read()
        finally:
            for stream in self._streams.values():
                stream.cancel()
            await asyncio.gather(*self._streams.values(), return_exceptions=True)
            if self._greeted:
                self.server.log("info", f"{self.origin} disconnected")
            if self._said_fatal:
                await self.out.flush(FINISH_FLUSH_S)
            self.out.close()
            writer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer_task

    async def _write(self) -> None:
        with contextlib.suppress(ConnectionError):
            await self.out.run()
        self.writer.transport.abort()

    def cut_off(self, why: str) -> None:
        """Drop this console at once (it costs the engine nothing more)."""
        if self.out.closed:
            return
        self.server.log("warn", f"{self.origin} cut off: {why}")
        self.out.close()
        self.writer.transport.abort()

    async def finish(self, bye: bytes) -> None:
        """The engine is closing: say bye, give the console a moment to read it, close."""
        if not self.out.closed:
            self.out.push(bye)
            await self.out.flush(FINISH_FLUSH_S)
        self.out.close()
        self.writer.transport.abort()

    def send(
        self,
        frame: frames.EngineHello
        | frames.OutcomeFrame
        | frames.JobAnswer
        | frames.OutboxAnswer
        | frames.ErrorFrame,
    ) -> None:
        if not self.out.push(frames.encode(frame)):
            self.cut_off(f"it stopped reading ({self.out.limit} bytes queued)")

    def _error(self, code: str, message: str, *, fatal: bool = False) -> None:
        self._said_fatal = self._said_fatal or fatal
        self.send(frames.ErrorFrame(code=code, message=message, fatal=fatal))

    # -- reading --------------------------------------------------------------------------------

    async def _next_frame(self) -> frames.ClientFrame | None:
        """The console's next valid frame; None when the connection is over."""
        while not self.out.closed:
            try:
                line = await self.reader.readline()
            except ValueError:
                self._error(
                    "too_large", f"frames are limited to {frames.MAX_FRAME_BYTES} bytes", fatal=True
                )
                return None
            except ConnectionError:
                return None
            if not line:
                return None
            if not line.strip():
                continue
            try:
                return frames.decode_client(line)
            except frames.FrameError as exc:
                self._bad += 1
                fatal = self._bad > MAX_BAD_FRAMES
                self._error(exc.code, str(exc), fatal=fatal)
                if fatal:
                    return None
        return None

    async def _hello(self) -> bool:
        try:
            frame = await asyncio.wait_for(self._next_frame(), HELLO_TIMEOUT_S)
        except TimeoutError:
            self._error("timeout", f"no hello within {HELLO_TIMEOUT_S:g}s", fatal=True)
            return False
        if frame is None:
            return False
        if not isinstance(frame, frames.Hello):
            self._error("protocol", "the first frame must be a hello", fatal=True)
            return False
        if frame.protocol != frames.PROTOCOL_VERSION:
            self._error(
                "version",
                f"this engine speaks control protocol {frames.PROTOCOL_VERSION}, the console "
                f"{frame.protocol}: use the same validator-tui version for both",
                fatal=True,
            )
            return False
        validator = self.server.validator
        self.read_only = frame.read_only or validator.read_only
        name = clean_line(frame.client, 40) or "console"
        self.origin = (
            f"{name} #{self.number} (pid {self.pid}{', read-only' if self.read_only else ''})"
        )
        self.send(
            frames.EngineHello(
                protocol=frames.PROTOCOL_VERSION,
                engine=self.server.info,
                read_only=self.read_only,
                connection=self.number,
                origin=self.origin,
            )
        )
        self._greeted = True
        self.server.log("info", f"{self.origin} connected")
        return True

    async def _read(self) -> None:
        while (frame := await self._next_frame()) is not None:
            if isinstance(frame, frames.CommandFrame):
                self._command(frame)
            elif isinstance(frame, frames.LogsOpen):
                self._open_logs(frame)
            elif isinstance(frame, frames.LogsClose):
                stream = self._streams.pop(frame.id, None)
                if stream is not None:
                    stream.cancel()
            elif isinstance(frame, frames.JobRequest):
                job = frames.fit_job(self.server.validator.state.job_copy(frame.job_id))
                self.send(frames.JobAnswer(id=frame.id, job=job))
            elif isinstance(frame, frames.OutboxRequest):
                self.send(
                    _outbox_answer(
                        frame.id, self.server.validator.commands.list_outbox(frame.limit)
                    )
                )
            else:
                self._error("protocol", "hello was already received")

    # -- commands -------------------------------------------------------------------------------

    def _command(self, frame: frames.CommandFrame) -> None:
        if self._commands >= MAX_COMMANDS_IN_FLIGHT:
            refused = Outcome.refused(f"at most {MAX_COMMANDS_IN_FLIGHT} commands at once")
            self.send(frames.OutcomeFrame(id=frame.id, outcome=refused))
            return
        self._commands += 1
        task = asyncio.create_task(self._run_command(frame))
        self.server.commands.add(task)
        task.add_done_callback(self.server.commands.discard)

    async def _run_command(self, frame: frames.CommandFrame) -> None:
        """Run the command to its end even if the console leaves meanwhile."""
        try:
            outcome = await self.server.desk.run(
                self.origin, frame.command, read_only=self.read_only
            )
        finally:
            self._commands -= 1
        if not self.out.closed:
            self.send(frames.OutcomeFrame(id=frame.id, outcome=_fit(outcome, frame.id)))

    # -- VM logs --------------------------------------------------------------------------------

    def _open_logs(self, frame: frames.LogsOpen) -> None:
        if frame.id in self._streams or len(self._streams) >= MAX_LOG_STREAMS:
            why = "stream id in use" if frame.id in self._streams else "too many log streams"
            self.out.push(frames.encode(frames.LogEnd(id=frame.id, error=why)))
            return
        task = asyncio.create_task(self._stream_logs(frame))
        self._streams[frame.id] = task
        task.add_done_callback(lambda _: self._streams.pop(frame.id, None))

    async def _stream_logs(self, request: frames.LogsOpen) -> None:
        lines: asyncio.Queue[str | None] = asyncio.Queue(LOG_BATCH_LINES * 4)
        failure: list[str] = []

        async def produce() -> None:
            await asyncio.sleep(VM_LOG_SETTLE_S)
            try:
                async for line in self.server.validator.commands.vm_logs(
                    request.vm_id, lines=request.lines, follow=request.follow
                ):
                    await lines.put(_wire_line(line))
            except Exception as exc:
                failure.append(clean_line(f"{type(exc).__name__}: {exc}", 300))
            await lines.put(None)

        producer = asyncio.create_task(produce())
        try:
            done = False
            while not done and not self.out.closed:
                first = await lines.get()
                batch: list[str] = []
                if first is None:
                    done = True
                else:
                    batch.append(first)
                    await asyncio.sleep(LOG_COALESCE_S)
                    size = len(first)
                    while not lines.empty() and len(batch) < LOG_BATCH_LINES:
                        more = lines.get_nowait()
                        if more is None:
                            done = True
                            break
                        if size + len(more) > LOG_BATCH_BYTES:
                            batch.append(more)
                            break
                        batch.append(more)
                        size += len(more)
                if batch:
                    frame = frames.encode(frames.LogLines(id=request.id, lines=batch))
                    if not await self.out.push_when_room(frame):
                        self.cut_off(f"it did not read VM logs for {self.out.stall:g}s")
                        return
            end = frames.LogEnd(id=request.id, error=failure[0] if failure else "")
            self.out.push(frames.encode(end))
        finally:
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producer


def _wire_line(line: str) -> str:
    """A log line that JSON can carry (lone surrogates replaced), at most MAX_LOG_LINE."""
    return line[:MAX_LOG_LINE].encode("utf-8", "replace").decode("utf-8")


def _outbox_answer(request_id: int, rows: list[OutboxRow]) -> frames.OutboxAnswer:
    """The outbox rows, as many as fit in one frame (the first ones: dead letters first)."""
    keep = len(rows)
    while True:
        answer = frames.OutboxAnswer(id=request_id, rows=rows[:keep], total=len(rows))
        try:
            frames.encode(answer)
        except frames.FrameError:
            keep //= 2
            continue
        return answer


def _fit(outcome: Outcome, request_id: int) -> Outcome:
    """`outcome`, with fewer rows if all of them would make the frame too large."""
    rows = outcome.rows
    keep = len(rows)
    while True:
        message = outcome.message
        if keep < len(rows):
            message += f" (first {keep} of {len(rows)} rows: the rest exceed one control frame)"
        candidate = Outcome(outcome.ok, message, rows[:keep])
        try:
            frames.encode(frames.OutcomeFrame(id=request_id, outcome=candidate))
        except frames.FrameError:
            if keep == 0:
                return Outcome(outcome.ok, clean_line(outcome.message, 2000))
            keep //= 2
            continue
        return candidate
