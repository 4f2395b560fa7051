"""The prompt `/` opens: it takes the footer's line while it is open (like htop's), so opening
it moves nothing and the feed keeps its size. It filters the job feed, or searches the event
log, as the operator types; the screen shows it while the screen has the class `-filtering`."""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Input, Label


class FilterBar(Horizontal):
    """The filter/search prompt (its input is `#filter`)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        #: Whether the open prompt searches the event log (else it filters the job feed).
        self.searching_events = False

    def compose(self) -> ComposeResult:
        yield Label("Filter jobs:", id="filter-label")
        yield Input(
            placeholder="any column, the whole error · enter keeps it · esc clears it",
            id="filter",
        )

    @property
    def is_open(self) -> bool:
        """Whether the prompt is shown."""
        return self.screen.has_class("-filtering")

    def open(self, *, events: bool, value: str) -> None:
        """Show the prompt with `value` and focus it: it searches the event log (`events`) or
        filters the job feed."""
        self.searching_events = events
        self.query_one(Label).update("Search events:" if events else "Filter jobs:")
        prompt = self.query_one(Input)
        prompt.value = value
        self.screen.add_class("-filtering")
        prompt.focus()

    def clear(self) -> None:
        """Empty the prompt."""
        self.query_one(Input).value = ""

    def close(self) -> None:
        """Give the footer its line back (the filter or search stays in force)."""
        self.screen.remove_class("-filtering")
        self.searching_events = False

    def on_descendant_blur(self, _event: events.DescendantBlur) -> None:
        self.screen.remove_class("-filtering")
