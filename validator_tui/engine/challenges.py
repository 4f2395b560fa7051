"""ChallengeManager: one long-lived CVM per active challenge, provisioned, rebuilt and destroyed.

States: pending → fetching → provisioning → booting → active, plus updating, failed, destroying.
A rebuild provisions the new CVM first, switches when it is active, then destroys the old one.
A compose whose sha256 differs from the challenge's `compose_hash` never reaches the VMM.

Capacity: challenge CVMs never take the capacity reserved for job VMs (`reserve_job_vms`).
Challenges wanting a CVM wait in a queue placed in order of `emission_share` (highest first)
whenever capacity frees; those that cannot fit make one shortfall warning (header and log, at
most once a minute), never an error per challenge. A CVM the VMM no longer lists (a VMM
restart) is provisioned again at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

from validator_tui.clients.backoff import Backoff
from validator_tui.clients.errors import AnswerLost, ClientError, VmmError, is_transient
from validator_tui.engine.compose import ComposeCache, ComposeError, fetch_verified_compose
from validator_tui.engine.context import EngineContext
from validator_tui.engine.hosts import Host, NoRoom
from validator_tui.engine.quota import Allocation, CapacityError
from validator_tui.engine.records import (
    ChallengeRecord,
    ChallengeState,
    Resources,
    VmKind,
    VmRecord,
)
from validator_tui.engine.store import StoredChallengeVm, StoreError
from validator_tui.engine.vm_ops import find_vms_named, remove_vm, vm_configuration
from validator_tui.engine.vm_ready import FAILED_STATUSES, VmNotReady
from validator_tui.models.platform import Challenge, Listing
from validator_tui.models.vmm import VmConfiguration, VmInfo

#: Quota kind of challenge CVM allocations.
KIND = "challenge"
#: States of a challenge whose CVM, once running and booted again, serves jobs again.
_RESUMABLE = frozenset({ChallengeState.STOPPED, ChallengeState.BOOTING})
#: The capacity-shortfall warning is logged at most this often (the header always shows it).
SHORTFALL_WARNING_EVERY_S = 60.0
#: A job waiting for its challenge's CVM to be provisioned again looks this often.
COMPOSE_WAIT_POLL_S = 0.1


@dataclass(slots=True)
class ChallengeVm:
    """A challenge CVM this engine owns, with the resources it holds."""

    vm_id: str
    compose_hash: str
    allocation: Allocation


@dataclass(slots=True)
class _Runtime:
    spec: Challenge
    compose: bytes | None = None
    vm: ChallengeVm | None = None
    task: asyncio.Task[None] | None = None
    leaving: bool = False
    failures: int = 0
    retry_after: float = 0.0
    extra_vms: list[ChallengeVm] = field(default_factory=list)
    #: Wants a (new) CVM and waits for `_place_waiting` to give it room.
    waiting: bool = False
    #: What the current lifecycle work (`task`) provisions a CVM with, if it does.
    target: Allocation | None = None
    #: Why there is no serving CVM (shown to the jobs that wait for one).
    why_none: str = "being provisioned"
    #: The host its CVM is to move off (a drain), until the move is done or undone.
    moving_off: str | None = None


class ChallengeManager:
    """Keeps one healthy CVM per active challenge, following the platform's active list."""

    def __init__(self, ctx: EngineContext, on_active: Callable[[str], None]) -> None:
        self.ctx = ctx
        self._on_active = on_active
        self._runtimes: dict[str, _Runtime] = {}
        self._cache = ComposeCache(ctx.config.state_path / "compose")
        self._adoptable: dict[str, list[tuple[Host, VmInfo]]] = {}
        #: CVMs left on a host that was down (or refused their removal), by VM id: the host's
        #: name. Their store rows stay until they are removed.
        self._left_behind: dict[str, str] = {}
        self._first_sync_done = False
        self._shortfall_warned_at = float("-inf")

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
        for info in vms:
            challenge_id = self._challenge_of_vm(info)
            self._adoptable.setdefault(challenge_id, []).append((host, info))

    @property
    def adoption_pending(self) -> bool:
        """Whether CVMs found at start-up still wait for the first sync to adopt or remove
        them (their ports and resources are not held by the quota until then)."""
        return bool(self._adoptable)

    def _challenge_of_vm(self, info: VmInfo) -> str:
        for stored in self.ctx.store.challenge_vms():
            if stored.vm_id == info.id:
                return stored.challenge_id
        return self.ctx.naming.challenge_of(info.name)

    async def _adopt(self, runtime: _Runtime) -> bool:
        """Take over a running CVM of ours whose compose matches (on any host, with the port
        and GPU slots it has there); remove the others. One adopted on a draining host is
        moved (a new one elsewhere first)."""
        spec = runtime.spec
        candidates = self._adoptable.pop(spec.id, [])
        adopted = False
        for host, info in candidates:
            port = _host_port(info)
            matches = spec.compose_hash.startswith(info.app_id) and bool(info.app_id)
            room = self._room_for_adoption(host)
            if not adopted and matches and info.status == "running" and port is not None and room:
                try:
                    allocation = host.quota.allocate(
                        self._vm_resources(),
                        owner=f"challenge {spec.id}",
                        port=port,
                        kind=KIND,
                        gpu_slots=_gpu_slots(info),
                    )
                    compose = await self._compose(spec)
                except (CapacityError, ComposeError) as exc:
                    self.ctx.log("warn", "adopt", f"{spec.name}: cannot adopt CVM {info.id}: {exc}")
                else:
                    runtime.vm = ChallengeVm(info.id, spec.compose_hash, allocation)
                    runtime.compose = compose
                    self._record_vm(runtime, info.id, port, info.status, info.boot_progress)
                    self._set(spec.id, ChallengeState.ACTIVE, reason="adopted after restart")
                    self.ctx.log(
                        "info",
                        "adopt",
                        f"{spec.name}: adopted CVM {info.id}{self._on(host)}",
                        challenge_id=spec.id,
                    )
                    adopted = True
                    runtime.waiting = host.draining
                    runtime.moving_off = host.name if host.draining else None
                    continue
            await self._remove_vm_id(host, info.id, f"stale CVM of challenge {spec.id}")
        return adopted

    def _room_for_adoption(self, host: Host) -> bool:
        """Whether one more CVM on `host` leaves room for the reserved job VMs there."""
        config = self.ctx.config
        reserve = config.job_vm.resources.times(config.engine.reserve_job_vms)
        held = host.quota.used_by(KIND)
        return host.quota.fits_beside(held + reserve, self._vm_resources())

    def _on(self, host: Host) -> str:
        """` on host <name>` in a pool of several hosts ("" with one)."""
        return f" on host {host.name}" if self.ctx.hosts.several else ""

    # -- the active list -------------------------------------------------------------------

    async def sync(self, challenges: Listing[Challenge]) -> None:
        """Follow the platform's active list: provision new, rebuild changed, drain gone. A
        challenge whose entry was skipped as unreadable is not gone: it stays as it was."""
        active = {c.id: c for c in challenges if c.status == "active"}
        for challenge_id, spec in sorted(active.items(), key=lambda item: -item[1].emission_share):
            runtime = self._runtimes.get(challenge_id)
            if runtime is None:
                runtime = _Runtime(spec)
                self._runtimes[challenge_id] = runtime
                self._ensure_record(spec)
                if await self._adopt(runtime):
                    self._on_active(challenge_id)
                    continue
                runtime.waiting = True
            elif _changed(runtime.spec, spec):
                runtime.spec = spec
                self._ensure_record(spec)
                runtime.waiting = True
            else:
                if runtime.spec.emission_share != spec.emission_share:
                    self._ensure_record(spec)
                runtime.spec = spec
                self._retry_if_failed(runtime)
        for challenge_id, runtime in list(self._runtimes.items()):
            unreadable = challenge_id in challenges.skipped_ids
            if challenge_id not in active and not unreadable and not runtime.leaving:
                runtime.leaving = True
                self._start(runtime, partial(self._drain_and_destroy, runtime))
        if not self._first_sync_done:
            self._first_sync_done = True
            for leftovers in self._adoptable.values():
                for host, info in leftovers:
                    await self._remove_vm_id(host, info.id, "CVM of a challenge that is not active")
            self._adoptable.clear()
        self._place_waiting()

    def on_challenge_updated(self, challenge_id: str, github_commit: str) -> bool:
        """A `challenge_updated` message: rebuild if the commit differs. True if it will."""
        runtime = self._runtimes.get(challenge_id)
        if runtime is None or runtime.leaving:
            return False
        return not github_commit or github_commit != runtime.spec.github_commit

    def _retry_if_failed(self, runtime: _Runtime) -> None:
        record = self.ctx.state.challenges.get(runtime.spec.id)
        idle = runtime.task is None or runtime.task.done()
        due = time.monotonic() >= runtime.retry_after
        if record and record.state is ChallengeState.FAILED and idle and due:
            runtime.waiting = True

    def _start(
        self,
        runtime: _Runtime,
        work: Callable[[], Awaitable[None]],
        allocation: Allocation | None = None,
    ) -> None:
        """Cancel the challenge's current lifecycle work and run `work` once it has ended.
        `allocation`, taken for `work`, is released if `work` ends (or is cancelled before it
        began) without a CVM of the challenge holding it."""
        previous = runtime.task
        if previous is not None and not previous.done():
            previous.cancel()
        task = asyncio.create_task(self._after(previous, work))
        if allocation is not None:
            task.add_done_callback(lambda _: self._release_unheld(runtime, allocation))
        runtime.task, runtime.target = task, allocation

    def _release_unheld(self, runtime: _Runtime, allocation: Allocation) -> None:
        held = [vm.allocation for vm in (runtime.vm, *runtime.extra_vms) if vm is not None]
        if all(held_one is not allocation for held_one in held) and self.ctx.hosts.release(
            allocation
        ):
            self.ctx.publish_quota()
            self.capacity_freed()

    async def _after(
        self, previous: asyncio.Task[None] | None, work: Callable[[], Awaitable[None]]
    ) -> None:
        if previous is not None and not previous.done():
            await asyncio.wait({previous})
        await work()

    # -- provisioning ------------------------------------------------------------------------

    async def provision_challenge(self, challenge_spec: Challenge) -> ChallengeRecord:
        """Provision (or rebuild) the CVM for `challenge_spec` and wait until active or failed."""
        runtime = self._runtimes.get(challenge_spec.id)
        if runtime is None:
            runtime = _Runtime(challenge_spec)
            self._runtimes[challenge_spec.id] = runtime
        runtime.spec = challenge_spec
        runtime.leaving = False
        self._ensure_record(challenge_spec)
        runtime.waiting = True
        self._place_waiting()
        await self._wait(runtime)
        return self.ctx.state.challenges[challenge_spec.id]

    async def update_challenge(self, challenge_id: str) -> ChallengeRecord | None:
        """Rebuild the challenge's CVM from its current spec; wait until active or failed."""
        runtime = self._runtimes.get(challenge_id)
        if runtime is None or runtime.leaving:
            return None
        runtime.waiting = True
        self._place_waiting()
        await self._wait(runtime)
        return self.ctx.state.challenges.get(challenge_id)

    def request_rebuild(self, challenge_id: str, spec: Challenge | None = None) -> bool:
        """Start a rebuild without waiting; False if the challenge is unknown or leaving."""
        runtime = self._runtimes.get(challenge_id)
        if runtime is None or runtime.leaving:
            return False
        if spec is not None:
            runtime.spec = spec
            self._ensure_record(spec)
        runtime.failures = 0
        runtime.waiting = True
        self._place_waiting()
        return True

    async def destroy_challenge(self, challenge_id: str) -> None:
        """Drain the challenge (no new jobs; running ones finish) and destroy its CVM."""
        runtime = self._runtimes.get(challenge_id)
        if runtime is None:
            return
        runtime.leaving = True
        self._start(runtime, partial(self._drain_and_destroy, runtime))
        await self._wait(runtime)

    async def _wait(self, runtime: _Runtime) -> None:
        while runtime.task is not None and not runtime.task.done():
            await asyncio.wait({runtime.task})

    # -- capacity ----------------------------------------------------------------------------

    def capacity_freed(self) -> None:
        """Resources came back (or a host takes VMs again): give them to waiting challenges
        first (emission order)."""
        if any(runtime.waiting for runtime in self._runtimes.values()):
            self._place_waiting()

    def _place_waiting(self) -> None:
        """Start provisioning for waiting challenges, highest `emission_share` first, each on
        the host with the most free capacity, as long as capacity (with the job-VM reserve)
        allows; report the shortfall."""
        waiting = sorted(
            (r for r in self._runtimes.values() if r.waiting and not r.leaving),
            key=lambda r: -r.spec.emission_share,
        )
        config = self.ctx.config
        short = 0
        for runtime in waiting:
            try:
                allocation = self.ctx.hosts.place_cvm(
                    self._vm_resources(),
                    owner=f"challenge {runtime.spec.id}",
                    job_vm=config.job_vm.resources,
                    reserve_vms=config.engine.reserve_job_vms,
                    replacing=runtime.vm.allocation if runtime.vm is not None else None,
                )
            except NoRoom as exc:
                short += exc.shortfall
                self._set_waiting(runtime, str(exc))
                continue
            runtime.waiting = False
            self.ctx.publish_quota()
            self._start(runtime, partial(self._provision, runtime, allocation), allocation)
        self._report_shortfall(short)

    def _set_waiting(self, runtime: _Runtime, reason: str) -> None:
        record = self.ctx.state.challenges.get(runtime.spec.id)
        if record is None or runtime.vm is not None:
            return
        if record.state is not ChallengeState.PENDING or record.reason != reason:
            self._set(runtime.spec.id, ChallengeState.PENDING, reason=reason)

    def _report_shortfall(self, short: int) -> None:
        """One warning (header + log at most once a minute) for every challenge without room."""
        header = self.ctx.state.header
        if short == 0:
            if header.capacity_warning:
                header.capacity_warning = ""
                self.ctx.state.header_changed()
                self.ctx.log("info", "capacity", "every active challenge has room for its CVM")
            return
        spec = self.ctx.config.challenge_vm
        reserve = self.ctx.config.engine.reserve_job_vms
        text = (
            f"capacity shortfall: {short} of {len(self._runtimes)} challenges have no CVM "
            f"(each needs {spec.resources}; {reserve} job VMs kept free)"
        )
        if header.capacity_warning != text:
            header.capacity_warning = text
            self.ctx.state.header_changed()
        now = time.monotonic()
        if now - self._shortfall_warned_at >= SHORTFALL_WARNING_EVERY_S:
            self._shortfall_warned_at = now
            self.ctx.log("warn", "capacity", text)

    # -- provisioning ------------------------------------------------------------------------

    async def _provision(self, runtime: _Runtime, allocation: Allocation) -> None:
        """Create, boot and switch to a new CVM holding `allocation` (released on failure)."""
        spec = runtime.spec
        rebuilding = runtime.vm is not None
        new_vm: ChallengeVm | None = None
        try:
            self._set(spec.id, ChallengeState.UPDATING if rebuilding else ChallengeState.FETCHING)
            compose = await self._compose(spec)
            if not rebuilding:
                self._set(spec.id, ChallengeState.PROVISIONING)
            name = self.ctx.naming.challenge_vm(spec.id)
            host = self.ctx.hosts.of(allocation)
            config = vm_configuration(
                host,
                self.ctx.config.challenge_vm,
                name,
                compose,
                allocation,
                {"CHALLENGE_ID": spec.id},
            )
            self.ctx.store.intend_challenge_vm(host.name, name)
            try:
                vm_id = await self._create(host, config)
                new_vm = ChallengeVm(vm_id, spec.compose_hash, allocation)
                runtime.extra_vms.append(new_vm)
                self.ctx.store.put_challenge_vm(
                    StoredChallengeVm(vm_id, spec.id, spec.compose_hash, allocation.port)
                )
            finally:
                self.ctx.store.drop_challenge_vm_intent(host.name, name)
            self.ctx.state.put_vm(
                VmRecord(
                    vm_id,
                    name,
                    VmKind.CHALLENGE,
                    spec.id,
                    host_port=allocation.port,
                    host=host.name,
                )
            )
            self.ctx.log(
                "info",
                "cvm",
                f"{spec.name}: created CVM {vm_id}{self._on(host)}",
                challenge_id=spec.id,
                vm_id=vm_id,
            )
            if not rebuilding:
                self._set(spec.id, ChallengeState.BOOTING)
            await host.watcher.wait_ready(
                vm_id,
                host.evaluator_url(allocation.port, "/health"),
                timeout=self.ctx.config.engine.boot_timeout_s,
                on_info=lambda info: self._on_boot_info(spec.id, info, rebuilding, host),
            )
            old = runtime.vm
            runtime.extra_vms.remove(new_vm)
            runtime.vm, runtime.compose, new_vm = new_vm, compose, None
            runtime.failures = 0
            self._record_vm(runtime, runtime.vm.vm_id, allocation.port, "running", "done")
            self._set(spec.id, ChallengeState.ACTIVE, reason="")
            self.ctx.log("info", "cvm", f"{spec.name}: challenge CVM active", challenge_id=spec.id)
            if old is not None:
                await self._destroy(old, "replaced by rebuilt CVM")
            self._on_active(spec.id)
        except (ComposeError, ClientError, VmNotReady) as exc:
            await self._fail(runtime, str(exc))
        finally:
            runtime.moving_off = None
            if new_vm is not None:
                with contextlib.suppress(ValueError):
                    runtime.extra_vms.remove(new_vm)
                cleanup = self.ctx.tasks.spawn(
                    self._destroy(new_vm, "provisioning did not finish"),
                    name=f"remove-cvm-{new_vm.vm_id}",
                )
                await asyncio.shield(cleanup)
            elif (
                runtime.vm is None or runtime.vm.allocation is not allocation
            ) and self.ctx.hosts.release(allocation):
                self.ctx.publish_quota()
                self.capacity_freed()

    async def _create(self, host: Host, config: VmConfiguration) -> str:
        """CreateVm, retried with backoff while the VMM does not answer (no answer, 5xx); after
        a lost answer the VM is looked up by name first, so a retry never makes a second one.
        A VMM refusal (HTTP 400) raises."""
        backoff = Backoff(0.5, 10.0)
        maybe_created = False
        while True:
            try:
                if maybe_created:
                    found = await find_vms_named(host, config.name)
                    if found:
                        return found[0]
                return await self._create_once(host, config)
            except VmmError:
                raise
            except AnswerLost:
                maybe_created = True
            except ClientError as exc:
                if not is_transient(exc):
                    raise
            await asyncio.sleep(backoff.next())

    async def _create_once(self, host: Host, config: VmConfiguration) -> str:
        """One CreateVm, in a task of its own: when the provisioning is cancelled meanwhile (a
        move undone, a host down), the CVM it creates is removed once its id is known."""
        creating = self.ctx.tasks.spawn(
            host.vmm.create_vm(config), name=f"create-{config.name}", quiet=True
        )
        try:
            return await asyncio.shield(creating)
        except asyncio.CancelledError:
            self.ctx.tasks.spawn(
                self._remove_once_created(host, creating), name=f"remove-{config.name}"
            )
            raise

    async def _remove_once_created(self, host: Host, creating: asyncio.Task[str]) -> None:
        """Remove the CVM `creating` makes, if it makes one."""
        with contextlib.suppress(ClientError):
            vm_id = await creating
            await self._remove_vm_id(host, vm_id, "provisioning was cancelled")

    async def _fail(self, runtime: _Runtime, reason: str) -> None:
        runtime.failures += 1
        runtime.retry_after = time.monotonic() + min(300.0, 10.0 * 2 ** (runtime.failures - 1))
        runtime.why_none = f"provisioning failed, retried later: {reason}"
        if runtime.vm is not None:
            old, runtime.vm, runtime.compose = runtime.vm, None, None
            await self._destroy(old, "rebuild failed")
        self._set(runtime.spec.id, ChallengeState.FAILED, reason=reason)
        self.ctx.log(
            "error",
            "cvm",
            f"{runtime.spec.name}: challenge failed: {reason}",
            challenge_id=runtime.spec.id,
        )

    def _on_boot_info(self, challenge_id: str, info: VmInfo, rebuilding: bool, host: Host) -> None:
        """The new CVM's boot progress shows on the challenge's record (not while a rebuild
        keeps the old CVM serving)."""
        if not rebuilding:
            record = self.ctx.state.challenges.get(challenge_id)
            if record is not None:
                record.vm_id, record.vm_status = info.id, info.status
                record.boot_progress, record.host = info.boot_progress, host.name
                self.ctx.state.put_challenge(record)

    async def _drain_and_destroy(self, runtime: _Runtime) -> None:
        challenge_id = runtime.spec.id
        self._set(challenge_id, ChallengeState.DESTROYING, reason="left the active list")
        deadline = time.monotonic() + self.ctx.config.engine.job_timeout_s
        while time.monotonic() < deadline:
            record = self.ctx.state.challenges.get(challenge_id)
            if record is None or record.jobs_running <= 0:
                break
            await asyncio.sleep(0.2)
        if runtime.vm is not None:
            old, runtime.vm, runtime.compose = runtime.vm, None, None
            await self._destroy(old, "challenge left the active list")
        for extra in list(runtime.extra_vms):
            await self._destroy(extra, "challenge left the active list")
        self._runtimes.pop(challenge_id, None)
        self.ctx.state.drop_challenge(challenge_id)
        self.ctx.log(
            "info", "cvm", f"{runtime.spec.name}: drained and destroyed", challenge_id=challenge_id
        )

    # -- VM teardown -----------------------------------------------------------------------

    async def _destroy(self, vm: ChallengeVm, why: str) -> None:
        """Remove the CVM and release what it held, exactly once, also when the work that
        destroys it is cancelled (the removal goes on in a task of its own); a challenge record
        that showed it shows no VM any more. A CVM its host would not remove is left behind
        (removed once the host answers again)."""
        host = self.ctx.hosts.of(vm.allocation)
        removal = self.ctx.tasks.spawn(
            self._remove_vm_id(host, vm.vm_id, why), name=f"remove-cvm-{vm.vm_id}"
        )
        try:
            await asyncio.shield(removal)
        finally:
            for record in self.ctx.state.challenges.values():
                if record.vm_id == vm.vm_id:
                    record.vm_id, record.host_port, record.active_since = None, None, None
                    record.vm_status, record.boot_progress, record.host = "", "", ""
                    self.ctx.state.put_challenge(record)
            removed = (
                removal.done()
                and not removal.cancelled()
                and removal.exception() is None
                and removal.result()
            )
            if not removed:
                self._leave_behind(vm.vm_id, host)
            if self.ctx.hosts.release(vm.allocation):
                self.ctx.publish_quota()
                self.capacity_freed()

    async def _remove_vm_id(self, host: Host, vm_id: str, why: str) -> bool:
        """Remove one of our CVMs from `host` and forget its store row; True once it is gone."""
        if not await remove_vm(self.ctx, host, vm_id):
            return False
        with contextlib.suppress(StoreError):
            self.ctx.store.delete_challenge_vm(vm_id)
        self._left_behind.pop(vm_id, None)
        self.ctx.log("info", "cvm", f"removed CVM {vm_id}{self._on(host)} ({why})", vm_id=vm_id)
        return True

    def _leave_behind(self, vm_id: str, host: Host) -> None:
        """`vm_id` stays on `host` for now: no longer ours to run, removed once it answers."""
        self._left_behind[vm_id] = host.name
        self.ctx.state.drop_vm(vm_id)

    def left_behind(self, host: Host) -> list[str]:
        """CVMs left on `host` that are to be removed once it answers."""
        return [vm_id for vm_id, name in self._left_behind.items() if name == host.name]

    async def remove_left_behind(self, host: Host, listed: set[str]) -> None:
        """`host` answers and lists `listed`: remove the CVMs left there (those it no longer
        lists are forgotten)."""
        for vm_id in self.left_behind(host):
            if vm_id in listed:
                await self._remove_vm_id(host, vm_id, f"left behind on host {host.name}")
            else:
                self._left_behind.pop(vm_id, None)
                with contextlib.suppress(StoreError):
                    self.ctx.store.delete_challenge_vm(vm_id)

    def on_host_down(self, host: Host) -> None:
        """`host` is down: every challenge CVM there is left behind (what it held released) and
        its challenge provisioned again on another host; provisioning on `host` is abandoned."""
        for runtime in self._runtimes.values():
            vm = runtime.vm
            if vm is not None and vm.allocation.host == host.name:
                runtime.vm, runtime.compose = None, None
                runtime.why_none = f"provisioning again: host {host.name} is down"
                self._leave_behind(vm.vm_id, host)
                if self.ctx.hosts.release(vm.allocation):
                    self.ctx.publish_quota()
                record = self.ctx.state.challenges.get(runtime.spec.id)
                if record is not None:
                    record.vm_id, record.host_port, record.active_since = None, None, None
                    record.vm_status, record.boot_progress, record.host = "", "", ""
                    self.ctx.state.put_challenge(record)
                self.ctx.log(
                    "warn",
                    "cvm",
                    f"{runtime.spec.name}: host {host.name} is down: its CVM {vm.vm_id} is "
                    "left behind, provisioning one on another host",
                    challenge_id=runtime.spec.id,
                    vm_id=vm.vm_id,
                )
                if not runtime.leaving:
                    self._set(
                        runtime.spec.id,
                        ChallengeState.PENDING,
                        reason=f"host {host.name} is down: provisioning on another host",
                    )
            if runtime.leaving:
                continue
            elsewhere = runtime.target is not None and runtime.target.host != host.name
            busy = runtime.task is not None and not runtime.task.done()
            if busy and elsewhere:
                continue  # a CVM is being provisioned on another host: it takes over
            if busy and runtime.task is not None:
                runtime.task.cancel()
            if runtime.vm is None:
                runtime.failures, runtime.retry_after = 0, 0.0
                runtime.waiting = True
        self._place_waiting()

    def move_off(self, host: Host) -> int:
        """`host` is being drained: each challenge CVM there moves (a new one is provisioned
        elsewhere, then the old one removed). Returns how many will move."""
        moving = 0
        for runtime in self._runtimes.values():
            vm = runtime.vm
            if runtime.leaving or vm is None or vm.allocation.host != host.name:
                continue
            busy = runtime.waiting or (runtime.task is not None and not runtime.task.done())
            # A rebuild under way is not a move: undoing the drain leaves it to finish.
            runtime.moving_off = None if busy else host.name
            runtime.waiting = True
            moving += 1
        self._place_waiting()
        return moving

    def stay_on(self, host: Host) -> int:
        """The drain of `host` is undone: each CVM still there stays; its move, waiting for room
        or being provisioned, is cancelled (a CVM that already moved stays where it is). Returns
        how many moves were cancelled."""
        cancelled = 0
        for runtime in self._runtimes.values():
            vm = runtime.vm
            if runtime.moving_off != host.name or vm is None or vm.allocation.host != host.name:
                continue
            runtime.moving_off, runtime.waiting = None, False
            if runtime.task is not None and not runtime.task.done() and runtime.target:
                runtime.task.cancel()
            record = self.ctx.state.challenges.get(runtime.spec.id)
            if record is not None and record.state is ChallengeState.UPDATING:
                record.enter(ChallengeState.ACTIVE, "move cancelled: the host takes VMs again")
                self.ctx.state.put_challenge(record)
                self._on_active(runtime.spec.id)
            cancelled += 1
        return cancelled

    def forget_vm(self, vm_id: str) -> None:
        """The operator removed this CVM: release it and provision a new one now."""
        for runtime in self._runtimes.values():
            if runtime.vm is None or runtime.vm.vm_id != vm_id:
                continue
            if self.ctx.hosts.release(runtime.vm.allocation):
                self.ctx.publish_quota()
            with contextlib.suppress(StoreError):
                self.ctx.store.delete_challenge_vm(vm_id)
            runtime.vm, runtime.compose = None, None
            runtime.why_none = "provisioning a new one: the operator removed it"
            runtime.failures, runtime.retry_after = 0, 0.0
            record = self.ctx.state.challenges.get(runtime.spec.id)
            if record is not None:
                record.vm_id, record.host_port, record.active_since = None, None, None
                record.vm_status, record.boot_progress, record.host = "", "", ""
            reason = "CVM removed by operator: provisioning a new one"
            self._set(runtime.spec.id, ChallengeState.PENDING, reason=reason)
            if not runtime.leaving:
                runtime.waiting = True
                self._place_waiting()

    def operator_stopped(self, vm_id: str) -> None:
        """The operator stopped this CVM: its challenge is `stopped` (no jobs, uptime ends)
        until the CVM runs again."""
        challenge_id = self._challenge_holding(vm_id)
        if challenge_id is not None:
            self._set(challenge_id, ChallengeState.STOPPED, reason="stopped by operator")

    def operator_started(self, vm_id: str) -> None:
        """The operator started this CVM: its challenge is `booting` until the CVM is ready."""
        challenge_id = self._challenge_holding(vm_id)
        record = self.ctx.state.challenges.get(challenge_id) if challenge_id else None
        if record is not None and record.state is ChallengeState.STOPPED:
            self._set(record.id, ChallengeState.BOOTING, reason="started by operator")

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

    def on_vm_lost(self, vm_id: str) -> bool:
        """The VMM no longer lists this CVM (it restarted and forgot it): release what it held
        and provision the challenge again at once. True if it was one of ours."""
        for runtime in self._runtimes.values():
            extra = next((vm for vm in runtime.extra_vms if vm.vm_id == vm_id), None)
            active = runtime.vm is not None and runtime.vm.vm_id == vm_id
            if not active and extra is None:
                continue
            self.ctx.state.drop_vm(vm_id)
            with contextlib.suppress(StoreError):
                self.ctx.store.delete_challenge_vm(vm_id)
            if active and runtime.vm is not None:
                if self.ctx.hosts.release(runtime.vm.allocation):
                    self.ctx.publish_quota()
                runtime.vm, runtime.compose = None, None
                runtime.why_none = "provisioning again after the VMM restarted"
            self.ctx.log(
                "warn",
                "cvm",
                f"{runtime.spec.name}: CVM {vm_id} lost (the VMM no longer has it): "
                "provisioning it again",
                challenge_id=runtime.spec.id,
                vm_id=vm_id,
            )
            if not runtime.leaving:
                runtime.failures, runtime.retry_after = 0, 0.0
                self._set(
                    runtime.spec.id, ChallengeState.PENDING, reason="CVM lost: provisioning again"
                )
                runtime.waiting = True
                self._place_waiting()
            return True
        return False

    def on_vm_info(self, info: VmInfo) -> None:
        """Report on one of our CVMs (reconciler, operator command): keep the record's VM status
        current; a serving CVM found stopped makes its challenge `stopped`, one running and
        booted again makes it `active`."""
        challenge_id = self._challenge_holding(info.id)
        record = self.ctx.state.challenges.get(challenge_id) if challenge_id else None
        if record is None:
            return
        if record.vm_status == info.status and record.boot_progress == info.boot_progress:
            return
        record.vm_status, record.boot_progress = info.status, info.boot_progress
        if record.state is ChallengeState.ACTIVE and info.status in FAILED_STATUSES:
            self._set(record.id, ChallengeState.STOPPED, reason=f"CVM is {info.status}")
        elif record.state in _RESUMABLE and info.is_ready:
            self._set(record.id, ChallengeState.ACTIVE, reason="")
        else:
            self.ctx.state.put_challenge(record)
        if self.is_active(record.id):
            self._on_active(record.id)

    async def shutdown(self, until: float) -> None:
        """Stop provisioning work (waiting until `until`, time.monotonic, at the latest); CVMs
        stay up for the next run to adopt."""
        tasks = [r.task for r in self._runtimes.values() if r.task and not r.task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=max(0.0, until - time.monotonic()))

    # -- helpers ---------------------------------------------------------------------------

    async def _compose(self, spec: Challenge) -> bytes:
        """The challenge's verified compose (cached by hash)."""
        return await fetch_verified_compose(
            self.ctx.platform, self._cache, spec.github_repo, spec.github_commit, spec.compose_hash
        )

    def _vm_resources(self) -> Resources:
        return self.ctx.config.challenge_vm.resources

    def _ensure_record(self, spec: Challenge) -> None:
        record = self.ctx.state.challenges.get(spec.id) or ChallengeRecord(spec.id, spec.name)
        record.name = spec.name
        record.github_repo, record.github_commit = spec.github_repo, spec.github_commit
        record.compose_hash = spec.compose_hash
        record.mechanism_id, record.emission_share = spec.mechanism_id, spec.emission_share
        self.ctx.state.put_challenge(record)

    def _set(self, challenge_id: str, state: ChallengeState, *, reason: str | None = None) -> None:
        record = self.ctx.state.challenges.get(challenge_id)
        if record is None:
            return
        record.enter(state, reason)
        if state is ChallengeState.ACTIVE:
            record.active_since = time.time()
        elif state is ChallengeState.STOPPED:
            record.active_since = None
        self.ctx.state.put_challenge(record)

    def _record_vm(
        self, runtime: _Runtime, vm_id: str, port: int | None, status: str, progress: str
    ) -> None:
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


def _changed(old: Challenge, new: Challenge) -> bool:
    return old.github_commit != new.github_commit or old.compose_hash != new.compose_hash


def _host_port(info: VmInfo) -> int | None:
    if info.configuration and info.configuration.ports:
        return info.configuration.ports[0].host_port
    return None


def _gpu_slots(info: VmInfo) -> tuple[str, ...]:
    """The GPU slots a VM was created with (none when its configuration lists none)."""
    gpus = info.configuration.gpus if info.configuration else None
    return tuple(gpu.slot for gpu in gpus.gpus) if gpus else ()
