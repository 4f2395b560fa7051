"""The engine's event log: one entry per event, coloured by level, bounded, wrapped at word
boundaries to the panel's width (an id is never split across lines), drawn with the Line API:
a new event repaints the log's lines, nothing else."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import ClassVar

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widget import Widget

from validator_tui.control import Event
from validator_tui.sanitize import clean_line
from validator_tui.tui.format import fit, short_id, wall_time
from validator_tui.tui.widgets.cached_style import CachedStyle
from validator_tui.tui.widgets.titles import QuietTitles

_LEVEL_STYLES = {"error": "bold red", "warn": "yellow", "info": ""}
_LEVEL_MARKS = {"error": "✗", "warn": "!", "info": "·"}
#: Continuation lines of a wrapped event start this far in.
INDENT = 2

#: A word of an event line and its style; a word is never split across lines.
Token = tuple[str, str]


def event_tokens(event: Event, now: float) -> list[Token]:
    """`12:03:04 ✗ job job 1a2b3c4d message…` as words: nothing is parsed as markup, and the
    job id stays with its label."""
    style = _LEVEL_STYLES.get(event.level, "")
    tokens: list[Token] = [
        (wall_time(event.at, now), "dim"),
        (_LEVEL_MARKS.get(event.level, "·"), style),
        (clean_line(event.kind, 20), "dim"),
    ]
    if event.job_id:
        tokens.append((f"job {short_id(event.job_id)}", "dim"))
    tokens.extend((word, style) for word in clean_line(event.message, 500).split())
    return tokens


def wrap_tokens(tokens: list[Token], width: int) -> list[list[Token]]:
    """Greedy word wrap into lines of at most `width` cells; continuation lines indented by
    `INDENT`; a word longer than a line is cut with `…` rather than split."""
    lines: list[list[Token]] = []
    line: list[Token] = []
    used = 0
    for text, style in tokens:
        size = cell_len(text)
        if line and used + 1 + size > width:
            lines.append(line)
            line, used = [(" " * (INDENT - 1), "")], INDENT - 1
        if line:
            line.append((" ", ""))
            used += 1
        room = max(1, width - used)
        if size > room:
            text, size = fit(text, room), room
        line.append((text, style))
        used += size
    if line:
        lines.append(line)
    return lines


class EventLog(ScrollView, QuietTitles, CachedStyle, can_focus=True):
    """Appends engine events (and the console's own notes) as they arrive; follows the newest
    unless the operator scrolled up, and then counts in its title the entries that arrived
    meanwhile (`3 new`). `set_search` shows only the entries that contain a text."""

    DEFAULT_CSS = """
    EventLog {
        background: $surface;
        overflow-x: hidden;
        overflow-y: auto;
        scrollbar-gutter: stable;
        scrollbar-size-vertical: 1;
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "scroll_up", "Up", show=False),
        Binding("down", "scroll_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "scroll_home", "First", show=False),
        Binding("end", "scroll_end", "Last", show=False),
    ]

    def __init__(self, *, max_lines: int = 500, id: str | None = None) -> None:
        super().__init__(id=id)
        self.max_lines = max_lines
        self._entries: deque[list[Token]] = deque(maxlen=max_lines)
        self._lines: deque[Strip] = deque()
        self._line_counts: deque[int] = deque()
        self._width = 0
        self._styles: dict[str, Style] = {}
        #: Only entries containing this text (casefolded) are shown; "" shows every entry.
        self.search = ""
        #: Entries shown that arrived while the view was scrolled up from the newest.
        self.unseen = 0
        #: The view stays on the newest entry (the operator has not scrolled up); kept while
        #: the log is hidden (no height: every offset would count as scrolled up).
        self._following = True

    def on_mount(self) -> None:
        self._show_title()

    def _show_title(self) -> None:
        """`Events`, then the search in force and the entries not seen yet."""
        title = "Events"
        if self.search:
            title += f" · /{clean_line(self.search, 40)}"
        if self.unseen:
            title += f" · {self.unseen} new ↓"
        self.set_title(title)

    def set_search(self, text: str) -> None:
        """Show only the entries whose text contains `text` (any case); "" shows all."""
        search = text.strip()
        if search == self.search:
            return
        self.search = search
        self.unseen = 0
        self._rewrap()
        self._set_height(follow=True)
        self._show_title()
        self.refresh()

    def _matches(self, tokens: list[Token]) -> bool:
        if not self.search:
            return True
        needle = self.search.casefold()
        return needle in " ".join(text for text, _ in tokens).casefold()

    @property
    def lines(self) -> list[str]:
        """The log as shown: one string per line."""
        return [strip.text for strip in self._lines]

    def add_events(self, events: Iterable[Event], now: float) -> None:
        """Append one entry per event, oldest first."""
        entries = [event_tokens(event, now) for event in events]
        if entries:
            self._append(entries)

    def note(self, level: str, message: str, now: float) -> None:
        """Append a line from the console itself (e.g. an engine crash)."""
        self.add_events([Event(0, now, level, "console", message)], now)

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()
        self._lines.clear()
        self._line_counts.clear()
        self.unseen = 0
        self._show_title()
        self._set_height(follow=False)
        self.refresh()

    # -- drawing ------------------------------------------------------------------------------

    def _append(self, entries: list[list[Token]]) -> None:
        following = self._following
        shown = 0
        for tokens in entries:
            if len(self._entries) == self.max_lines:
                self._entries.popleft()
                for _ in range(self._line_counts.popleft() if self._line_counts else 0):
                    self._lines.popleft()
            self._entries.append(tokens)
            if self._width:
                wrapped = self._wrap(tokens) if self._matches(tokens) else []
                self._lines.extend(wrapped)
                self._line_counts.append(len(wrapped))
                shown += bool(wrapped)
        self._set_height(follow=following)
        if not following and shown:
            self.unseen += shown
            self._show_title()
        self.refresh()

    def _wrap(self, tokens: list[Token]) -> list[Strip]:
        base = self.base_style
        strips = []
        for line in wrap_tokens(tokens, self._width):
            segments = [Segment(text, base + self._style(style)) for text, style in line]
            strips.append(Strip(segments).adjust_cell_length(self._width, base))
        return strips

    def _style(self, spec: str) -> Style:
        style = self._styles.get(spec)
        if style is None:
            style = self._styles[spec] = Style.parse(spec) if spec else Style()
        return style

    def _rewrap(self) -> None:
        self._lines.clear()
        self._line_counts.clear()
        for tokens in self._entries:
            wrapped = self._wrap(tokens) if self._matches(tokens) else []
            self._lines.extend(wrapped)
            self._line_counts.append(len(wrapped))

    def _set_height(self, *, follow: bool) -> None:
        size = Size(self._width, len(self._lines))
        if size != self.virtual_size and self.is_mounted:
            self.set_reactive(Widget.virtual_size, size)
            self._scroll_update(size)
        if follow:
            self.scroll_to(y=self.max_scroll_y, animate=False)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        """Back at the newest entry: nothing is unseen any more."""
        super().watch_scroll_y(old_value, new_value)
        if not self.scrollable_content_region.height:
            return
        self._following = new_value >= self.max_scroll_y
        if self.unseen and self._following:
            self.unseen = 0
            self._show_title()

    def on_resize(self, event: events.Resize) -> None:
        width = self.scrollable_content_region.width
        if width != self._width:
            self._width = width
            self._rewrap()
            self._set_height(follow=self._following)
            self.refresh()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        if self._width:
            self._rewrap()

    def render_line(self, y: int) -> Strip:
        index = round(self.scroll_y) + y
        if 0 <= index < len(self._lines):
            return self._lines[index]
        return self.blank_line(self.scrollable_content_region.width)
