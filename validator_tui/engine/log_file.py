"""The engine's own log file, `<state_dir>/validator.log`, kept in every mode: operator
commands, CVM events, job failures and every other engine event, one line each with its
absolute UTC time, size-bounded and rotated.

Whoever set up logging may already write that file (`logs.setup_file_logging`: the console's
engine, or a headless engine whose terminal went away); then nothing is added, and a later
`setup_file_logging` replaces the handler added here. Otherwise a rotating handler is added to
the root logger for the engine's lifetime: `validator_tui` lines from INFO, other libraries'
from WARNING.
"""

from __future__ import annotations

import contextlib
import logging
from logging.handlers import RotatingFileHandler
from pathlib import Path

from validator_tui.logs import LOG_FILE_BACKUPS, LOG_FILE_BYTES, TextFormatter

#: The same file `control.paths.log_path` names (the console's engine and a headless engine
#: whose terminal went away log there through `logs.setup_file_logging`).
LOG_NAME = "validator.log"


class _LogFile(RotatingFileHandler):
    """The rotating file; a line that cannot be written (disk full, file gone) is dropped
    quietly: the log file must never disturb the engine or the terminal."""

    def handleError(self, record: logging.LogRecord) -> None:
        return

    def close(self) -> None:
        with contextlib.suppress(OSError):
            super().close()


class _EngineLines(logging.Filter):
    """`validator_tui` lines at INFO and above, anything else at WARNING and above."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "validator_tui" or record.name.startswith("validator_tui."):
            return record.levelno >= logging.INFO
        return record.levelno >= logging.WARNING


def keep_log_file(state_dir: Path) -> logging.Handler | None:
    """Make sure the engine's lines reach `<state_dir>/validator.log`; returns the handler
    added (give it to `release_log_file` at the end), or None when the file is written
    already or cannot be opened."""
    path = (state_dir / LOG_NAME).resolve()
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename) == path:
            return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        added = _LogFile(
            path, maxBytes=LOG_FILE_BYTES, backupCount=LOG_FILE_BACKUPS, encoding="utf-8"
        )
    except OSError:
        return None
    added.setFormatter(TextFormatter())
    added.addFilter(_EngineLines())
    root.addHandler(added)
    engine = logging.getLogger("validator_tui")
    if engine.level == logging.NOTSET or engine.level > logging.INFO:
        engine.setLevel(logging.INFO)
    return added


def release_log_file(handler: logging.Handler | None) -> None:
    """Detach and close a handler `keep_log_file` added."""
    if handler is not None:
        logging.getLogger().removeHandler(handler)
        handler.close()
