"""A widget of a few fixed lines that repaints only the part of a line that changed."""

from __future__ import annotations

from collections.abc import Sequence

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.geometry import Region
from textual.strip import Strip

from validator_tui.tui.widgets.cached_style import CachedStyle

Key = tuple[str, Style | None]


def cell_keys(strip: Strip) -> list[Key]:
    """One (character, style) per cell of `strip` (wide characters: one entry)."""
    keys: list[Key] = []
    for text, style, control in strip:
        if not control:
            keys.extend((char, style) for char in text)
    return keys


def changed_span(old: Strip | None, new: Strip) -> tuple[int, int] | None:
    """The columns [x1, x2) where `new` differs from `old` (all of it when there is no old);
    None when they look the same."""
    if old is None:
        return 0, new.cell_length
    if old == new:
        return None
    a, b = cell_keys(old), cell_keys(new)
    if a == b:
        return None
    start = 0
    limit = min(len(a), len(b))
    while start < limit and a[start] == b[start]:
        start += 1
    end_a, end_b = len(a), len(b)
    while end_a > start and end_b > start and a[end_a - 1] == b[end_b - 1]:
        end_a -= 1
        end_b -= 1
    if not old.text.isascii() or not new.text.isascii():
        return start, max(old.cell_length, new.cell_length)  # wide characters: to the end
    return start, max(end_a, end_b)


class Lines(CachedStyle):
    """Shows the `Text` lines given to `show_lines`, one per row; a new set of lines repaints
    only the columns that changed in each line."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._texts: list[Text] = []
        self._strips: dict[int, Strip] = {}

    @property
    def texts(self) -> list[str]:
        """The lines shown, as plain text."""
        return [text.plain for text in self._texts]

    def show_lines(self, lines: Sequence[Text]) -> None:
        """Show `lines`; repaint what differs from what is shown."""
        lines = list(lines)
        if [_identity(line) for line in lines] == [_identity(line) for line in self._texts]:
            return
        self._texts = lines
        if not self.is_mounted or not self.size.width:
            self.refresh()
            return
        regions = []
        for y in range(max(len(lines), len(self._strips))):
            new = self._strip(y)
            span = changed_span(self._strips.get(y), new)
            if span is not None:
                regions.append(Region(span[0], y, span[1] - span[0], 1))
        if regions:
            self.refresh(*regions)

    def on_resize(self, event: events.Resize) -> None:
        self._strips.clear()
        self.refresh()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()

    def render_line(self, y: int) -> Strip:
        strip = self._strip(y)
        self._strips[y] = strip
        return strip

    def _strip(self, y: int) -> Strip:
        width = self.size.width
        base = self.base_style
        if y >= len(self._texts):
            return self.blank_line(width)
        text = self._texts[y].copy()
        text.truncate(width, overflow="ellipsis")
        segments = [
            Segment(segment.text, base + segment.style if segment.style else base)
            for segment in text.render(self.app.console)
            if segment.text != "\n"
        ]
        return Strip(segments).crop_extend(0, width, base)


def _identity(text: Text) -> tuple[object, ...]:
    """What makes two lines look the same: text, base style, styled spans (cheaper to compare
    than their markup, which is escaped and joined on every call)."""
    return (text.plain, text.style, tuple(text.spans))
