"""`ControlServer`: the engine's control socket (a Unix socket, same uid only).

Runs on the engine's own loop. Each console gets the engine's hello, a full snapshot, then the
shared change feed (one delta every `push_interval`, encoded once for every console); its
commands go through the `CommandDesk`; it may stream VM logs. A console costs the engine a
bounded queue: one that stops reading is cut off when the queue is full. See
docs/control-protocol.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from validator_tui.control import frames
from validator_tui.control.desk import CommandDesk
from validator_tui.control.interface import EngineInfo
from validator_tui.control.outbound import Outbound
from validator_tui.control.paths import ensure_private_dir, link_path
from validator_tui.control.session import Session
from validator_tui.engine.state import EngineState
from validator_tui.engine.validator import Validator
from validator_tui.sanitize import clean_line
from validator_tui.shared.delta import StateDelta
from validator_tui.shared.records import JobRecord

logger = logging.getLogger("validator_tui.control")

PUSH_INTERVAL_S = 0.1
#: Push the header (throughput buckets, ages) at least this often, even when nothing changed.
HEADER_EVERY_S = 10.0
QUEUE_BYTES = 8 << 20
#: A console that takes no bulk data (snapshot, VM logs) for this long is cut off.
STALL_S = 30.0
MAX_SESSIONS = 32
#: Snapshot frames are smaller than the protocol allows: each is encoded on the engine's loop.
SNAPSHOT_FRAME_BYTES = 256 * 1024
#: A snapshot carries every unfinished job and this many of the latest finished ones (what a
#: console shows); older records are fetched one by one (`job` frames).
SNAPSHOT_FINISHED_JOBS = 500
#: ... and this many of the latest events: a screenful of context and some scrollback; each
#: line costs the console a render at attach time (the whole log is in validator.log).
SNAPSHOT_EVENTS = 100
SOCKET_MODE = 0o600


@dataclass(frozen=True, slots=True)
class Peer:
    """The process at the other end of a connection (SO_PEERCRED)."""

    pid: int
    uid: int
    gid: int


def peer_of(writer: asyncio.StreamWriter) -> Peer | None:
    """The peer's credentials, or None when the kernel does not say."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    pid, uid, gid = struct.unpack("3i", raw)
    return Peer(pid, uid, gid)


