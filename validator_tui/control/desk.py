"""`CommandDesk`: every operator command, from whichever console, through one door.

Commands run one at a time, in the order they arrived, on the engine's loop; each is written
to the engine's log and event log with the console it came from and its outcome. A read-only
console's commands (and every command of a read-only engine) are refused here, by the engine,
whatever its UI shows: the one place read-only is enforced.
"""

from __future__ import annotations

import asyncio
import logging

from validator_tui.control import frames
from validator_tui.control.frame_commands import READ_ONLY_REFUSAL
from validator_tui.engine.validator import Validator
from validator_tui.sanitize import clean_line
from validator_tui.shared.records import Outcome

logger = logging.getLogger("validator_tui.operator")


class CommandDesk:
    """Runs operator commands for every console of one engine (use on the engine's loop)."""

    def __init__(self, validator: Validator) -> None:
        self.validator = validator
        self._turn: asyncio.Lock | None = None

    async def run(self, origin: str, command: frames.Command, *, read_only: bool) -> Outcome:
        """Run `command` for the console `origin` after the commands before it; log it."""
        if self._turn is None:
            self._turn = asyncio.Lock()
        what = clean_line(command.describe(), 200)
        if read_only or self.validator.read_only:
            outcome = Outcome.refused(READ_ONLY_REFUSAL)
        else:
            async with self._turn:
                outcome = await command.run(self.validator)
        self._record(origin, what, outcome)
        return outcome

    def _record(self, origin: str, what: str, outcome: Outcome) -> None:
        verdict = "done" if outcome.ok else "refused"
        text = clean_line(f"{origin}: {what} -> {verdict}: {outcome.message}", 500)
        self.validator.state.event("info" if outcome.ok else "warn", "operator", text)
        logger.log(
            logging.INFO if outcome.ok else logging.WARNING, text, extra={"kind": "operator"}
        )
