"""The help screen: every key of the console and what it does."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from validator_tui.tui.widgets.job_feed import MAX_FEED_JOBS

KEYS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    (
        "Jobs",
        (
            ("c", "claim the selected pending job"),
            ("x", "cancel the selected job (asks first)"),
            ("enter", "details: record, timeline, result, logs"),
            ("/", "filter the job feed (esc clears)"),
            ("< > !", "sort by previous/next column, reverse"),
        ),
    ),
    (
        "Challenge CVMs",
        (
            ("r", "rebuild the selected challenge's CVM (asks first)"),
            ("s / S", "start / stop the selected VM (stop asks first)"),
            ("D", "remove the selected VM (asks first)"),
        ),
    ),
    (
        "Console",
        (
            ("a", "toggle auto-claim"),
            ("o", "ORM query on a challenge's database"),
            ("f", "VM console: follow / pause"),
            ("w", "VM console: wrap long lines"),
            ("tab", "next panel"),
            ("ctrl+p", "command palette (every action)"),
            ("?", "this help"),
            ("q", "quit (asks first if jobs are running)"),
        ),
    ),
)

FEED_NOTE = (
    f"the feed shows the latest {MAX_FEED_JOBS} jobs; older ones stay in the engine's history"
)


def help_table(read_only: bool) -> Table:
    """The key table; in read-only mode it says that every command is refused."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", justify="right", min_width=8)
    table.add_column()
    for section, keys in KEYS:
        table.add_row("", Text(section, style="bold underline"))
        for key, what in keys:
            table.add_row(Text(key), Text(what))
        if section == "Jobs":
            table.add_row("", Text(FEED_NOTE, style="dim"))
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
