"""ChallengeManager: one long-lived CVM per active challenge, provisioned, rebuilt and destroyed.

States: pending → fetching → provisioning → booting → active, plus updating, failed, destroying.
A rebuild provisions the new CVM first, switches when it is active, then destroys the old one.
A compose whose sha256 differs from the challenge's `compose_hash` never reaches the VMM.

The manager follows the active list and answers for each challenge's lifecycle; its parts do
the rest: `CvmProvisioner` places (capacity in `emission_share` order, the job-VM reserve kept)
and provisions CVMs, `CvmRemoval` removes them, `CvmAdoption` takes over those found at
start-up, `CvmMoves` provisions again elsewhere those a host failure, a drain or a VMM restart
displaces.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import partial

from validator_tui.engine.challenge_book import ChallengeBook, ChallengeRuntime
from validator_tui.engine.context import EngineContext
from validator_tui.engine.cvm_adoption import CvmAdoption
from validator_tui.engine.cvm_moves import CvmMoves
from validator_tui.engine.cvm_provisioning import CvmProvisioner
from validator_tui.engine.cvm_removal import CvmRemoval
from validator_tui.engine.hosts import Host
from validator_tui.engine.vm_ready import FAILED_STATUSES
from validator_tui.models.platform import Challenge, Listing
from validator_tui.models.vmm import VmInfo
from validator_tui.shared.records import ChallengeRecord, ChallengeState

#: States of a challenge whose CVM, once running and booted again, serves jobs again.
_RESUMABLE = frozenset({ChallengeState.STOPPED, ChallengeState.BOOTING})
#: A job waiting for its challenge's CVM to be provisioned again looks this often.
COMPOSE_WAIT_POLL_S = 0.1


class ChallengeManager:
    """Keeps one healthy CVM per active challenge, following the platform's active list."""

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx
        self._book = ChallengeBook(ctx)
        self._runtimes = self._book.runtimes
        self._removal = CvmRemoval(self._book)
        self._provisioner = CvmProvisioner(self._book, self._removal)
        self._adoption = CvmAdoption(self._book, self._removal)
        self._moves = CvmMoves(self._book, self._provisioner, self._removal)
        self._first_sync_done = False

    def on_active(self, listener: Callable[[str], None]) -> None:
        """Call `listener` with a challenge's id each time its CVM becomes active (again)."""
        self._book.on_active(listener)

    # -- queries ---------------------------------------------------------------------------

    def get_challenge_status(self, challenge_id: str) -> ChallengeRecord | None:
        """The challenge's record (state, VM, boot progress, reason), or None if unknown."""
        return self.ctx.state.challenges.get(challenge_id)

    def is_active(self, challenge_id: str) -> bool:
        """True when jobs of this challenge may be claimed: CVM active and running."""
        record = self.ctx.state.challenges.get(challenge_id)
        return (
            record is not None
            and record.state is ChallengeState.ACTIVE
            and record.vm_status == "running"
        )

    def claims_wait(self, challenge_id: str) -> str:
        """Why jobs of this challenge may not be claimed now ("" when they may): its CVM is not
        active, or the host holding it answers again and its VM list was not read since (the
        CVM may be gone with a VMM that restarted)."""
        if not self.is_active(challenge_id):
            return "challenge CVM not active"
        runtime = self._runtimes.get(challenge_id)
        host = self.ctx.hosts.of(runtime.vm.allocation) if runtime and runtime.vm else None
        if host is None or host.settled:
            return ""
        where = f"host {host.name}'s VMM" if self.ctx.hosts.several else "the VMM"
        return f"waiting for the VM list of {where}, which answers again, to be checked"

    def active_ids(self) -> frozenset[str]:
        """The challenges whose jobs may be claimed now (see `claims_wait`)."""
        return frozenset(cid for cid in self.ctx.state.challenges if not self.claims_wait(cid))

    async def compose_when_serving(
        self, challenge_id: str, on_wait: Callable[[str], None]
    ) -> bytes | None:
        """The verified compose of the challenge's serving CVM. While it has none because that
        CVM is being provisioned again (lost with a VMM that restarted, left on a host that is
        down, removed, a failed rebuild retried), wait for it, telling `on_wait` why each time
        that changes; the caller's timeout bounds the wait. None once the challenge leaves the
        active list."""
        told = ""
        while True:
            runtime = self._runtimes.get(challenge_id)
            if runtime is None or runtime.leaving:
                return None
            if runtime.vm is not None and runtime.compose is not None:
                return runtime.compose
            why = f"waiting for challenge CVM {runtime.spec.name} ({runtime.why_none})"
            if why != told:
                told = why
                on_wait(why)
            await asyncio.sleep(COMPOSE_WAIT_POLL_S)

    # -- start-up adoption -----------------------------------------------------------------

    def offer_existing(self, host: Host, vms: list[VmInfo]) -> None:
        """Challenge CVMs found on `host` at start-up; the first sync adopts (one per challenge,
        on whichever host) or removes them."""
        self._adoption.offer_existing(host, vms)

    @property
    def adoption_pending(self) -> bool:
        """Whether CVMs found at start-up still wait for the first sync to adopt or remove
        them (their ports and resources are not held by the quota until then)."""
        return self._adoption.pending

    # -- the active list -------------------------------------------------------------------

    async def sync(self, challenges: Listing[Challenge]) -> None:
        """Follow the platform's active list: provision new, rebuild changed, drain gone. A
        challenge whose entry was skipped as unreadable is not gone: it stays as it was."""
        active = {c.id: c for c in challenges if c.status == "active"}
        for challenge_id, spec in sorted(active.items(), key=lambda item: -item[1].emission_share):
            runtime = self._runtimes.get(challenge_id)
            if runtime is None:
                runtime = ChallengeRuntime(spec)
                self._runtimes[challenge_id] = runtime
                self._book.ensure_record(spec)
                if await self._adoption.adopt(runtime):
                    self._book.activated(challenge_id)
                    continue
                runtime.waiting = True
            elif _changed(runtime.spec, spec):
                runtime.spec = spec
                self._book.ensure_record(spec)
                runtime.waiting = True
            else:
                if runtime.spec.emission_share != spec.emission_share:
                    self._book.ensure_record(spec)
                runtime.spec = spec
                self._retry_if_failed(runtime)
        for challenge_id, runtime in list(self._runtimes.items()):
            unreadable = challenge_id in challenges.skipped_ids
            if challenge_id not in active and not unreadable and not runtime.leaving:
                runtime.leaving = True
                self._provisioner.start(runtime, partial(self._drain_and_destroy, runtime))
        if not self._first_sync_done:
            self._first_sync_done = True
            await self._adoption.remove_leftovers()
        self._provisioner.place_waiting()

    def on_challenge_updated(self, challenge_id: str, github_commit: str) -> bool:
        """A `challenge_updated` message: rebuild if the commit differs. True if it will."""
        runtime = self._runtimes.get(challenge_id)
        if runtime is None or runtime.leaving:
            return False
        return not github_commit or github_commit != runtime.spec.github_commit

    def _retry_if_failed(self, runtime: ChallengeRuntime) -> None:
        record = self.ctx.state.challenges.get(runtime.spec.id)
        idle = runtime.task is None or runtime.task.done()
        due = time.monotonic() >= runtime.retry_after
        if record and record.state is ChallengeState.FAILED and idle and due:
            runtime.waiting = True

    # -- lifecycle requests ------------------------------------------------------------------

    async def provision_challenge(self, challenge_spec: Challenge) -> ChallengeRecord:
        """Provision (or rebuild) the CVM for `challenge_spec` and wait until active or failed."""
        runtime = self._runtimes.get(challenge_spec.id)
        if runtime is None:
            runtime = ChallengeRuntime(challenge_spec)
            self._runtimes[challenge_spec.id] = runtime
        runtime.spec = challenge_spec
        runtime.leaving = False
        self._book.ensure_record(challenge_spec)
        runtime.waiting = True
        self._provisioner.place_waiting()
        await self._provisioner.wait(runtime)
        return self.ctx.state.challenges[challenge_spec.id]

    async def update_challenge(self, challenge_id: str) -> ChallengeRecord | None:
        """Rebuild the challenge's CVM from its current spec; wait until active or failed."""
        runtime = self._runtimes.get(challenge_id)
        if runtime is None or runtime.leaving:
            return None
        runtime.waiting = True
        self._provisioner.place_waiting()
        await self._provisioner.wait(runtime)
        return self.ctx.state.challenges.get(challenge_id)

    def request_rebuild(self, challenge_id: str, spec: Challenge | None = None) -> bool:
        """Start a rebuild without waiting; False if the challenge is unknown or leaving."""
        runtime = self._runtimes.get(challenge_id)
        if runtime is None or runtime.leaving:
            return False
        if spec is not None:
            runtime.spec = spec
            self._book.ensure_record(spec)
        runtime.failures = 0
        runtime.waiting = True
        self._provisioner.place_waiting()
        return True

    async def destroy_challenge(self, challenge_id: str) -> None:
        """Drain the challenge (no new jobs; running ones finish) and destroy its CVM."""
        runtime = self._runtimes.get(challenge_id)
        if runtime is None:
            return
        runtime.leaving = True
        self._provisioner.start(runtime, partial(self._drain_and_destroy, runtime))
        await self._provisioner.wait(runtime)

    async def _drain_and_destroy(self, runtime: ChallengeRuntime) -> None:
        challenge_id = runtime.spec.id
        self._book.set(challenge_id, ChallengeState.DESTROYING, reason="left the active list")
        deadline = time.monotonic() + self.ctx.config.engine.job_timeout_s
        while time.monotonic() < deadline:
            record = self.ctx.state.challenges.get(challenge_id)
            if record is None or record.jobs_running <= 0:
                break
            await asyncio.sleep(0.2)
        if runtime.vm is not None:
            old, runtime.vm, runtime.compose = runtime.vm, None, None
            await self._removal.destroy(old, "challenge left the active list")
        for extra in list(runtime.extra_vms):
            await self._removal.destroy(extra, "challenge left the active list")
        self._runtimes.pop(challenge_id, None)
        self.ctx.state.drop_challenge(challenge_id)
        self.ctx.log(
            "info", "cvm", f"{runtime.spec.name}: drained and destroyed", challenge_id=challenge_id
        )

    # -- capacity and moves ----------------------------------------------------------------

    def capacity_freed(self) -> None:
        """Resources came back (or a host takes VMs again): give them to waiting challenges
        first (emission order)."""
        self._provisioner.capacity_freed()

    def left_behind(self, host: Host) -> list[str]:
        """CVMs left on `host` that are to be removed once it answers."""
        return self._removal.left_behind(host)

    async def remove_left_behind(self, host: Host, listed: set[str]) -> None:
        """`host` answers and lists `listed`: remove the CVMs left there (those it no longer
        lists are forgotten)."""
        await self._removal.remove_left_behind(host, listed)

    def on_host_down(self, host: Host) -> None:
        """`host` is down: its challenge CVMs are provisioned again on another host."""
        self._moves.on_host_down(host)

    def move_off(self, host: Host) -> int:
        """`host` is being drained: its challenge CVMs move; returns how many will."""
        return self._moves.move_off(host)

    def stay_on(self, host: Host) -> int:
        """The drain of `host` is undone: returns how many CVM moves were cancelled."""
        return self._moves.stay_on(host)

    def forget_vm(self, vm_id: str) -> None:
        """The operator removed this CVM: release it and provision a new one now."""
        self._moves.forget_vm(vm_id)

    def on_vm_lost(self, vm_id: str) -> bool:
        """The VMM no longer lists this CVM: provision it again. True if it was one of ours."""
        return self._moves.on_vm_lost(vm_id)

    # -- CVM status --------------------------------------------------------------------------

    def operator_stopped(self, vm_id: str) -> None:
        """The operator stopped this CVM: its challenge is `stopped` (no jobs, uptime ends)
        until the CVM runs again."""
        challenge_id = self._book.holding(vm_id)
        if challenge_id is not None:
            self._book.set(challenge_id, ChallengeState.STOPPED, reason="stopped by operator")

    def operator_started(self, vm_id: str) -> None:
        """The operator started this CVM: its challenge is `booting` until the CVM is ready."""
        challenge_id = self._book.holding(vm_id)
        record = self.ctx.state.challenges.get(challenge_id) if challenge_id else None
        if record is not None and record.state is ChallengeState.STOPPED:
            self._book.set(record.id, ChallengeState.BOOTING, reason="started by operator")

    def _challenge_holding(self, vm_id: str) -> str | None:
        """The challenge whose serving CVM is `vm_id`, if any."""
        for runtime in self._runtimes.values():
            if runtime.vm is not None and runtime.vm.vm_id == vm_id:
                return runtime.spec.id
        return None

    def holds(self, vm_id: str) -> bool:
        """True when `vm_id` is one of the challenge CVMs this manager holds (or is booting);
        a CVM left behind on a host is not held."""
        return any(
            (runtime.vm is not None and runtime.vm.vm_id == vm_id)
            or any(vm.vm_id == vm_id for vm in runtime.extra_vms)
            for runtime in self._runtimes.values()
        )

    def on_vm_info(self, info: VmInfo) -> None:
        """Report on one of our CVMs (reconciler, operator command): keep the record's VM status
        current; a serving CVM found stopped makes its challenge `stopped`, one running and
        booted again makes it `active`."""
        challenge_id = self._book.holding(info.id)
        record = self.ctx.state.challenges.get(challenge_id) if challenge_id else None
        if record is None:
            return
        if record.vm_status == info.status and record.boot_progress == info.boot_progress:
            return
        record.vm_status, record.boot_progress = info.status, info.boot_progress
        if record.state is ChallengeState.ACTIVE and info.status in FAILED_STATUSES:
            self._book.set(record.id, ChallengeState.STOPPED, reason=f"CVM is {info.status}")
        elif record.state in _RESUMABLE and info.is_ready:
            self._book.set(record.id, ChallengeState.ACTIVE, reason="")
        else:
            self.ctx.state.put_challenge(record)
        if self.is_active(record.id):
            self._book.activated(record.id)

    async def shutdown(self, until: float) -> None:
        """Stop provisioning work (waiting until `until`, time.monotonic, at the latest); CVMs
        stay up for the next run to adopt."""
        tasks = [r.task for r in self._runtimes.values() if r.task and not r.task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=max(0.0, until - time.monotonic()))


def _changed(old: Challenge, new: Challenge) -> bool:
    return old.github_commit != new.github_commit or old.compose_hash != new.compose_hash
