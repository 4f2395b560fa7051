"""The reconciler: every few seconds (every second for a host whose VMM does not answer),
compare each host's list of our VMs with what the engine holds there."""

from __future__ import annotations

import asyncio
import contextlib

from validator_tui.clients.errors import ClientError
from validator_tui.engine.challenges import ChallengeManager
from validator_tui.engine.context import EngineContext
from validator_tui.engine.hosts import Host
from validator_tui.engine.jobs import VM_LOST, JobManager
from validator_tui.engine.recovery import Recovery
from validator_tui.shared.records import VmKind


class Reconciler:
    """Keeps VM statuses current, removes orphaned job VMs and CVMs left behind, refreshes
    GPU slots, and notices lost VMs, host by host."""

    def __init__(
        self,
        ctx: EngineContext,
        jobs: JobManager,
        challenges: ChallengeManager,
        recovery: Recovery,
    ) -> None:
        self.ctx = ctx
        self.jobs = jobs
        self.challenges = challenges
        self.recovery = recovery
        self._busy: set[str] = set()
        #: Hosts asked for while a pass over them ran: that pass is followed by another.
        self._again: set[str] = set()

    async def reconcile(self, hosts: list[Host] | None = None) -> None:
        """One pass over `hosts` (default: every host), concurrently."""
        chosen = list(self.ctx.hosts) if hosts is None else hosts
        await asyncio.gather(*(self.reconcile_host(host) for host in chosen))

    async def reconcile_host(self, host: Host) -> None:
        """Compare `host`'s VMs with ours there: refresh statuses, remove orphaned job VMs and
        CVMs left behind, and notice VMs we hold that it no longer lists (a VMM restart): a
        challenge CVM is provisioned again, a job fails with "VM lost", their quota is
        released. VMs of another validator with our hotkey are left alone and reported
        (engine/foreign). A host that answers again is `settled` by the first pass that read
        its list after that (claims for its CVMs resume). A host already being reconciled gets
        one more pass once that one ends (its listing may predate the request)."""
        if host.name in self._busy:
            self._again.add(host.name)
            return
        self._busy.add(host.name)
        try:
            await self._reconcile_host(host)
            while host.name in self._again:
                self._again.discard(host.name)
                await self._reconcile_host(host)
        finally:
            self._busy.discard(host.name)
            self._again.discard(host.name)

    async def _reconcile_host(self, host: Host) -> None:
        ctx = self.ctx
        held = {
            vm_id: (vm.kind, vm.owner_id)
            for vm_id, vm in ctx.state.vms.items()
            if vm.host == host.name
        }
        outages = host.outages
        try:
            listing = await host.vmm.status(keyword=ctx.naming.prefix, brief=True)
        except ClientError:
            return
        if host.orphans_pending:
            await self.recovery.sort_out_vms(host, late=True)
        if host.wants_gpus:
            await self.recovery.check_gpus(host)
        listed = {info.id for info in listing.vms}
        await self.challenges.remove_left_behind(host, listed)
        for vm_id, (kind, owner) in held.items():
            if vm_id in listed or vm_id not in ctx.state.vms:
                continue
            if kind is VmKind.CHALLENGE:
                self.challenges.on_vm_lost(vm_id)
            else:
                ctx.state.drop_vm(vm_id)
                if self.jobs.on_vm_lost(owner):
                    ctx.log("warn", "vm", f"job VM {vm_id} lost: {VM_LOST}", job_id=owner)
        if host.settle(outages):
            self.jobs.claim_what_fits()
        active_names = {
            ctx.naming.job_vm(job.id) for job in ctx.state.jobs.values() if job.state.active
        }
        foreign = self.recovery.foreign
        left_behind = set(self.challenges.left_behind(host))
        others = []
        for info in listing.vms:
            if not ctx.naming.owns(info.name) or info.status == "removing":
                continue
            if info.id in left_behind:
                continue
            if not (
                foreign.is_ours_challenge_vm(info)
                if ctx.naming.is_challenge_vm(info.name)
                else foreign.is_ours_job_vm(info, active_names)
            ):
                others.append(info)
                continue
            ctx.state.set_vm_status(info.id, info.status, info.boot_progress)
            if ctx.naming.is_challenge_vm(info.name):
                self.challenges.on_vm_info(info)
            elif info.name not in active_names:
                with contextlib.suppress(ClientError):
                    await host.vmm.remove_vm(info.id)
                ctx.state.drop_vm(info.id)
                ctx.log("warn", "reconcile", f"removed orphaned job VM {info.id}", vm_id=info.id)
        foreign.observe(host.name, others)
