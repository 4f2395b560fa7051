"""Record an engine event in the state's event log and the process log, sanitised."""

from __future__ import annotations

import logging
from typing import Unpack

from validator_tui.engine.state import EngineState
from validator_tui.sanitize import clean_line
from validator_tui.shared.records import EventRefs

logger = logging.getLogger("validator_tui.engine")

_LEVELS = {"info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}


def log_event(
    state: EngineState, level: str, kind: str, message: str, **refs: Unpack[EventRefs]
) -> None:
    """Append `message` (sanitised, at most 500 characters) to the event log and log it."""
    text = clean_line(message, 500)
    state.event(level, kind, text, **refs)
    logger.log(_LEVELS.get(level, logging.INFO), text, extra={"kind": kind, **refs})
