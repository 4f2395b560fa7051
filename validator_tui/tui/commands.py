"""The command palette provider: every console action of the action table, with its key,
offered when it can apply."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from textual.app import App
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.screen import Screen

from validator_tui.tui.actions import ACTIONS, Action, Owner


def palette_title(action: Action) -> str:
    """`Claim (c)`: the action's title with its key."""
    return f"{action.title} ({action.key_label})"


class ActionsProvider(Provider):
    """Lists the actions the console would accept right now (their `check_action` says so)."""

    def _target(self, action: Action) -> App[object] | Screen[object]:
        return self.app if action.owner is Owner.APP else self.screen

    def _available(self) -> list[tuple[Action, Callable[[], object]]]:
        found: list[tuple[Action, Callable[[], object]]] = []
        for action in ACTIONS:
            if not action.palette:
                continue
            target = self._target(action)
            if target.check_action(action.name, ()) is True:
                found.append((action, partial(target.run_action, action.name)))
        return found

    async def discover(self) -> Hits:
        for action, run in self._available():
            yield DiscoveryHit(palette_title(action), run, help=action.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for action, run in self._available():
            title = palette_title(action)
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), run, text=title, help=action.help)
