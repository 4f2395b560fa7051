"""What the commands share: the state dir a command works on, the state dir's lock, the stop
signals."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from validator_tui.control.interface import EngineMode
    from validator_tui.control.lock import StateDirLock


def state_dir_arguments(parser: argparse.ArgumentParser) -> None:
    """`--state-dir` and `--config` for a command that works on a state dir."""
    parser.add_argument(
        "--state-dir",
        metavar="PATH",
        help="the engine's state dir (default: $VALIDATOR_TUI_STATE_DIR, else the config's)",
    )
    parser.add_argument("--config", metavar="PATH", help="config file (default: lookup order)")


def state_dir_of(args: argparse.Namespace, command: str) -> Path | None:
    """The state dir a command works on: `--state-dir`, else `$VALIDATOR_TUI_STATE_DIR`, else
    the config's (the only case that reads a config); None after saying on stderr why the
    config cannot be used."""
    from pathlib import Path

    from validator_tui.config import ConfigError, load_config

    named = args.state_dir or os.environ.get("VALIDATOR_TUI_STATE_DIR")
    if named:
        return Path(named).expanduser()
    try:
        return load_config(args.config).state_path
    except ConfigError as exc:
        print(
            f"{command}: config error:\n{exc}\n(or name the engine's state dir: --state-dir PATH)",
            file=sys.stderr,
        )
        return None


def lock_state_dir(state_dir: Path, mode: EngineMode, hotkey: str) -> StateDirLock | None:
    """The state dir's lock, or None after saying on stderr who holds it (or what is wrong)."""
    from validator_tui.control.lock import StateDirLock, StateDirLocked
    from validator_tui.control.paths import ControlPathError

    try:
        return StateDirLock.acquire(state_dir, mode=mode, hotkey=hotkey)
    except StateDirLocked as exc:
        print(f"validator-tui: {exc}", file=sys.stderr)
    except (ControlPathError, OSError) as exc:
        print(f"validator-tui: cannot use state dir {state_dir}: {exc}", file=sys.stderr)
    return None


def stop_on_signals() -> asyncio.Event:
    """An event SIGINT or SIGTERM sets (handlers on the running loop)."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stopping.set)
    return stopping
