"""What the parts of challenge management share: each challenge's runtime (its CVM, the
lifecycle work under way) and the updates of its record they all make."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from validator_tui.engine.compose import ComposeCache, fetch_verified_compose
from validator_tui.engine.context import EngineContext
from validator_tui.engine.hosts import Host
from validator_tui.engine.quota import Allocation
from validator_tui.models.platform import Challenge
from validator_tui.shared.records import (
    ChallengeRecord,
    ChallengeState,
    Resources,
    VmKind,
    VmRecord,
)

#: Quota kind of challenge CVM allocations.
KIND = "challenge"


@dataclass(slots=True)
class ChallengeVm:
    """A challenge CVM this engine owns, with the resources it holds."""

    vm_id: str
    compose_hash: str
    allocation: Allocation


@dataclass(slots=True)
class ChallengeRuntime:
    """One active challenge as the engine runs it: its serving CVM and the work under way."""

    spec: Challenge
    compose: bytes | None = None
    vm: ChallengeVm | None = None
    task: asyncio.Task[None] | None = None
    leaving: bool = False
    failures: int = 0
    retry_after: float = 0.0
    extra_vms: list[ChallengeVm] = field(default_factory=list)
    #: Wants a (new) CVM and waits for the placement to give it room.
    waiting: bool = False
    #: What the current lifecycle work (`task`) provisions a CVM with, if it does.
    target: Allocation | None = None
    #: Why there is no serving CVM (shown to the jobs that wait for one).
    why_none: str = "being provisioned"
    #: The host its CVM is to move off (a drain), until the move is done or undone.
    moving_off: str | None = None


class ChallengeBook:
    """The runtimes of the active challenges, by id, and the record updates made for them."""

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx
        self.runtimes: dict[str, ChallengeRuntime] = {}
        self._cache = ComposeCache(ctx.config.state_path / "compose")
        self._active_listeners: list[Callable[[str], None]] = []

    def on_active(self, listener: Callable[[str], None]) -> None:
        """Call `listener` with a challenge's id each time its CVM becomes active (again)."""
        self._active_listeners.append(listener)

    def activated(self, challenge_id: str) -> None:
        """The challenge's CVM is active (again): tell the listeners."""
        for listener in self._active_listeners:
            listener(challenge_id)

    async def compose(self, spec: Challenge) -> bytes:
        """The challenge's verified compose (cached by hash)."""
        return await fetch_verified_compose(
            self.ctx.platform, self._cache, spec.github_repo, spec.github_commit, spec.compose_hash
        )

    def vm_resources(self) -> Resources:
        """What one challenge CVM takes."""
        return self.ctx.config.challenge_vm.resources

    def on(self, host: Host) -> str:
        """` on host <name>` in a pool of several hosts ("" with one)."""
        return f" on host {host.name}" if self.ctx.hosts.several else ""

    def release(self, allocation: Allocation) -> bool:
        """Give `allocation` back (publishing the quota); True if it was still held."""
        if not self.ctx.hosts.release(allocation):
            return False
        self.ctx.publish_quota()
        return True

    def holding(self, vm_id: str) -> str | None:
        """The challenge whose serving CVM is `vm_id`, if any."""
        for runtime in self.runtimes.values():
            if runtime.vm is not None and runtime.vm.vm_id == vm_id:
                return runtime.spec.id
        return None

    def ensure_record(self, spec: Challenge) -> None:
        """The challenge's record exists and shows `spec`."""
        record = self.ctx.state.challenges.get(spec.id) or ChallengeRecord(spec.id, spec.name)
        record.name = spec.name
        record.github_repo, record.github_commit = spec.github_repo, spec.github_commit
        record.compose_hash = spec.compose_hash
        record.mechanism_id, record.emission_share = spec.mechanism_id, spec.emission_share
        self.ctx.state.put_challenge(record)

    def set(self, challenge_id: str, state: ChallengeState, *, reason: str | None = None) -> None:
        """The challenge enters `state` (its uptime starts when active, ends when stopped)."""
        record = self.ctx.state.challenges.get(challenge_id)
        if record is None:
            return
        record.enter(state, reason)
        if state is ChallengeState.ACTIVE:
            record.active_since = time.time()
        elif state is ChallengeState.STOPPED:
            record.active_since = None
        self.ctx.state.put_challenge(record)

    def record_vm(
        self, runtime: ChallengeRuntime, vm_id: str, port: int | None, status: str, progress: str
    ) -> None:
        """The challenge's record (and the VM list) show its serving CVM `vm_id`."""
        host = runtime.vm.allocation.host if runtime.vm is not None else ""
        record = self.ctx.state.challenges.get(runtime.spec.id)
        if record is not None:
            record.vm_id, record.host_port, record.host = vm_id, port, host
            record.vm_status, record.boot_progress = status, progress
            self.ctx.state.put_challenge(record)
        if vm_id not in self.ctx.state.vms:
            name = self.ctx.naming.challenge_vm(runtime.spec.id)
            self.ctx.state.put_vm(
                VmRecord(vm_id, name, VmKind.CHALLENGE, runtime.spec.id, host_port=port, host=host)
            )
        self.ctx.state.set_vm_status(vm_id, status, progress)


def clear_vm(record: ChallengeRecord) -> None:
    """`record` shows no CVM (nor uptime); the caller puts it."""
    record.vm_id, record.host_port, record.active_since = None, None, None
    record.vm_status, record.boot_progress, record.host = "", "", ""
