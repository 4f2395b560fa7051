"""Directives a submission's code can carry to steer the simulated evaluator.

A directive is `#sim:<name>` or `#sim:<name>=<value>` anywhere in the code (the value runs
to the next whitespace). The code is parsed once per /evaluate; unknown names and malformed
values are ignored, and the last occurrence of a name wins.

- `#sim:sleep=<seconds>`  answer that much later (added to the simulator-wide latency).
- `#sim:hang`             never answer; the connection stays open until the client gives up.
- `#sim:score=<text>`     put `<text>` in the response as the score: `nan`, `inf`, `-inf` become
                          the non-standard JSON tokens `NaN`, `Infinity`, `-Infinity`; a number
                          (`1.7`, `-1`) is sent as that number; anything else (`"x"`, `x`) as a
                          JSON string.
- `#sim:status=<code>`    answer with HTTP status `<code>` (100-599) and a JSON error body.
- `#sim:crash`            close the connection without answering.
- `#sim:logs=<n>`         return `n` log lines (default 3, at most 10,000).
- `#sim:ansi`             the log lines carry ANSI colour, cursor and OSC (title, clipboard)
                          escapes, as hostile evaluator output would.
- `#sim:bytes=<n>`        answer a valid 200 body of `n` bytes (at most 1 GB; the padding is one
                          log line), streamed without Content-Length and ended by closing the
                          connection, as an evaluator dumping huge logs would.
- `#sim:trickle=<bytes/s>` answer 200 at once, then send a valid body at that rate (one long
                          log line, an hour's worth, at least 1 byte/s): an answer that is
                          always arriving and never done, as a wedged evaluator's can be.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace

_DIRECTIVE = re.compile(r"#sim:([a-z]+)(?:=(\S*))?")
DEFAULT_LOG_LINES = 3
MAX_LOG_LINES = 10_000
MAX_SLEEP_S = 86_400.0
MAX_ANSWER_BYTES = 1 << 30
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_SPECIAL_SCORES = {
    "nan": "NaN",
    "inf": "Infinity",
    "infinity": "Infinity",
    "-inf": "-Infinity",
    "-infinity": "-Infinity",
}


@dataclass(frozen=True)
class Directives:
    """What the evaluator does for one submission; the defaults mean "behave normally"."""

    sleep_s: float = 0.0
    hang: bool = False
    score_token: str | None = None
    status: int | None = None
    crash: bool = False
    log_lines: int = DEFAULT_LOG_LINES
    ansi: bool = False
    answer_bytes: int | None = None
    trickle_bytes_per_s: int | None = None


def score_token(text: str) -> str:
    """The raw JSON token `#sim:score=<text>` stands for (see the module docstring)."""
    special = _SPECIAL_SCORES.get(text.lower())
    if special is not None:
        return special
    if _JSON_NUMBER.fullmatch(text):
        return text
    return json.dumps(text.strip('"'))


def _float(value: str | None) -> float | None:
    try:
        number = float(value or "")
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def parse_directives(code: str) -> Directives:
    """Read every `#sim:` directive in `code` into one `Directives`."""
    if "#sim:" not in code:
        return Directives()
    result = Directives()
    for match in _DIRECTIVE.finditer(code):
        name, value = match.group(1), match.group(2)
        if name == "sleep" and (seconds := _float(value)) is not None:
            result = replace(result, sleep_s=min(seconds, MAX_SLEEP_S))
        elif name == "hang":
            result = replace(result, hang=True)
        elif name == "crash":
            result = replace(result, crash=True)
        elif name == "ansi":
            result = replace(result, ansi=True)
        elif name == "score" and value:
            result = replace(result, score_token=score_token(value))
        elif name == "status" and (status := _int(value)) is not None and 100 <= status <= 599:
            result = replace(result, status=status)
        elif name == "logs" and (count := _int(value)) is not None:
            result = replace(result, log_lines=min(count, MAX_LOG_LINES))
        elif name == "bytes" and (size := _int(value)) is not None:
            result = replace(result, answer_bytes=min(size, MAX_ANSWER_BYTES))
        elif name == "trickle" and (rate := _int(value)) is not None and rate > 0:
            result = replace(result, trickle_bytes_per_s=min(rate, MAX_ANSWER_BYTES))
    return result
