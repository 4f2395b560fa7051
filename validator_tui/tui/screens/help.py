"""The help screen: every key of the console and what it does."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from validator_tui.tui.actions import ACTIONS, BUILTIN_KEYS, Section
from validator_tui.tui.widgets.job_feed import MAX_FEED_JOBS

FEED_NOTE = (
    f"the feed shows the latest {MAX_FEED_JOBS} jobs; older ones stay in the engine's history"
)


def help_table(read_only: bool) -> Table:
    """Every key of the action table by section; in read-only mode it marks what is refused."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", justify="right", min_width=8)
    table.add_column()
    for section in Section:
        table.add_row("", Text(section.value, style="bold underline"))
        for action in ACTIONS:
            if action.section is not section:
                continue
            what = action.help + (" (asks first)" if action.confirm else "")
            refused = read_only and not action.read_only_safe
            table.add_row(Text(action.key_label), Text(what, style="dim strike" if refused else ""))
        if section is Section.JOBS:
            table.add_row("", Text(FEED_NOTE, style="dim"))
        if section is Section.CONSOLE:
            for key, what in BUILTIN_KEYS:
                table.add_row(Text(key), Text(what))
        table.add_row("", "")
    if read_only:
        table.add_row("", Text("read-only mode: every command is refused", style="bold yellow"))
    return table


class HelpScreen(ModalScreen[None]):
    """Lists the keys; any of `esc`, `q`, `?` closes it."""

    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("q", "close", "Close", show=False),
        Binding("question_mark", "close", "Close", show=False),
    ]

    def __init__(self, *, read_only: bool = False) -> None:
        super().__init__()
        self._read_only = read_only

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-dialog") as scroll:
            scroll.border_title = "Keys"
            yield Static(help_table(self._read_only))

    def action_close(self) -> None:
        self.dismiss(None)
