"""Where and how challenge CVMs are made.

Placement: challenges wanting a CVM wait in a queue placed in order of `emission_share` (highest
first) whenever capacity frees, never taking the capacity reserved for job VMs
(`reserve_job_vms`); those that cannot fit make one shortfall warning (header and log, at most
once a minute), never an error per challenge. Provisioning creates the CVM (retried while the VMM
does not answer, never twice), waits for it to boot and switches the challenge to it (the CVMs
it replaces or abandons are removed by `CvmRemoval`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from functools import partial

from validator_tui.clients.backoff import Backoff
from validator_tui.clients.errors import AnswerLost, ClientError, VmmError, is_transient
from validator_tui.engine.challenge_book import (
    ChallengeBook,
    ChallengeRuntime,
    ChallengeVm,
)
from validator_tui.engine.compose import ComposeError
from validator_tui.engine.cvm_removal import CvmRemoval
from validator_tui.engine.hosts import Host, NoRoom
from validator_tui.engine.quota import Allocation
from validator_tui.engine.store import StoredChallengeVm
from validator_tui.engine.vm_ops import (
    find_vms_named,
    set_port_aside,
    taken_port,
    vm_configuration,
)
from validator_tui.engine.vm_ready import VmNotReady
from validator_tui.models.vmm import VmConfiguration, VmInfo
from validator_tui.shared.records import ChallengeState, VmKind, VmRecord

#: The capacity-shortfall warning is logged at most this often (the header always shows it).
SHORTFALL_WARNING_EVERY_S = 60.0


class CvmProvisioner:
    """Places and provisions the CVMs of the challenges in `book`."""

    def __init__(self, book: ChallengeBook, removal: CvmRemoval) -> None:
        self.book = book
        self.ctx = book.ctx
        self._removal = removal
        removal.on_freed(self.capacity_freed)
        self._shortfall_warned_at = float("-inf")

    # -- lifecycle work ----------------------------------------------------------------------

    def start(
        self,
        runtime: ChallengeRuntime,
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

    def _release_unheld(self, runtime: ChallengeRuntime, allocation: Allocation) -> None:
        held = [vm.allocation for vm in (runtime.vm, *runtime.extra_vms) if vm is not None]
        if all(held_one is not allocation for held_one in held) and self.book.release(allocation):
            self.capacity_freed()

    async def _after(
        self, previous: asyncio.Task[None] | None, work: Callable[[], Awaitable[None]]
    ) -> None:
        if previous is not None and not previous.done():
            await asyncio.wait({previous})
        await work()

    async def wait(self, runtime: ChallengeRuntime) -> None:
        while runtime.task is not None and not runtime.task.done():
            await asyncio.wait({runtime.task})

    def capacity_freed(self) -> None:
        """Resources came back (or a host takes VMs again): give them to waiting challenges
        first (emission order)."""
        if any(runtime.waiting for runtime in self.book.runtimes.values()):
            self.place_waiting()

    def place_waiting(self) -> None:
        """Start provisioning for waiting challenges, highest `emission_share` first, each on
        the host with the most free capacity, as long as capacity (with the job-VM reserve)
        allows; report the shortfall."""
        waiting = sorted(
            (r for r in self.book.runtimes.values() if r.waiting and not r.leaving),
            key=lambda r: -r.spec.emission_share,
        )
        config = self.ctx.config
        short = 0
        for runtime in waiting:
            try:
                allocation = self.ctx.hosts.place_cvm(
                    self.book.vm_resources(),
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
            self.start(runtime, partial(self._provision, runtime, allocation), allocation)
        self._report_shortfall(short)

    def _set_waiting(self, runtime: ChallengeRuntime, reason: str) -> None:
        record = self.ctx.state.challenges.get(runtime.spec.id)
        if record is None or runtime.vm is not None:
            return
        if record.state is not ChallengeState.PENDING or record.reason != reason:
            self.book.set(runtime.spec.id, ChallengeState.PENDING, reason=reason)

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
            f"capacity shortfall: {short} of {len(self.book.runtimes)} challenges have no CVM "
            f"(each needs {spec.resources}; {reserve} job VMs kept free)"
        )
        if header.capacity_warning != text:
            header.capacity_warning = text
            self.ctx.state.header_changed()
        now = time.monotonic()
        if now - self._shortfall_warned_at >= SHORTFALL_WARNING_EVERY_S:
            self._shortfall_warned_at = now
            self.ctx.log("warn", "capacity", text)

    # -- creating a CVM ----------------------------------------------------------------------

    async def _provision(self, runtime: ChallengeRuntime, allocation: Allocation) -> None:
        """Create, boot and switch to a new CVM holding `allocation` (released on failure)."""
        spec = runtime.spec
        rebuilding = runtime.vm is not None
        new_vm: ChallengeVm | None = None
        try:
            self.book.set(
                spec.id, ChallengeState.UPDATING if rebuilding else ChallengeState.FETCHING
            )
            compose = await self.book.compose(spec)
            if not rebuilding:
                self.book.set(spec.id, ChallengeState.PROVISIONING)
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
                f"{spec.name}: created CVM {vm_id}{self.book.on(host)}",
                challenge_id=spec.id,
                vm_id=vm_id,
            )
            if not rebuilding:
                self.book.set(spec.id, ChallengeState.BOOTING)
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
            self.book.record_vm(runtime, runtime.vm.vm_id, allocation.port, "running", "done")
            self.book.set(spec.id, ChallengeState.ACTIVE, reason="")
            self.ctx.log("info", "cvm", f"{spec.name}: challenge CVM active", challenge_id=spec.id)
            if old is not None:
                await self._removal.destroy(old, "replaced by rebuilt CVM")
            self.book.activated(spec.id)
        except (ComposeError, ClientError, VmNotReady) as exc:
            port = taken_port(exc, allocation)
            if port is None:
                await self._fail(runtime, str(exc))
            else:
                await self._port_taken(runtime, allocation, port)
        finally:
            runtime.moving_off = None
            if new_vm is not None:
                with contextlib.suppress(ValueError):
                    runtime.extra_vms.remove(new_vm)
                cleanup = self.ctx.tasks.spawn(
                    self._removal.destroy(new_vm, "provisioning did not finish"),
                    name=f"remove-cvm-{new_vm.vm_id}",
                )
                await asyncio.shield(cleanup)
            elif (
                runtime.vm is None or runtime.vm.allocation is not allocation
            ) and self.book.release(allocation):
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
            await self._removal.remove_vm_id(host, vm_id, "provisioning was cancelled")

    async def _port_taken(
        self, runtime: ChallengeRuntime, allocation: Allocation, port: int
    ) -> None:
        """Another program holds the CVM's host port: set it aside and place the challenge
        again at once (its allocation, given back as this provisioning ends, brings it to a
        host and port again). Not a failure of the challenge."""
        host = self.ctx.hosts.of(allocation)
        await set_port_aside(self.ctx, host, self.ctx.naming.challenge_vm(runtime.spec.id), port)
        runtime.waiting = True
        if runtime.vm is None:
            reason = f"host port {port} is in use by another program: trying another"
            self.book.set(runtime.spec.id, ChallengeState.PENDING, reason=reason)

    async def _fail(self, runtime: ChallengeRuntime, reason: str) -> None:
        runtime.failures += 1
        runtime.retry_after = time.monotonic() + min(300.0, 10.0 * 2 ** (runtime.failures - 1))
        runtime.why_none = f"provisioning failed, retried later: {reason}"
        if runtime.vm is not None:
            old, runtime.vm, runtime.compose = runtime.vm, None, None
            await self._removal.destroy(old, "rebuild failed")
        self.book.set(runtime.spec.id, ChallengeState.FAILED, reason=reason)
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
