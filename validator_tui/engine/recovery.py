"""Start-up recovery: resume the outbox, finish the jobs a previous run left in flight, and
sort out our VMs (job VMs removed, challenge CVMs offered for adoption)."""

from __future__ import annotations

import contextlib

from validator_tui.clients.errors import ClientError
from validator_tui.engine.challenges import ChallengeManager
from validator_tui.engine.context import EngineContext
from validator_tui.engine.foreign import ForeignVms
from validator_tui.engine.jobs import RESTARTED, JobManager
from validator_tui.engine.store import StoredState
from validator_tui.models.platform import JobResults


class Recovery:
    """What a start needs to finish of the previous run; `orphans_pending` stays set while
    the VMM could not be asked which VMs are ours (the reconciler asks again)."""

    def __init__(
        self,
        ctx: EngineContext,
        jobs: JobManager,
        challenges: ChallengeManager,
        foreign: ForeignVms,
    ) -> None:
        self.ctx = ctx
        self.jobs = jobs
        self.challenges = challenges
        self.foreign = foreign
        self.orphans_pending = False

    async def recover(self) -> None:
        """Resume the outbox, finish jobs a previous run left in flight, sort out our VMs."""
        ctx = self.ctx
        resumed = self.jobs.outbox.resume()
        if resumed:
            ctx.log("info", "recover", f"resending {resumed} unsent results")
        self.jobs.outbox.count_dead_letters()
        dead = ctx.state.header.counters.dead_letters
        if dead:
            ctx.log(
                "warn",
                "result",
                f"{dead} results were refused by the platform (dead letters): "
                "see `validator-tui outbox list`",
            )
        for stored in ctx.store.in_flight_jobs():
            if ctx.store.has_result(stored.id):
                continue
            if stored.state is StoredState.CLAIMING:
                self.jobs.recover_unsure(stored)
                continue
            body = JobResults.failure(
                RESTARTED, 0, ["[validator] validator restarted while the job was running"]
            ).to_json_bytes()
            ctx.store.finish_job_with_result(stored.id, StoredState.SUBMITTING, body)
            self.jobs.outbox.enqueue(stored.id, body)
            ctx.log(
                "warn",
                "recover",
                "job interrupted by a restart: error result queued",
                job_id=stored.id,
            )
        await self.sort_out_vms()

    async def sort_out_vms(self, *, late: bool = False) -> None:
        """List our VMs: remove job VMs (their jobs cannot resume) and offer challenge CVMs for
        adoption. `late` (the VMM did not answer at start-up and is back): challenge CVMs the
        engine does not hold by now are removed instead of adopted. VMs of another validator
        with our hotkey (not in our store) are left alone and reported (engine/foreign)."""
        ctx = self.ctx
        try:
            listing = await ctx.vmm.status(keyword=ctx.naming.prefix, brief=False)
        except ClientError as exc:
            ctx.log("error", "vmm", f"cannot list VMs at start-up: {exc}")
            self.orphans_pending = True
            return
        self.orphans_pending = False
        ours = [vm for vm in listing.vms if ctx.naming.owns(vm.name) and vm.status != "removing"]
        jobs = [vm for vm in ours if ctx.naming.is_job_vm(vm.name)]
        cvms = [vm for vm in ours if ctx.naming.is_challenge_vm(vm.name)]
        known = {stored.vm_id for stored in ctx.store.challenge_vms()}
        foreign = [vm for vm in jobs if not self.foreign.is_ours_job_vm(vm, set())]
        foreign += [vm for vm in cvms if vm.id not in known]
        if not late:  # a late pass is followed by the reconcile pass's own report
            self.foreign.observe(foreign)
        for info in jobs:
            if info not in foreign:
                with contextlib.suppress(ClientError):
                    await ctx.vmm.remove_vm(info.id)
                ctx.log("warn", "recover", f"removed orphaned job VM {info.id}", vm_id=info.id)
        cvms = [vm for vm in cvms if vm.id in known]
        if not late:
            self.challenges.offer_existing(cvms)
            return
        for info in cvms:
            if not self.challenges.holds(info.id):
                with contextlib.suppress(ClientError):
                    await ctx.vmm.remove_vm(info.id)
                ctx.log("warn", "recover", f"removed stale CVM {info.id}", vm_id=info.id)
