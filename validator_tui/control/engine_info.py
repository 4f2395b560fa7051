"""Which engine a console is looking at: `EngineInfo` (also carried by the engine's hello)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class EngineMode(StrEnum):
    """How the engine process was started."""

    CONSOLE = "console"  # `validator-tui run`: the console embeds the engine
    HEADLESS = "headless"  # `validator-tui run --headless` (systemd)
    DEMO = "demo"  # `validator-tui demo`: simulators + engine (+ console)


@dataclass(frozen=True, slots=True)
class EngineInfo:
    """Which engine a console is looking at."""

    state_dir: str
    pid: int
    mode: EngineMode
    hotkey: str
    started_at: float
