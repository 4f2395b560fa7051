"""Start-up recovery: resume the outbox, finish the jobs a previous run left in flight, and
sort out our VMs on every host (job VMs removed, challenge CVMs offered for adoption, which
may take one on any host)."""

from __future__ import annotations

import asyncio
import contextlib

from validator_tui.clients.errors import ClientError
from validator_tui.engine.challenges import ChallengeManager
from validator_tui.engine.context import EngineContext
from validator_tui.engine.foreign import ForeignVms
from validator_tui.engine.hosts import Host
from validator_tui.engine.jobs import JobManager
from validator_tui.engine.store import StoredChallengeVm, StoredState, StoreError
from validator_tui.models.vmm import VmInfo


class Recovery:
    """What a start needs to finish of the previous run; a host's `orphans_pending` stays set
    while its VMM could not be asked which VMs are ours (the reconciler asks again)."""

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
            self.jobs.finish_interrupted(stored)
            ctx.log(
                "warn",
                "recover",
                "job interrupted by a restart: error result queued",
                job_id=stored.id,
            )
        await asyncio.gather(*(self.sort_out_vms(host) for host in ctx.hosts))

    async def sort_out_vms(self, host: Host, *, late: bool = False) -> None:
        """List our VMs on `host`: remove job VMs (their jobs cannot resume) and offer
        challenge CVMs for adoption. `late` (the VMM did not answer at start-up and is back):
        challenge CVMs the engine does not hold by now are removed instead of adopted. VMs of
        another validator with our hotkey (not in our store) are left alone and reported
        (engine/foreign)."""
        ctx = self.ctx
        try:
            listing = await host.vmm.status(keyword=ctx.naming.prefix, brief=False)
        except ClientError as exc:
            ctx.log("error", "vmm", f"cannot list VMs at start-up: {exc}")
            host.orphans_pending = True
            return
        host.orphans_pending = False
        if host.wants_gpus and not late:
            await self.check_gpus(host)
        ours = [vm for vm in listing.vms if ctx.naming.owns(vm.name) and vm.status != "removing"]
        jobs = [vm for vm in ours if ctx.naming.is_job_vm(vm.name)]
        cvms = [vm for vm in ours if ctx.naming.is_challenge_vm(vm.name)]
        known = {stored.vm_id for stored in ctx.store.challenge_vms()}
        known |= self._claim_unrecorded_cvms(host, cvms, known)
        foreign = [vm for vm in jobs if not self.foreign.is_ours_job_vm(vm, set())]
        foreign += [vm for vm in cvms if vm.id not in known]
        if not late:  # a late pass is followed by the reconcile pass's own report
            self.foreign.observe(host.name, foreign)
        where = f" on host {host.name}" if ctx.hosts.several else ""
        for info in jobs:
            if info not in foreign:
                with contextlib.suppress(ClientError):
                    await host.vmm.remove_vm(info.id)
                ctx.log(
                    "warn", "recover", f"removed orphaned job VM {info.id}{where}", vm_id=info.id
                )
        cvms = [vm for vm in cvms if vm.id in known]
        if not late:
            self.challenges.offer_existing(host, cvms)
            return
        for info in cvms:
            if not self.challenges.holds(info.id):
                with contextlib.suppress(ClientError):
                    await host.vmm.remove_vm(info.id)
                with contextlib.suppress(StoreError):
                    ctx.store.delete_challenge_vm(info.id)
                ctx.log("warn", "recover", f"removed stale CVM {info.id}{where}", vm_id=info.id)

    def _claim_unrecorded_cvms(self, host: Host, cvms: list[VmInfo], known: set[str]) -> set[str]:
        """CVMs on `host` a previous run began to create and died before recording (its intent
        names them): recorded now, so they are adopted or removed like any of ours. The host's
        intents are spent."""
        ctx = self.ctx
        intended = ctx.store.challenge_vm_intents(host.name)
        found = {info.id for info in cvms if info.id not in known and info.name in intended}
        for info in cvms:
            if info.id in found:
                challenge_id = ctx.naming.challenge_of(info.name)
                ctx.store.put_challenge_vm(StoredChallengeVm(info.id, challenge_id, "", None))
                ctx.log(
                    "info",
                    "recover",
                    f"CVM {info.id} was being created when the engine stopped: it is ours",
                    vm_id=info.id,
                )
        for name in intended:
            ctx.store.drop_challenge_vm_intent(host.name, name)
        return found

    async def check_gpus(self, host: Host) -> None:
        """List `host`'s GPUs; a `gpu_count` above what it has is an error in the event log
        (only the GPUs it has are handed out). A VMM that does not answer is asked again by
        the reconciler."""
        try:
            problem = await host.list_gpus()
        except ClientError as exc:
            self.ctx.log("warn", "gpu", f"cannot list the GPUs of host {host.name}: {exc}")
            return
        if problem:
            self.ctx.log("error", "gpu", problem)
        self.ctx.publish_quota()
