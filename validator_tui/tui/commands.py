"""The command palette provider: every action of the action table, with its key; an action
that cannot act on the selection right now says why in its help line (and in a toast if run)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.dom import DOMNode

from validator_tui.tui.actions import ACTIONS, Action, Owner
from validator_tui.tui.screens.main import MainScreen
from validator_tui.tui.widgets.line_table import LineTable


def palette_title(action: Action) -> str:
    """`Claim (c)`: the action's title with its key."""
    return f"{action.title} ({action.key_label})"


class ActionsProvider(Provider):
    """Lists the app's actions everywhere, and on the main screen every action of the table."""

    def _target(self, action: Action, main: MainScreen) -> DOMNode:
        if action.owner is Owner.APP:
            return self.app
        if action.owner is Owner.TABLE:
            focused = main.focused
            return focused if isinstance(focused, LineTable) else main.feed
        return main

    def _available(self) -> list[tuple[Action, str, Callable[[], object]]]:
        main = self.screen if isinstance(self.screen, MainScreen) else None
        found: list[tuple[Action, str, Callable[[], object]]] = []
        for action in ACTIONS:
            if main is None and action.owner is not Owner.APP:
                continue
            target = self.app if main is None else self._target(action, main)
            reason = None if main is None else main.why_not(action.name)
            help_text = action.help if reason is None else f"{action.help} · not now: {reason}"
            run = partial(self.app.run_action, action.binding_action, target)
            found.append((action, help_text, run))
        return found

    async def discover(self) -> Hits:
        for action, help_text, run in self._available():
            yield DiscoveryHit(palette_title(action), run, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for action, help_text, run in self._available():
            title = palette_title(action)
            score = matcher.match(f"{title} {action.help}")
            if score > 0:
                yield Hit(score, matcher.highlight(title), run, text=title, help=help_text)
