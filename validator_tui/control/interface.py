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

from validator_tui.engine.records import JobRecord, Outcome
from validator_tui.engine.state import StateDelta
from validator_tui.engine.store import OutboxRow

#: A VM log stream starts reading from the VMM only once its console has stayed on the VM
#: this long: a console whose selection passes over many VMs (the feed's cursor following a
#: busy job stream) costs the engine no VMM request per VM.
VM_LOG_SETTLE_S = 0.25


class EngineMode(StrEnum):
    """How the engine process was started."""

    CONSOLE = "console"  # `validator-tui run`: the console embeds the engine
    HEADLESS = "headless"  # `validator-tui run --headless` (systemd)
    DEMO = "demo"  # `validator-tui demo`: simulators + engine (+ console)


@dataclass(frozen=True, slots=True)
class EngineInfo:
    """Which engine a console is looking at."""

    state_dir: str
    pid: int
    mode: EngineMode
    hotkey: str
    started_at: float


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


class EngineClient(Protocol):
    """What a console can see and do. Every command returns the engine's `Outcome` (done, or
    refused with the reason); a read-only client's commands are refused by the engine itself."""

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

    async def claim(self, job_id: str) -> Outcome:
        """Claim a pending job now (whatever the auto-claim setting)."""
        ...

    async def cancel(self, job_id: str) -> Outcome:
        """Abort a claimed or running job: its VM is destroyed, the platform gets the error
        result `cancelled by operator`."""
        ...

    async def rebuild(self, challenge_id: str) -> Outcome:
        """Provision a fresh CVM for the challenge, switch to it, destroy the old one."""
        ...

    async def start_vm(self, vm_id: str) -> Outcome:
        """Start one of the engine's VMs."""
        ...

    async def stop_vm(self, vm_id: str) -> Outcome:
        """Stop one of the engine's VMs."""
        ...

    async def remove_vm(self, vm_id: str) -> Outcome:
        """Remove one of the engine's VMs."""
        ...

    async def set_auto_claim(self, enabled: bool) -> Outcome:
        """Turn auto-claim on or off."""
        ...

    async def drain_host(self, host: str) -> Outcome:
        """Drain a dstack host: no new VMs there, its challenge CVMs move to other hosts (a
        new one active first), its running jobs finish; then it shows `drained`."""
        ...

    async def undrain_host(self, host: str) -> Outcome:
        """Return a drained (or draining) host to the pool."""
        ...

    async def orm_query(self, challenge_id: str, sql: str, params: list[object]) -> Outcome:
        """Run a read-only ORM query on a challenge's database; rows come in the outcome."""
        ...

    async def list_outbox(self, limit: int = 1000) -> list[OutboxRow]:
        """The results outbox without bodies: dead letters first (`last_error` holds the
        platform's words), then unsent results, then the latest answered ones; at most `limit`
        rows. `status`: dead, pending, sent, dropped, not_ours, discarded."""
        ...

    async def retry_dead_letter(self, job_id: str) -> Outcome:
        """Send a result the platform refused (a dead letter) again, now."""
        ...

    async def discard_dead_letter(self, job_id: str) -> Outcome:
        """Give up on a dead letter for good (kept as `discarded`)."""
        ...

    async def stop_validator(self) -> Outcome:
        """Stop the validator the graceful way: no new claims, running jobs get their result,
        the outbox is flushed. Done once the engine has begun stopping."""
        ...

    def vm_logs(self, vm_id: str, *, lines: int = 200, follow: bool = True) -> AsyncIterator[str]:
        """The VM's serial log lines (raw, untrusted: sanitise before display)."""
        ...
