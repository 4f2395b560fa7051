"""Log output: plain text or one JSON object per line, always sanitised; to stderr (headless,
for journald) or to a size-bounded rotating file in the state dir (the console's engine, and
any engine whose terminal went away)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from logging.handlers import RotatingFileHandler
from pathlib import Path

from validator_tui.sanitize import clean_line

_EXTRA_FIELDS = ("kind", "job_id", "challenge_id", "vm_id")
#: The log file is rotated at this size, with this many old files kept (40 MB at most).
LOG_FILE_BYTES = 10 * 1024 * 1024
LOG_FILE_BACKUPS = 3


class TextFormatter(logging.Formatter):
    """`2026-01-01T00:00:00Z INFO  kind message job=… vm=…`"""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        parts = [stamp, f"{record.levelname:<5}"]
        kind = getattr(record, "kind", None)
        if kind:
            parts.append(str(kind))
        parts.append(clean_line(record.getMessage()))
        for name in ("job_id", "challenge_id", "vm_id"):
            value = getattr(record, name, None)
            if value:
                parts.append(f"{name.removesuffix('_id')}={clean_line(str(value), 100)}")
        if record.exc_info:
            parts.append(clean_line(self.formatException(record.exc_info), 4000))
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg and the engine's ids."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": clean_line(record.getMessage()),
        }
        for name in _EXTRA_FIELDS:
            value = getattr(record, name, None)
            if value:
                data[name] = clean_line(str(value), 200)
        if record.exc_info:
            data["exc"] = clean_line(self.formatException(record.exc_info), 4000)
        return json.dumps(data, ensure_ascii=True)


def setup_logging(fmt: str = "text", level: int = logging.INFO) -> None:
    """Send every `validator_tui` log line to stderr in `fmt` (text or json)."""
    _install(logging.StreamHandler(sys.stderr), fmt, level)


def setup_file_logging(path: Path, fmt: str = "text", level: int = logging.INFO) -> None:
    """Send every log line to `path` instead, rotated at LOG_FILE_BYTES, LOG_FILE_BACKUPS old
    files kept."""
    handler = RotatingFileHandler(
        path, maxBytes=LOG_FILE_BYTES, backupCount=LOG_FILE_BACKUPS, encoding="utf-8"
    )
    _install(handler, fmt, level)


def _install(handler: logging.Handler, fmt: str, level: int) -> None:
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in root.handlers:
        old.close()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("uvicorn").setLevel(logging.WARNING)


@dataclass(slots=True)
class _Repeats:
    started: float
    message: str
    count: int = 0
    timer: asyncio.TimerHandle | None = None


class RepeatLimiter:
    """Says each kind of repeating line (a key) at most once per `window_s`: the first time as
    given, then once at the end of each window in which it repeated, with how many times:
    `<latest message> (29,812 more in the last minute)`.

    At most `max_keys` kinds are told apart (the rest share one key), so a flood of distinct
    keys costs bounded memory and lines. The end-of-window line is scheduled on the running
    event loop; without one it comes with the next occurrence.
    """

    OTHERS = "<others>"

    def __init__(
        self,
        emit: Callable[[str], None],
        window_s: float = 60.0,
        max_keys: int = 64,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._emit = emit
        self.window_s = window_s
        self.max_keys = max_keys
        self._clock = clock
        self._repeats: dict[Hashable, _Repeats] = {}

    def say(self, key: Hashable, message: str) -> None:
        """Emit `message` now, unless a line of `key` was emitted within the window (then it
        is counted, and summed up at the window's end)."""
        now = self._clock()
        key = self._slot(key, now)
        repeats = self._repeats.get(key)
        if repeats is not None and now - repeats.started < self.window_s:
            repeats.count += 1
            repeats.message = message
            if repeats.timer is None:
                repeats.timer = _call_later(
                    repeats.started + self.window_s - now, self._window_ended, key
                )
            return
        if repeats is not None:
            self._sum_up(repeats)
        self._repeats[key] = _Repeats(now, message)
        self._emit(message)

    def _slot(self, key: Hashable, now: float) -> Hashable:
        """`key`, or the shared key when `max_keys` others are already being counted."""
        if key in self._repeats or len(self._repeats) < self.max_keys:
            return key
        self._repeats = {
            k: r for k, r in self._repeats.items() if r.count or now - r.started < self.window_s
        }
        return key if len(self._repeats) < self.max_keys else self.OTHERS

    def _window_ended(self, key: Hashable) -> None:
        """Sum up the window of `key`; a new window starts (a key that repeats keeps getting
        one line per window)."""
        repeats = self._repeats.get(key)
        if repeats is None:
            return
        repeats.timer = None
        if repeats.count:
            self._sum_up(repeats)
            repeats.started = self._clock()
        else:
            del self._repeats[key]

    def _sum_up(self, repeats: _Repeats) -> None:
        if repeats.timer is not None:
            repeats.timer.cancel()
            repeats.timer = None
        if repeats.count:
            window = "minute" if self.window_s == 60 else f"{self.window_s:g} s"
            self._emit(f"{repeats.message} ({repeats.count:,} more in the last {window})")
            repeats.count = 0


def _call_later(
    delay: float, callback: Callable[[Hashable], None], key: Hashable
) -> asyncio.TimerHandle | None:
    """Schedule `callback(key)` on the running loop (None when no loop runs)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    return loop.call_later(max(0.0, delay), callback, key)


class Once:
    """Remembers the latest `capacity` keys it was shown: `first(key)` is True for a key it
    does not remember (so something reported on every poll is reported once, in bounded
    memory)."""

    def __init__(self, capacity: int = 1024) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[Hashable, None] = OrderedDict()

    def first(self, key: Hashable) -> bool:
        """True the first time `key` is shown (or after it was forgotten)."""
        if key in self._seen:
            self._seen.move_to_end(key)
            return False
        self._seen[key] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return True
