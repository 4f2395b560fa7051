"""The reconciler: every few seconds (every second while the VMM does not answer), compare the
VMM's list of our VMs with what the engine holds."""

from __future__ import annotations

import contextlib

from validator_tui.clients.errors import ClientError
from validator_tui.engine.challenges import ChallengeManager
from validator_tui.engine.context import EngineContext
from validator_tui.engine.jobs import VM_LOST, JobManager
from validator_tui.engine.records import VmKind
from validator_tui.engine.recovery import Recovery


class Reconciler:
    """Keeps VM statuses current, removes orphaned job VMs, and notices lost VMs."""

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

    async def reconcile(self) -> None:
        """Compare the VMM's VMs with ours: refresh statuses, remove orphaned job VMs, and
        notice VMs we hold that the VMM no longer lists (a VMM restart): a challenge CVM is
        provisioned again, a job fails with "VM lost", their quota is released. VMs of another
        validator with our hotkey are left alone and reported (engine/foreign)."""
        ctx = self.ctx
        held = {vm_id: (vm.kind, vm.owner_id) for vm_id, vm in ctx.state.vms.items()}
        try:
            listing = await ctx.vmm.status(keyword=ctx.naming.prefix, brief=True)
        except ClientError:
            return
        if self.recovery.orphans_pending:
            await self.recovery.sort_out_vms(late=True)
        listed = {info.id for info in listing.vms}
        for vm_id, (kind, owner) in held.items():
            if vm_id in listed or vm_id not in ctx.state.vms:
                continue
            if kind is VmKind.CHALLENGE:
                self.challenges.on_vm_lost(vm_id)
            else:
                ctx.state.drop_vm(vm_id)
                if self.jobs.on_vm_lost(owner):
                    ctx.log("warn", "vm", f"job VM {vm_id} lost: {VM_LOST}", job_id=owner)
        active_names = {
            ctx.naming.job_vm(job.id) for job in ctx.state.jobs.values() if job.state.active
        }
        foreign = self.recovery.foreign
        others = []
        for info in listing.vms:
            if not ctx.naming.owns(info.name) or info.status == "removing":
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
                    await ctx.vmm.remove_vm(info.id)
                ctx.state.drop_vm(info.id)
                ctx.log("warn", "reconcile", f"removed orphaned job VM {info.id}", vm_id=info.id)
        foreign.observe(others)
