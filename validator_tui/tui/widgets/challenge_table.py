"""The challenge CVM table: one keyed row per active challenge and its long-lived CVM."""

from __future__ import annotations

from collections.abc import Iterable

from validator_tui.control import ChallengeRecord, ChallengeState
from validator_tui.sanitize import clean_line
from validator_tui.tui.format import challenge_state_text, duration, short_id
from validator_tui.tui.widgets.keyed_table import Cell, ColumnSpec, KeyedTable

COLUMNS = (
    ColumnSpec("challenge", "Challenge", 14),
    ColumnSpec("state", "State", 12),
    ColumnSpec("vm_status", "VM status", 9),
    ColumnSpec("boot", "Boot", 10),
    ColumnSpec("uptime", "Uptime", 7),
    ColumnSpec("jobs", "Jobs", 4),
    ColumnSpec("vm", "VM", 8),
    ColumnSpec("commit", "Commit", 8),
    ColumnSpec("hash", "Hash", 8),
)

_STATE_ORDER = {state: index for index, state in enumerate(ChallengeState)}


class ChallengeTable(KeyedTable):
    """Every challenge the engine runs a CVM for, sorted by name."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(COLUMNS, sort_key="challenge", id=id)
        self.border_title = "Challenge CVMs"
        self.challenges: dict[str, ChallengeRecord] = {}

    @property
    def selected_challenge(self) -> ChallengeRecord | None:
        """The challenge under the cursor, if any."""
        key = self.selected_key
        return None if key is None else self.challenges.get(key)

    def names(self) -> dict[str, str]:
        """Display name of every challenge by id."""
        return {cid: challenge.name or cid for cid, challenge in self.challenges.items()}

    def apply(self, changed: Iterable[ChallengeRecord], removed: Iterable[str], now: float) -> None:
        """Update the rows of changed challenges and drop removed ones."""
        keep = self.selected_key
        for challenge_id in removed:
            self.challenges.pop(challenge_id, None)
            self.discard(challenge_id)
        for challenge in changed:
            self.challenges[challenge.id] = challenge
            self.upsert(challenge.id, self.cells(challenge, now))
        self.settle(keep)
        self.border_title = f"Challenge CVMs ({len(self.challenges)})"

    def tick(self, now: float) -> None:
        """Refresh the uptime column."""
        keep = self.selected_key
        for challenge in self.challenges.values():
            if challenge.active_since is not None:
                self.upsert(challenge.id, self.cells(challenge, now))
        self.settle(keep)

    def cells(self, challenge: ChallengeRecord, now: float) -> list[Cell]:
        """The row of one challenge, each cell with the value its column sorts by."""
        name = challenge.name or challenge.id
        uptime = None if challenge.active_since is None else max(0.0, now - challenge.active_since)
        return [
            Cell(clean_line(name, 200), name.casefold()),
            Cell(challenge_state_text(challenge.state), _STATE_ORDER[challenge.state]),
            Cell(clean_line(challenge.vm_status, 40) or "-"),
            Cell(clean_line(challenge.boot_progress, 40) or "-"),
            Cell("-" if uptime is None else duration(uptime), uptime or 0.0),
            Cell(str(challenge.jobs_running), challenge.jobs_running),
            Cell(short_id(challenge.vm_id)),
            Cell(short_id(challenge.github_commit)),
            Cell(short_id(challenge.compose_hash)),
        ]
