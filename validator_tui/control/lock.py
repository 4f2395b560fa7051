"""One engine per state directory: an exclusive `flock` on `<state_dir>/lock`.

The lock is held for the engine's whole life and the kernel drops it when the process dies
(SIGKILL included), so there is never a stale lock to clean up. The file holds the holder's
pid, mode, hotkey and start time, for the refusal message of a second engine.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from validator_tui.control.paths import (
    attach_command,
    ensure_private_dir,
    lock_path,
    state_dir_key,
)

#: How long a refused engine waits for the holder to finish writing who it is.
HOLDER_READ_S = 0.5


@dataclass(frozen=True, slots=True)
class LockHolder:
    """Who holds a state directory."""

    pid: int
    mode: str
    hotkey: str
    started_at: float

    def describe(self, now: float | None = None) -> str:
        """`pid 1234, mode headless, up 3h 05m`."""
        up = max(0.0, (time.time() if now is None else now) - self.started_at)
        return f"pid {self.pid}, mode {self.mode}, up {format_uptime(up)}"


def format_uptime(seconds: float) -> str:
    """`42s`, `7m 03s`, `3h 05m`, `2d 04h`."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


class StateDirLocked(RuntimeError):
    """Another engine holds the state directory."""

    def __init__(self, state_dir: Path, holder: LockHolder | None) -> None:
        self.state_dir = state_dir
        self.holder = holder
        who = holder.describe() if holder is not None else "pid unknown"
        super().__init__(
            f"another validator engine is running on state dir {state_dir} ({who}); "
            f"look at it with `{attach_command(state_dir)}`, or stop it before "
            "starting a new one here"
        )


class StateDirLock:
    """The held lock of one state directory (`acquire`, then keep it until the process ends)."""

    def __init__(self, fd: int, path: Path, holder: LockHolder) -> None:
        self._fd: int | None = fd
        self.path = path
        self.holder = holder

    @classmethod
    def acquire(cls, state_dir: Path, *, mode: str, hotkey: str) -> StateDirLock:
        """Take the lock without waiting; raise StateDirLocked naming the holder if taken.

        Creates the state directory (mode 0700) when missing.
        """
        directory = state_dir_key(state_dir)
        ensure_private_dir(directory)
        path = lock_path(directory)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StateDirLocked(directory, read_holder(path)) from None
        except BaseException:
            os.close(fd)
            raise
        holder = LockHolder(os.getpid(), mode, hotkey, time.time())
        data = json.dumps(asdict(holder)).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        return cls(fd, path, holder)

    def release(self) -> None:
        """Give the lock up (the process's exit does the same)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None


def read_holder(path: Path, wait: float = HOLDER_READ_S) -> LockHolder | None:
    """The holder recorded in the lock file (waiting briefly while it is being written)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            data = json.loads(path.read_bytes())
            return LockHolder(
                int(data["pid"]), str(data["mode"]), str(data["hotkey"]), float(data["started_at"])
            )
        except (OSError, ValueError, KeyError, TypeError):
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)
