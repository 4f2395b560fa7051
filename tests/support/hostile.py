"""Hostile text from every untrusted source, and checks that output stays inert."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
from collections.abc import Iterator

from validator_tui.logs import JsonFormatter, TextFormatter
from validator_tui.sanitize import MAX_LINE_CHARS

HOSTILE = (
    "\x1b]0;pwned-title\x07"  # OSC 0: window title
    "\x1b]52;c;cm0gLXJmIH4=\x07"  # OSC 52: clipboard write
    "\x1b]8;;https://evil.example\x1b\\link\x1b]8;;\x1b\\"  # OSC 8 hyperlink
    "\x1b[2J\x1b[H\x1b[1A\x1b[2K"  # erase screen, cursor home/up, erase line
    "\x1b[31;1mred\x1b[0m"  # colours
    "\x9b2J\x9d0;c1-title\x9c"  # 8-bit CSI / OSC
    "[link=https://evil.example]click[/link][/][bold]"  # Rich markup
    "\x00nul\x07bel\x08bs\r\n\x7f"  # NUL and other controls
)
UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\ud800-\udfff]")
MEGABYTE = "A" * (1 << 20)


def inert(text: str, limit: int = MAX_LINE_CHARS) -> bool:
    """No control character (so no escape sequence) or surrogate, at most `limit` chars.

    (Text shown as a Python repr, e.g. `'\\x1b]0;…'`, is inert: backslashes are printable.)"""
    return not UNSAFE.search(text) and len(text) <= limit


@contextlib.contextmanager
def captured_logs() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """Everything `validator_tui` logs, through the headless text and JSON formatters."""
    text, jsonl = io.StringIO(), io.StringIO()
    handlers = []
    for stream, formatter in ((text, TextFormatter()), (jsonl, JsonFormatter())):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter)
        handlers.append(handler)
    logger = logging.getLogger("validator_tui")
    level = logger.level
    logger.setLevel(logging.INFO)
    for handler in handlers:
        logger.addHandler(handler)
    try:
        yield text, jsonl
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
        logger.setLevel(level)


def check_log_output(text: io.StringIO, jsonl: io.StringIO) -> None:
    lines = text.getvalue().splitlines()
    assert lines, "nothing was logged"
    for line in lines:
        assert inert(line, 8000), line[:200]
    for line in jsonl.getvalue().splitlines():
        assert "\\u001b" not in line.lower() and "\\u009b" not in line.lower()
        record = json.loads(line)
        assert all(inert(str(value), 8000) for value in record.values()), line[:200]
