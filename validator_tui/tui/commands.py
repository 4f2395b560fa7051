"""The command palette provider: every console action, offered when it can apply."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider


@dataclass(frozen=True, slots=True)
class PaletteAction:
    action: str
    title: str
    help: str


PALETTE_ACTIONS: tuple[PaletteAction, ...] = (
    PaletteAction("claim_job", "Claim selected job (c)", "Claim the pending job under the cursor"),
    PaletteAction("cancel_job", "Cancel selected job (x)", "Abort it; the platform gets an error"),
    PaletteAction("job_details", "Job details (enter)", "Record, timeline, result and logs"),
    PaletteAction("rebuild_challenge", "Rebuild challenge CVM (r)", "Provision a fresh CVM"),
    PaletteAction("start_vm", "Start selected VM (s)", "Start the VM of the selection"),
    PaletteAction("stop_vm", "Stop selected VM (S)", "Stop the VM of the selection"),
    PaletteAction("remove_vm", "Remove selected VM (D)", "Remove the VM of the selection"),
    PaletteAction("toggle_auto_claim", "Toggle auto-claim (a)", "Claim jobs automatically or not"),
    PaletteAction("orm_query", "ORM query (o)", "Read-only SQL on a challenge's database"),
    PaletteAction("filter", "Filter jobs (/)", "Show only jobs containing some text"),
    PaletteAction("clear_filter", "Clear job filter (esc)", "Show every job again"),
    PaletteAction("toggle_follow", "Follow / pause VM console (f)", "Hold or show new log lines"),
    PaletteAction("toggle_wrap", "Wrap VM console (w)", "Wrap long log lines"),
    PaletteAction("help", "Keys (?)", "Every key of the console"),
    PaletteAction("quit", "Quit (q)", "Stop the engine cleanly and exit"),
)


class ActionsProvider(Provider):
    """Lists the actions the app would accept right now (its `check_action` says so)."""

    def _available(self) -> list[PaletteAction]:
        app = self.app
        return [item for item in PALETTE_ACTIONS if app.check_action(item.action, ()) is True]

    async def discover(self) -> Hits:
        for item in self._available():
            yield DiscoveryHit(
                item.title, partial(self.app.run_action, item.action), help=item.help
            )

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for item in self._available():
            score = matcher.match(item.title)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(item.title),
                    partial(self.app.run_action, item.action),
                    text=item.title,
                    help=item.help,
                )
