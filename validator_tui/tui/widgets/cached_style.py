"""A widget's own style, resolved once per style change."""

from __future__ import annotations

from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget


class CachedStyle(Widget):
    """A line-drawing widget whose base style is resolved once per style change (Textual's
    `rich_style` walks every ancestor's styles on each call: in an idle console, drawing the
    blank lines below a table's last row was the costliest part of the clock's tick)."""

    _base_style: Style | None = None
    _blank_line: Strip | None = None

    @property
    def base_style(self) -> Style:
        """`rich_style`, as of the last style change."""
        if self._base_style is None:
            self._base_style = self.rich_style
        return self._base_style

    def blank_line(self, width: int) -> Strip:
        """An empty line of `width` cells in the base style."""
        blank = self._blank_line
        if blank is None or blank.cell_length != width:
            blank = self._blank_line = Strip.blank(width, self.base_style)
        return blank

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._base_style = None
        self._blank_line = None
