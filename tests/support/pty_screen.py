"""A program in a pseudo-terminal whose output feeds a terminal emulator (pyte), so a test can
read the screen a user would see."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Sequence
from pathlib import Path

import pyte

REPO = Path(__file__).resolve().parents[2]
#: Every attribute of a cell a terminal shows.
Cell = tuple[str, str, str, bool, bool, bool, bool, bool]


class PtyScreen:
    """`argv` in a pty of `cols`x`rows`; `pump` reads what it wrote into the emulated screen."""

    def __init__(self, argv: Sequence[str], *, cols: int, rows: int) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        env = os.environ | {"TERM": "xterm-256color", "COLORTERM": "truecolor", "TZ": "UTC"}
        env.pop("NO_COLOR", None)
        self.process = subprocess.Popen(
            list(argv),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=REPO,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        self._fd = master
        self.screen = pyte.Screen(cols, rows)
        self._stream = pyte.ByteStream(self.screen)
        self.received = 0

    def pump(self, seconds: float) -> int:
        """Read output for `seconds`; the number of bytes read."""
        deadline = time.monotonic() + seconds
        read = 0
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self._fd], [], [], left)
            if not ready:
                continue
            try:
                data = os.read(self._fd, 1 << 16)
            except OSError:
                break
            if not data:
                break
            self._stream.feed(data)
            read += len(data)
        self.received += read
        return read

    def settle(self, quiet_s: float = 1.5, timeout: float = 60.0) -> None:
        """Read until nothing arrives for `quiet_s` seconds."""
        deadline = time.monotonic() + timeout
        while self.pump(quiet_s):
            if time.monotonic() > deadline:
                raise AssertionError("the program never stopped writing")

    def send(self, data: bytes) -> None:
        os.write(self._fd, data)

    def cells(self) -> list[list[Cell]]:
        """Every cell of the emulated screen with its attributes."""
        return [
            [
                (c.data, c.fg, c.bg, c.bold, c.italics, c.underscore, c.reverse, c.strikethrough)
                for c in (self.screen.buffer[y][x] for x in range(self.screen.columns))
            ]
            for y in range(self.screen.lines)
        ]

    def text(self) -> list[str]:
        return list(self.screen.display)

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        os.close(self._fd)


def python_module(module: str, *args: str) -> list[str]:
    """The command line running `module` with this interpreter."""
    return [sys.executable, "-m", module, *args]
