"""`validator-tui run` whose `q` answers "detach" at once, as the quit dialog's detach choice
does (for the test of what the process does with that answer):
`python -m tests.support.detaching_console --config PATH`."""

from __future__ import annotations

import sys

from validator_tui.cli import main
from validator_tui.control.interface import ConsoleExit
from validator_tui.tui.app import ValidatorApp


async def _detach(self: ValidatorApp) -> None:
    self.exit(ConsoleExit.DETACH)


if __name__ == "__main__":
    ValidatorApp.action_quit = _detach  # type: ignore[method-assign]
    sys.exit(main(["run", *sys.argv[1:]]))
