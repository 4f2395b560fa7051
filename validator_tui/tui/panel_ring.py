"""Which panel has the focus, and the ring `tab` goes through on a screen too narrow for the
right column: there Hosts and Events, focused, take the place of Jobs and Challenge CVMs."""

from __future__ import annotations

from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Log

from validator_tui.tui.selection import CHALLENGES, HOSTS, JOBS
from validator_tui.tui.widgets.host_table import HostTable

EVENTS, CONSOLE = "events", "console"
#: Panels that take the place of Jobs and Challenge CVMs on a screen too narrow for both.
ASIDE = frozenset({HOSTS, EVENTS})


class PanelRing:
    """The panels of `screen` (widgets of class `panel`, found by id) and the focus among
    them."""

    def __init__(self, screen: Screen[None]) -> None:
        self._screen = screen

    def focused(self) -> Widget | None:
        """The panel that holds the focus (None while the filter prompt has it)."""
        focused = self._screen.focused
        if focused is None:
            return None
        panels = (n for n in focused.ancestors_with_self if n.has_class("panel"))
        return next((n for n in panels if isinstance(n, Widget)), None)

    def ring(self) -> list[Widget]:
        """The panels `tab` goes through, in order (Hosts only with several hosts)."""
        screen = self._screen
        hosts = screen.query_one(f"#{HOSTS}", HostTable)
        several = [hosts] if len(hosts.hosts) > 1 else []
        left = [screen.query_one(f"#{name}", Widget) for name in (JOBS, CHALLENGES)]
        right = [screen.query_one(f"#{name}", Widget) for name in (EVENTS, CONSOLE)]
        return [*left, *several, *right]

    def switching(self) -> bool:
        """Whether `tab` moves along the ring: on a narrow screen, nothing zoomed, a panel
        focused."""
        screen = self._screen
        return screen.has_class("-narrow") and screen.maximized is None and bool(self.focused())

    def cycle(self, step: int) -> Widget:
        """Focus the panel `step` places along the ring from the focused one."""
        ring = self.ring()
        current = self.focused()
        index = ring.index(current) if current in ring else 0
        panel = ring[(index + step) % len(ring)]
        self.show_aside(panel)
        target = panel.query_one(Log) if panel.id == CONSOLE else panel
        target.focus()
        return target

    def show_aside(self, panel: Widget) -> None:
        """Hosts or Events focused: they take the left column's place on a narrow screen;
        Jobs or Challenge CVMs focused: they have it back (the VM console changes nothing)."""
        if panel.id in ASIDE:
            self._screen.add_class("-aside")
        elif panel.id in (JOBS, CHALLENGES):
            self._screen.remove_class("-aside")