class ControlServer:
    """Serves one engine's consoles on `path` (start on the engine's loop; close after it)."""

    def __init__(
        self,
        validator: Validator,
        info: EngineInfo,
        desk: CommandDesk,
        *,
        path: Path,
        push_interval: float = PUSH_INTERVAL_S,
        queue_bytes: int = QUEUE_BYTES,
        stall: float = STALL_S,
        max_sessions: int = MAX_SESSIONS,
    ) -> None:
        self.validator = validator
        self.info = info
        self.desk = desk
        self.path = path
        self.push_interval = push_interval
        self.queue_bytes = queue_bytes
        #: State frames are cut to half a queue at most, so one always fits in a draining queue.
        self.frame_limit = min(frames.MAX_FRAME_BYTES, queue_bytes // 2)
        self.stall = stall
        self.max_sessions = max_sessions
        self._server: asyncio.AbstractServer | None = None
        self._inode: int | None = None
        self._feed_task: asyncio.Task[None] | None = None
        self._sessions: set[Session] = set()
        self._subscribers: set[Session] = set()
        self._watched = asyncio.Event()  # set while a console follows the feed
        self._connections: set[asyncio.Task[None]] = set()
        self._numbers = 0
        self._pushed_version = 0
        self._pushed_seq = 0
        self._pushed_at = 0.0
        self.commands: set[asyncio.Task[None]] = set()

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the socket (mode 0600, in a 0700 directory) and serve."""
        state_dir = Path(self.info.state_dir)
        ensure_private_dir(state_dir)
        ensure_private_dir(self.path.parent)
        sock = _bind(self.path)
        self._inode = os.stat(self.path).st_ino
        link = link_path(state_dir)
        if link != self.path:
            _replace_symlink(link, self.path)
        self._server = await asyncio.start_unix_server(
            self._accept, sock=sock, limit=frames.MAX_FRAME_BYTES
        )
        self._feed_task = asyncio.create_task(self._feed(), name="control-feed")
        logger.info("control socket: listening on %s", self.path)

    async def close(self, reason: str = "stopped", message: str = "the validator stopped") -> None:
        """Say bye to every console, close the connections and remove the socket."""
        if self._server is not None:
            self._server.close()
        if self._feed_task is not None:
            self._feed_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._feed_task
        for task in list(self.commands):
            task.cancel()
        bye = frames.encode(frames.Bye(reason=reason, message=message))
        await asyncio.gather(
            *(session.finish(bye) for session in list(self._sessions)), return_exceptions=True
        )
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, *self.commands, return_exceptions=True)
        self._remove_socket()

    def _remove_socket(self) -> None:
        with contextlib.suppress(OSError):
            if self._inode is not None and os.stat(self.path).st_ino == self._inode:
                self.path.unlink()
        link = link_path(Path(self.info.state_dir))
        with contextlib.suppress(OSError):
            if link != self.path and link.is_symlink() and Path(os.readlink(link)) == self.path:
                link.unlink()

    # -- connections ----------------------------------------------------------------------------

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._connections.discard(task)
            writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = peer_of(writer)
        if peer is None or peer.uid != os.getuid():
            who = "an unknown peer" if peer is None else f"uid {peer.uid} (pid {peer.pid})"
            self.log(
                "warn",
                f"control socket: refused a connection from {who}: only uid "
                f"{os.getuid()} may connect",
            )
            writer.write(_error("refused", "only the engine's own user may connect", fatal=True))
            with contextlib.suppress(ConnectionError):
                await asyncio.wait_for(writer.drain(), 1.0)
            return
        if len(self._sessions) >= self.max_sessions:
            writer.write(_error("busy", f"at most {self.max_sessions} consoles at once", True))
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.drain(), 1.0)
            return
        self._numbers += 1
        session = Session(
            self,
            reader,
            writer,
            Outbound(writer, self.queue_bytes, self.stall),
            peer.pid,
            self._numbers,
        )
        self._sessions.add(session)
        try:
            await session.serve()
        finally:
            self._sessions.discard(session)
            self._subscribers.discard(session)
            if not self._subscribers:
                self._watched.clear()

    # -- the change feed ------------------------------------------------------------------------

    async def sync(self, session: Session) -> bool:
        """Send `session` a snapshot, then what changed meanwhile, and subscribe it to the
        feed; False when it was cut off on the way."""
        state = self.validator.state
        snapshot = snapshot_of(state)
        limit = min(SNAPSHOT_FRAME_BYTES, self.frame_limit)
        for frame in frames.state_frames(snapshot, snapshot=True, limit=limit):
            if not await session.out.push_when_room(frame):
                session.cut_off(f"it did not take its snapshot within {self.stall:g}s")
                return False
            await asyncio.sleep(0)
        if session.out.closed:
            return False
        seq = snapshot.events[-1].seq if snapshot.events else 0
        catch_up = state.changes_since(snapshot.version, seq)
        if catch_up.version != snapshot.version or catch_up.events:
            for frame in frames.state_frames(
                catch_up, snapshot=catch_up.full, limit=self.frame_limit
            ):
                if not session.out.push(frame):
                    session.cut_off("its queue was full after the snapshot")
                    return False
        if not self._subscribers:
            self._pushed_version = catch_up.version
            self._pushed_seq = catch_up.events[-1].seq if catch_up.events else seq
        self._subscribers.add(session)
        self._watched.set()
        return True

    async def _feed(self) -> None:
        """Push every `push_interval` while a console follows (no wake-ups otherwise)."""
        while True:
            await self._watched.wait()
            await asyncio.sleep(self.push_interval)
            self.push()

    def push(self) -> None:
        """Send what changed since the last push to every subscribed console."""
        state = self.validator.state
        now = time.monotonic()
        if not self._subscribers:
            return
        if state.version == self._pushed_version and now - self._pushed_at < HEADER_EVERY_S:
            return
        delta = state.changes_since(self._pushed_version, self._pushed_seq)
        encoded = list(frames.state_frames(delta, snapshot=delta.full, limit=self.frame_limit))
        self._pushed_version = delta.version
        if delta.events:
            self._pushed_seq = delta.events[-1].seq
        self._pushed_at = now
        for session in list(self._subscribers):
            for frame in encoded:
                if not session.out.push(frame):
                    session.cut_off(f"it stopped reading ({session.out.limit} bytes queued)")
                    break

    # -- the engine's log -----------------------------------------------------------------------

    def log(self, level: str, message: str) -> None:
        """A line in the engine's event log and its process log."""
        text = clean_line(message, 500)
        self.validator.state.event(level, "control", text)
        logger.log(
            logging.WARNING if level == "warn" else logging.INFO, text, extra={"kind": "control"}
        )


def snapshot_of(state: EngineState) -> StateDelta:
    """What a console gets first, as copies: every unfinished job, the latest
    SNAPSHOT_FINISHED_JOBS finished ones, the latest SNAPSHOT_EVENTS events, every challenge,
    VM and host, the header (only the jobs sent are copied, not the whole history)."""
    latest = state.events[-1].seq if state.events else 0
    snapshot = state.changes_since(state.version, max(0, latest - SNAPSHOT_EVENTS))
    snapshot.full = True
    jobs = recent_jobs(list(state.jobs.values()), SNAPSHOT_FINISHED_JOBS)
    snapshot.jobs = [copy.copy(job) for job in jobs]
    snapshot.challenges = [copy.copy(challenge) for challenge in state.challenges.values()]
    snapshot.vms = [copy.copy(vm) for vm in state.vms.values()]
    snapshot.hosts = list(state.hosts.values())
    return snapshot


def recent_jobs(jobs: list[JobRecord], finished: int) -> list[JobRecord]:
    """Every unfinished job and the `finished` latest finished ones, in their order."""
    done = [job for job in jobs if job.state.finished]
    if len(done) <= finished:
        return jobs
    done.sort(key=lambda job: job.finished_at or job.created_at)
    keep = {job.id for job in done[-finished:]}
    return [job for job in jobs if not job.state.finished or job.id in keep]


def _error(code: str, message: str, fatal: bool = False) -> bytes:
    return frames.encode(frames.ErrorFrame(code=code, message=message, fatal=fatal))


def _bind(path: Path) -> socket.socket:
    """A listening socket at `path`: bound under a temporary name, made 0600, then renamed
    into place (so it is never reachable with a wider mode, and a stale one is replaced)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(os.fsencode(temporary))
        os.chmod(temporary, SOCKET_MODE)
        os.replace(temporary, path)
        sock.listen(64)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    return sock


def _replace_symlink(link: Path, target: Path) -> None:
    temporary = link.with_name(f".{link.name}.{os.getpid()}.link")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    os.symlink(target, temporary)
    os.replace(temporary, link)
