"""The challenge CVM table: one row per active challenge and its long-lived CVM."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.text import Text

from validator_tui.control import ChallengeRecord, ChallengeState
from validator_tui.sanitize import clean_line
from validator_tui.tui.format import CHALLENGE_MARKERS, age, boot_stage, short_id
from validator_tui.tui.widgets.line_table import Cell, Column, LineTable

COLUMNS = (
    Column("challenge", "Challenge", 14, grow=1, max_width=32),
    Column("state", "State", 14),
    Column("vm_status", "VM status", 9),
    Column("boot", "Boot", 9, drop=4),
    Column("uptime", "Uptime", 6, drop=5),
    Column("jobs", "Jobs", 4, drop=6),
    Column("vm", "VM", 8, drop=7),
    #: Hidden while the engine has one host (see `LineTable.set_hidden`).
    Column("host", "Host", 6, max_width=12, drop=3),
    Column("commit", "Commit", 8, drop=8),
    Column("hash", "Hash", 8, drop=9),
)
TICKING = frozenset({"uptime"})

_STATE_ORDER = {state: index for index, state in enumerate(ChallengeState)}


class ChallengeTable(LineTable[ChallengeRecord]):
    """Every challenge the engine runs a CVM for, sorted by name."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(COLUMNS, sort_key="challenge", id=id)
        self.hidden = frozenset({"host"})

    def on_mount(self) -> None:
        self.set_title(Text("Challenge CVMs"))

    @property
    def challenges(self) -> dict[str, ChallengeRecord]:
        """The challenges shown, by id."""
        return self.records

    @property
    def selected_challenge(self) -> ChallengeRecord | None:
        """The challenge under the cursor, if any."""
        key = self.selected_key
        return None if key is None else self.records.get(key)

    def names(self) -> dict[str, str]:
        """Display name of every challenge by id."""
        return {cid: challenge.name or cid for cid, challenge in self.records.items()}

    def apply(self, changed: Iterable[ChallengeRecord], removed: Iterable[str], now: float) -> None:
        """Update the rows of changed challenges and drop removed ones."""
        self.now = now
        for challenge_id in removed:
            self.discard(challenge_id)
        for challenge in changed:
            self.put(challenge.id, challenge)
        self.commit()
        self.set_title(Text(f"Challenge CVMs ({len(self.records)})"))

    def cells(self, record: ChallengeRecord) -> Sequence[Cell]:
        challenge = record
        name = challenge.name or challenge.id
        marker, style = CHALLENGE_MARKERS[challenge.state]
        uptime = self._uptime(challenge)
        return (
            Cell(clean_line(name, 200)),
            Cell(f"{marker} {challenge.state.value}", style),
            Cell(clean_line(challenge.vm_status, 40) or "-"),
            Cell(boot_stage(challenge.boot_progress)),
            Cell("-" if uptime is None else age(uptime)),
            Cell(str(challenge.jobs_running)),
            Cell(short_id(challenge.vm_id)),
            Cell(clean_line(challenge.host, 32) or "-"),
            Cell(short_id(challenge.github_commit)),
            Cell(short_id(challenge.compose_hash)),
        )

    def sort_value(self, record: ChallengeRecord, column: str) -> object:
        challenge = record
        if column == "challenge":
            return (challenge.name or challenge.id).casefold()
        if column == "state":
            return _STATE_ORDER[challenge.state]
        if column == "vm_status":
            return challenge.vm_status
        if column == "boot":
            return challenge.boot_progress
        if column == "uptime":
            return self._uptime(challenge) or 0.0
        if column == "jobs":
            return challenge.jobs_running
        if column == "vm":
            return challenge.vm_id or ""
        if column == "host":
            return challenge.host
        if column == "commit":
            return challenge.github_commit
        return challenge.compose_hash

    def ticking(self, record: ChallengeRecord) -> bool:
        return record.active_since is not None

    def ticking_columns(self) -> frozenset[str]:
        return TICKING

    def _uptime(self, challenge: ChallengeRecord) -> float | None:
        if challenge.active_since is None:
            return None
        return max(0.0, self.now - challenge.active_since)
