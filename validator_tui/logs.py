"""Log output: plain text or one JSON object per line, always sanitised; to stderr (headless,
for journald) or to a size-bounded rotating file in the state dir (the console's engine, and
any engine whose terminal went away)."""

from __future__ import annotations

import json
import logging
import sys
import time
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
