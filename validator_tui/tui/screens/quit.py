"""The question `q` asks in the embedded console: stop the validator, detach and keep it
running, or go back. It says how many jobs are running and what each choice does to them."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from validator_tui.control import ConsoleExit


def running_jobs_text(running: int) -> str:
    """`3 jobs are running` / `1 job is running` / `no job is running`."""
    if running == 0:
        return "no job is running"
    return f"{running} job{'s are' if running != 1 else ' is'} running"


def stop_consequences(running: int) -> str:
    """What stopping the validator does, for the number of jobs running now."""
    jobs = (
        "Nothing is running: no job is affected."
        if running == 0
        else f"The {running} running job{'s' if running != 1 else ''} stop: "
        f"{'their VMs are' if running != 1 else 'its VM is'} removed and the platform gets the "
        "error result “validator shutting down”."
    )
    return (
        f"No new jobs are claimed. {jobs} Results not yet sent get a last chance; the rest are "
        "sent at the next start. Challenge CVMs stay up for the next start."
    )


class QuitScreen(ModalScreen[ConsoleExit | None]):
    """Dismisses with STOP, DETACH, or None (back to the console)."""

    BINDINGS = [
        Binding("s", "choose('stop')", "Stop validator"),
        Binding("d", "choose('detach')", "Detach"),
        Binding("escape", "choose('')", "Back"),
        Binding("n", "choose('')", "Back", show=False),
    ]

    def __init__(self, running: int, attach_command: str) -> None:
        super().__init__()
        self.running = running
        self.attach_command = attach_command

    def compose(self) -> ComposeResult:
        with Vertical(id="quit-dialog"):
            yield Static(
                Text(f"Quit the console? {running_jobs_text(self.running).capitalize()}.", "bold"),
                id="quit-question",
            )
            yield Static(
                Text.assemble(
                    ("Stop the validator: ", "bold"),
                    stop_consequences(self.running),
                    "\n\n",
                    ("Detach: ", "bold"),
                    "the validator keeps running without this terminal, jobs go on; "
                    f"`{self.attach_command}` brings the console back.",
                ),
                id="quit-detail",
            )
            with Horizontal(id="quit-buttons"):
                yield Button(Text("Stop validator (s)"), variant="error", id="stop")
                yield Button(Text("Detach (d)"), variant="primary", id="detach")
                yield Button(Text("Back (esc)"), id="back")

    def on_mount(self) -> None:
        self.query_one("#back", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_choose("" if event.button.id == "back" else str(event.button.id))

    def action_choose(self, choice: str) -> None:
        self.dismiss(ConsoleExit(choice) if choice else None)
