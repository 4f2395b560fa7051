"""The engine's event log: one line per event, coloured by level, bounded."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.widgets import RichLog

from validator_tui.control import Event
from validator_tui.sanitize import clean_line
from validator_tui.tui.format import wall_time

_LEVEL_STYLES = {"error": "bold red", "warn": "yellow", "info": ""}
_LEVEL_MARKS = {"error": "✗", "warn": "!", "info": "·"}


def event_line(event: Event, now: float) -> Text:
    """`12:03:04 ✗ job  message` built as Text: nothing in the message is parsed as markup."""
    style = _LEVEL_STYLES.get(event.level, "")
    line = Text()
    line.append(wall_time(event.at, now), style="dim")
    line.append(f" {_LEVEL_MARKS.get(event.level, '·')} ", style=style)
    line.append(f"{clean_line(event.kind, 20):<9}", style="dim")
    if event.job_id:
        line.append(f"job {clean_line(event.job_id, 8)} ", style="dim")
    line.append(clean_line(event.message, 500), style=style)
    return line


class EventLog(RichLog):
    """Appends engine events (and the console's own notes) as they arrive."""

    def __init__(self, *, max_lines: int = 500, id: str | None = None) -> None:
        super().__init__(
            max_lines=max_lines, min_width=20, wrap=True, markup=False, highlight=False, id=id
        )
        self.border_title = "Events"

    def add_events(self, events: Iterable[Event], now: float) -> None:
        """Append one line per event, oldest first."""
        for event in events:
            self.write(event_line(event, now))

    def note(self, level: str, message: str, now: float) -> None:
        """Append a line from the console itself (e.g. an engine crash)."""
        self.add_events([Event(0, now, level, "console", message)], now)
