"""The console's one view of an engine: `EngineClient`.

The console (tui/) talks to the engine only through this interface. It is implemented
in-process, for the console embedded in `run` and `demo`, and over the control socket, for
`attach`; the console does not know which one it has. Everything that crosses it is plain,
serialisable data (the engine's records, `StateDelta`, `Outcome`), so a socket can carry it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from validator_tui.control.engine_info import EngineInfo as EngineInfo
from validator_tui.control.engine_info import EngineMode as EngineMode
from validator_tui.control.frame_commands import READ_ONLY_REFUSAL as READ_ONLY_REFUSAL
from validator_tui.control.frame_commands import ClientCommands
from validator_tui.shared.delta import StateDelta
from validator_tui.shared.records import JobRecord, OutboxRow

#: A VM log stream starts reading from the VMM only once its console has stayed on the VM
#: this long: a console whose selection passes over many VMs (the feed's cursor following a
#: busy job stream) costs the engine no VMM request per VM.
VM_LOG_SETTLE_S = 0.25


class ConsoleExit(StrEnum):
    """What the operator chose when the console closed (the app's return value)."""

    DETACH = "detach"  # close the console, keep the validator running (attach later)
    STOP = "stop"  # the validator is stopping the graceful way; wait for it


class LinkStatus(StrEnum):
    """How the console reaches its engine."""

    CONNECTED = "connected"
    RECONNECTING = "reconnecting"  # attached: the connection dropped, retrying
    GONE = "gone"  # attached: no engine answers at the control socket


@dataclass(frozen=True, slots=True)
class Link:
    """The console's connection to the engine (always connected in-process)."""

    status: LinkStatus = LinkStatus.CONNECTED
    since: float = 0.0
    detail: str = ""
    retry_in: float | None = None


class EngineClient(ClientCommands, Protocol):
    """What a console can see and do. Every command (`ClientCommands`) returns the engine's
    `Outcome` (done, or refused with the reason); a read-only client's commands are refused by
    the engine itself."""

    @property
    def info(self) -> EngineInfo:
        """The engine this client talks to."""
        ...

    @property
    def read_only(self) -> bool:
        """True when every command of this client is refused."""
        ...

    @property
    def embedded(self) -> bool:
        """True when the console runs in the engine's own process (quitting may stop the
        validator); False when attached (quitting only detaches)."""
        ...

    @property
    def link(self) -> Link:
        """The state of the connection to the engine."""
        ...

    async def changes_since(self, version: int, event_seq: int) -> StateDelta:
        """Copies of what changed after `version` (events after `event_seq`); `full` in the
        answer means: replace everything you hold."""
        ...

    async def job(self, job_id: str) -> JobRecord | None:
        """The engine's record of one job, also one the console no longer holds."""
        ...

    async def list_outbox(self, limit: int = 1000) -> list[OutboxRow]:
        """The results outbox without bodies: dead letters first (`last_error` holds the
        platform's words), then unsent results, then the latest answered ones; at most `limit`
        rows. `status`: dead, pending, sent, dropped, not_ours, discarded."""
        ...

    def vm_logs(self, vm_id: str, *, lines: int = 200, follow: bool = True) -> AsyncIterator[str]:
        """The VM's serial log lines (raw, untrusted: sanitise before display)."""
        ...
