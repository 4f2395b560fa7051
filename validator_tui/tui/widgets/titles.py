"""Border titles that repaint only the border line they are on."""

from __future__ import annotations

from typing import Self

from rich.text import Text
from textual.geometry import Region
from textual.widget import Widget


class QuietTitles(Widget):
    """A widget whose `set_title`/`set_subtitle` repaint only their border line, and only when
    the text changed (Textual's `border_title` setter repaints the whole widget every time)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self._border_line: int | None = None
        self._titles: dict[bool, str] = {}
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def set_title(self, title: str | Text) -> None:
        """Show `title` in the top border."""
        self._set_label(title, top=True)

    def set_subtitle(self, subtitle: str | Text) -> None:
        """Show `subtitle` in the bottom border."""
        self._set_label(subtitle, top=False)

    def _set_label(self, label: str | Text, *, top: bool) -> None:
        key = label.markup if isinstance(label, Text) else label
        if self._titles.get(top) == key:
            return
        self._titles[top] = key
        self._border_line = 0 if top else -1
        try:
            if top:
                self.border_title = label
            else:
                self.border_subtitle = label
        finally:
            self._border_line = None

    def refresh(
        self,
        *regions: Region,
        repaint: bool = True,
        layout: bool = False,
        recompose: bool = False,
    ) -> Self:
        """As `Widget.refresh`; while a border label is being set, only its line."""
        if self._border_line is not None and not regions and not layout and not recompose:
            gutter = self.styles.gutter
            width, height = self.outer_size
            y = -gutter.top if self._border_line == 0 else height - 1 - gutter.top
            regions = (Region(-gutter.left, y, width, 1),)
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)
