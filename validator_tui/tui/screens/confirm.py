"""A yes/no question over the main screen: `y` confirms, `n` or `esc` declines. The buttons
name what happens and carry their keys ("Stop VM (y)", "Keep it (n · esc)")."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmScreen(ModalScreen[bool]):
    """Dismisses with True only when the operator confirms."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n", "answer(False)", "No"),
        Binding("escape", "answer(False)", "Back"),
    ]

    def __init__(
        self,
        question: str,
        detail: str = "",
        *,
        confirm_label: str = "Yes",
        decline_label: str = "No",
    ) -> None:
        super().__init__()
        self._question = question
        self._detail = detail
        self._confirm_label = confirm_label
        self._decline_label = decline_label

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog"):
            yield Static(Text(self._question, style="bold"), id="confirm-question")
            if self._detail:
                yield Static(Text(self._detail), id="confirm-detail")
            with Horizontal(id="confirm-buttons"):
                yield Button(Text(f"{self._confirm_label} (y)"), variant="error", id="yes")
                yield Button(Text(f"{self._decline_label} (n · esc)"), variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
