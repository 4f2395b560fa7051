"""Make untrusted text (VM logs, miner data, server errors) safe for a terminal or a log line.

`clean_line` removes every terminal control sequence (CSI, OSC, DCS, …), C0/C1 control
characters and invalid UTF-8, and bounds the length. Rich markup is neutralised separately
with `rich.markup.escape` at the widget that renders markup; plain-text widgets need nothing
more than `clean_line`.
"""

from __future__ import annotations

import re

MAX_LINE_CHARS = 2000

_ESCAPE_SEQUENCE = re.compile(
    r"""
    \x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?      # OSC … BEL/ST (title, clipboard, hyperlinks)
    | \x1b[PX^_][^\x1b]*(?:\x1b\\)?          # DCS / SOS / PM / APC … ST
    | \x1b\[[0-?]*[ -/]*[@-~]                # CSI (colours, cursor movement, erase)
    | \x1b[ -/]*[0-~]                        # other two-byte escapes
    | \x9b[0-?]*[ -/]*[@-~]                  # 8-bit CSI
    | \x9d[^\x07\x9c]*(?:\x07|\x9c)?         # 8-bit OSC
    """,
    re.VERBOSE,
)
# C0/C1 controls, lone surrogates, and bidi overrides/isolates (they reorder what follows).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")


def to_text(data: str | bytes) -> str:
    """Decode bytes as UTF-8, replacing invalid sequences; pass strings through."""
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


def clean_line(data: str | bytes, limit: int = MAX_LINE_CHARS) -> str:
    """One safe, printable line: no escapes or controls, tabs expanded, at most `limit` chars."""
    text = to_text(data)
    if len(text) > limit * 4:
        text = text[: limit * 4]
    text = _ESCAPE_SEQUENCE.sub("", text)
    text = text.replace("\t", "    ").replace("\r", "").replace("\n", " ")
    text = _CONTROL.sub("", text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def clean_lines(lines: list[str], max_lines: int, limit: int = MAX_LINE_CHARS) -> list[str]:
    """Clean each line and keep the last `max_lines` (saying how many were dropped)."""
    cleaned = [clean_line(line, limit) for line in lines[-max_lines:]]
    dropped = len(lines) - len(cleaned)
    if dropped > 0:
        cleaned.insert(0, f"[{dropped} earlier lines dropped]")
    return cleaned
