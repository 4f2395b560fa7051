"""`EngineHost`: one engine and its control socket, as `run`, `run --headless` and `demo`
serve them. Run it on the loop the engine lives on."""

from __future__ import annotations

import os
import time
from pathlib import Path

from validator_tui.control.desk import CommandDesk
from validator_tui.control.interface import EngineInfo, EngineMode
from validator_tui.control.paths import socket_path, state_dir_key
from validator_tui.control.server import QUEUE_BYTES, STALL_S, ControlServer
from validator_tui.engine.validator import Validator


class EngineHost:
    """A `Validator` serving its consoles on the control socket of its state directory."""

    def __init__(
        self,
        validator: Validator,
        *,
        mode: EngineMode,
        socket: Path | None = None,
        queue_bytes: int = QUEUE_BYTES,
        stall: float = STALL_S,
    ) -> None:
        self.validator = validator
        state_dir = state_dir_key(validator.config.state_path)
        self.info = EngineInfo(
            state_dir=str(state_dir),
            pid=os.getpid(),
            mode=mode,
            hotkey=validator.config.validator_hotkey,
            started_at=time.time(),
        )
        self.desk = CommandDesk(validator)
        self.server = ControlServer(
            validator,
            self.info,
            self.desk,
            path=socket or socket_path(state_dir),
            queue_bytes=queue_bytes,
            stall=stall,
        )

    async def run(self) -> None:
        """Open the control socket, run the engine until it stops, close the socket (every
        console gets a `bye` saying why)."""
        await self.server.start()
        reason, message = "stopped", "the validator stopped"
        try:
            await self.validator.run()
        except Exception as exc:
            reason, message = "crashed", f"the engine stopped on an error: {exc!r}"[:300]
            raise
        finally:
            await self.server.close(reason, message)
