"""A simulated VM's console logs: bounded line buffers with live followers, and `/logs` streams.

The stream follows dstack's `GET /logs` (spec §5): one chunk per line, `ansi=false` strips
escape codes, `follow` streams new lines until the log closes (VM removed) or the client goes
away, and `[vmm heartbeat]` is sent after `heartbeat_s` of silence.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from itertools import islice

MAX_LOG_LINES = 5000
HEARTBEAT_LINE = "[vmm heartbeat]\n"
CHANNELS = ("serial", "stdout", "stderr")
_ANSI = re.compile(
    r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b\[[0-?]*[ -/]*[@-~]|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"
    r"|\x1b[ -/]*[0-~]"
)


def strip_ansi(text: str) -> str:
    """Remove ANSI/OSC escape sequences (other characters are kept as they are)."""
    return _ANSI.sub("", text) if "\x1b" in text else text


def rfc3339_now() -> str:
    """The current UTC time, RFC 3339 with microseconds."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class VmLog:
    """One channel's lines (the newest `max_lines`) and a wake-up for followers."""

    def __init__(self, max_lines: int = MAX_LOG_LINES) -> None:
        self._lines: deque[str] = deque(maxlen=max_lines)
        self._written = 0
        self._changed = asyncio.Event()
        self.closed = False

    @property
    def written(self) -> int:
        """How many lines were ever written (followers' position counter)."""
        return self._written

    def write(self, line: str) -> None:
        """Append one line (no newline) and wake the followers."""
        self._lines.append(line)
        self._written += 1
        self._wake()

    def close(self) -> None:
        """End every follower's stream."""
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def tail(self, count: int) -> list[str]:
        """The last `count` lines still held."""
        count = min(max(count, 0), len(self._lines))
        return list(islice(self._lines, len(self._lines) - count, None))

    def since(self, position: int) -> list[str]:
        """Lines written after `position` (a past `written` value) that are still held."""
        return self.tail(self._written - position)

    async def wait_change(self, timeout: float) -> bool:
        """Wait until a write or close; False when `timeout` passed first."""
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            return False
        return True


async def stream_log(
    log: VmLog, *, lines: int, follow: bool, ansi: bool, heartbeat_s: float
) -> AsyncIterator[str]:
    """Yield `/logs` chunks: the last `lines` lines, then (with `follow`) new ones as written."""
    position = log.written
    for line in log.tail(lines):
        yield (line if ansi else strip_ansi(line)) + "\n"
    while follow and not log.closed:
        if not await log.wait_change(heartbeat_s):
            yield HEARTBEAT_LINE
            continue
        fresh = log.since(position)
        position = log.written
        for line in fresh:
            yield (line if ansi else strip_ansi(line)) + "\n"
