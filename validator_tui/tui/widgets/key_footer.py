"""The key line at the bottom: what the operator can press now, drawn as one line of text.

It shows what Textual's `Footer` shows (the screen's active bindings, dimmed when they do not
apply, the command palette key on the right) but a change of bindings (focus moves, the
selection changes what applies) redraws the characters that changed instead of recomposing a
widget per key, which cost ~20 ms per focus change.
"""

from __future__ import annotations

from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.screen import Screen

from validator_tui.tui.widgets.lines import Lines

PALETTE_SEPARATOR = "▏"


class KeyFooter(Lines):
    """The screen's keys in one line; `compact` drops the padding around each key."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "key-footer--key",
        "key-footer--description",
        "key-footer--separator",
    }
    DEFAULT_CSS = """
    KeyFooter {
        dock: bottom;
        height: 1;
        color: $footer-foreground;
        background: $footer-background;
        & > .key-footer--key {
            color: $footer-key-foreground;
            background: $footer-key-background;
            text-style: bold;
        }
        & > .key-footer--description {
            color: $footer-description-foreground;
            background: $footer-description-background;
        }
        & > .key-footer--separator {
            color: $foreground 20%;
        }
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.compact = False
        self.show_command_palette = True
        #: (first column, last column + 1, key, enabled) of each key shown.
        self._spans: list[tuple[int, int, str, bool]] = []

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self.redraw()

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen: Screen[object]) -> None:
        if screen is self.screen:
            self.redraw()

    def set_mode(self, *, compact: bool, show_command_palette: bool) -> None:
        """Compact spacing (narrow terminals) and whether the palette key shows."""
        if (compact, show_command_palette) != (self.compact, self.show_command_palette):
            self.compact = compact
            self.show_command_palette = show_command_palette
            self.redraw()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        if self.is_mounted:
            self.redraw()

    def redraw(self) -> None:
        """Draw the screen's current keys."""
        if not self.is_mounted:
            return
        key_style = self.get_component_rich_style("key-footer--key")
        text_style = self.get_component_rich_style("key-footer--description")
        line = Text(no_wrap=True, overflow="ellipsis")
        spans: list[tuple[int, int, str, bool]] = []
        seen: set[str] = set()
        active = self.screen.active_bindings
        palette = self.app.COMMAND_PALETTE_BINDING
        for key, (_node, binding, enabled, _tooltip) in active.items():
            if not binding.show or binding.action in seen or key == palette:
                continue
            seen.add(binding.action)
            start = line.cell_len
            self._append_key(line, key_style, text_style, enabled, binding)
            spans.append((start, line.cell_len, key, enabled))
        if self.show_command_palette and self.app.ENABLE_COMMAND_PALETTE and palette in active:
            _node, binding, enabled, _tooltip = active[palette]
            right = Text(no_wrap=True)
            right.append(PALETTE_SEPARATOR, self.get_component_rich_style("key-footer--separator"))
            self._append_key(right, key_style, text_style, enabled, binding, compact=True)
            room = self.size.width - right.cell_len
            if room > line.cell_len:
                line.append(" " * (room - line.cell_len))
            else:
                line.truncate(max(0, room), overflow="ellipsis", pad=True)
            spans.append((line.cell_len, line.cell_len + right.cell_len, palette, enabled))
            line.append_text(right)
        self._spans = spans
        self.show_lines([line])

    def _append_key(
        self,
        line: Text,
        key_style: Style,
        text_style: Style,
        enabled: bool,
        binding: Binding,
        *,
        compact: bool = False,
    ) -> None:
        dim = Style(dim=True) if not enabled else Style()
        shown = self.app.get_key_display(binding)
        if self.compact or compact:
            line.append(shown, key_style + dim)
            line.append(f" {binding.description}", text_style + dim)
            line.append(" ")
        else:
            line.append(f" {shown} ", key_style + dim)
            line.append(f"{binding.description} ", text_style + dim)

    def on_click(self, event: events.Click) -> None:
        """A click on a key presses it (a key that does not apply rings the bell)."""
        for start, end, key, enabled in self._spans:
            if start <= event.x < end:
                if enabled:
                    self.app.simulate_key(key)
                else:
                    self.app.bell()
                return
