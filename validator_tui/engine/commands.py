"""The operator's commands: each runs for its command frame (control/frames.py) through the
command desk, which refuses every command of a read-only console or engine before it gets here.
A command answers with an `Outcome` (done, or refused with the reason) and never raises for
bad input."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from validator_tui.clients.errors import ApiError, ClientError, QueryRefused
from validator_tui.clients.orm_guard import check_read_only
from validator_tui.engine.challenges import ChallengeManager
from validator_tui.engine.context import EngineContext
from validator_tui.engine.hosts import Host
from validator_tui.engine.jobs import JobManager
from validator_tui.engine.store import StoreError
from validator_tui.shared.records import JobRecord, OutboxRow, Outcome, VmKind


class OperatorCommands:
    """What the operator can do to jobs, challenges, VMs, hosts and the results outbox."""

    def __init__(self, ctx: EngineContext, jobs: JobManager, challenges: ChallengeManager) -> None:
        self.ctx = ctx
        self.jobs = jobs
        self.challenges = challenges

    # -- jobs and challenges ------------------------------------------------------------------

    async def claim(self, job_id: str) -> Outcome:
        """Claim a pending job now (whatever the auto-claim setting)."""
        return await self.jobs.claim_job(job_id)

    async def cancel(self, job_id: str) -> Outcome:
        """Abort a claimed or running job; its result says `cancelled by operator`."""
        return await self.jobs.cancel_by_operator(job_id)

    async def rebuild(self, challenge_id: str) -> Outcome:
        """Provision a fresh CVM for the challenge, switch to it, destroy the old one."""
        if not self.challenges.request_rebuild(challenge_id):
            return Outcome.refused("unknown challenge, or it is leaving the active list")
        return Outcome.done("rebuild started: the new CVM replaces the old one when active")

    async def set_auto_claim(self, enabled: bool) -> Outcome:
        """Turn auto-claim on or off; when on, pending jobs that fit are claimed at once."""
        self.jobs.auto_claim = enabled
        self.ctx.state.header.auto_claim = enabled
        self.ctx.state.header_changed()
        self.jobs.claim_what_fits()
        return Outcome.done(f"auto-claim {'on' if enabled else 'off'}")

    async def orm_query(self, challenge_id: str, sql: str, params: list[object]) -> Outcome:
        """Run a read-only ORM query on a challenge; rows come back in the outcome."""
        try:
            check_read_only(sql)
            rows = await self.ctx.platform.execute_orm_query(challenge_id, sql, params)
        except QueryRefused as exc:
            return Outcome.refused(str(exc))
        except ApiError as exc:
            return Outcome.refused(f"server refused the query: {exc.detail or exc}")
        except ClientError as exc:
            return Outcome.refused(str(exc))
        return Outcome.done(f"{len(rows)} rows", tuple(rows))

    # -- VMs ------------------------------------------------------------------------------------

    async def start_vm(self, vm_id: str) -> Outcome:
        """Start one of our VMs."""
        return await self._vm_command(vm_id, "start")

    async def stop_vm(self, vm_id: str) -> Outcome:
        """Stop (hard) one of our VMs; a job running in it fails."""
        return await self._vm_command(vm_id, "stop")

    async def remove_vm(self, vm_id: str) -> Outcome:
        """Remove one of our VMs; a job in it fails, a challenge is re-provisioned later."""
        return await self._vm_command(vm_id, "remove")

    async def _vm_command(self, vm_id: str, action: str) -> Outcome:
        state = self.ctx.state
        record = state.vms.get(vm_id)
        if record is None:
            job = self._job_of_vm(vm_id)
            if job is not None and job.state.finished:
                return Outcome.refused(
                    f"VM {vm_id} of job {job.id} was removed when the job finished "
                    f"({job.state.value})"
                )
            return Outcome.refused(f"VM {vm_id} is not one of this validator's VMs")
        host = self.ctx.hosts.get(record.host)
        if host is None:
            return Outcome.refused(f"VM {vm_id} is on host {record.host!r}, not in the pool")
        vmm = host.vmm
        calls = {"start": vmm.start_vm, "stop": vmm.stop_vm, "remove": vmm.remove_vm}
        try:
            await calls[action](vm_id)
        except ClientError as exc:
            return Outcome.refused(f"{action} failed: {exc}")
        if record.kind is VmKind.CHALLENGE:
            if action == "remove":
                self.challenges.forget_vm(vm_id)
                state.drop_vm(vm_id)
            elif action == "stop":
                self.challenges.operator_stopped(vm_id)
            else:
                self.challenges.operator_started(vm_id)
        where = f" on host {host.name}" if self.ctx.hosts.several else ""
        self.ctx.log("info", "operator", f"operator {action} VM {vm_id}{where}", vm_id=vm_id)
        with contextlib.suppress(ClientError):
            info = await vmm.get_info(vm_id)
            if info is not None and vm_id in state.vms:
                state.set_vm_status(vm_id, info.status, info.boot_progress)
                if record.kind is VmKind.CHALLENGE:
                    self.challenges.on_vm_info(info)
        return Outcome.done(f"{action} sent to VM {vm_id}{where}")

    async def vm_logs(
        self, vm_id: str, *, lines: int = 200, follow: bool = True
    ) -> AsyncIterator[str]:
        """The VM's serial log lines (raw, untrusted: sanitise before display). For a job VM
        that is gone, the lines kept with its job's record (see `JobRecord.vm_log`)."""
        if vm_id not in self.ctx.state.vms:
            job = self._job_of_vm(vm_id)
            if job is not None:
                for line in job.vm_log[-lines:]:
                    yield line
                kept = f"its last {len(job.vm_log)} log lines" if job.vm_log else "no log"
                yield f"[validator] VM {vm_id} of job {job.id} is gone: {kept} kept"
                return
        record = self.ctx.state.vms.get(vm_id)
        hosts = self.ctx.hosts
        host = hosts.get(record.host) if record is not None else None
        if host is None and not hosts.several:
            host = next(iter(hosts))
        if host is None:
            yield f"[validator] VM {vm_id} is not one of this validator's VMs"
            return
        async for line in host.vmm.logs(vm_id, follow=follow, lines=lines, ansi=False):
            yield line

    def _job_of_vm(self, vm_id: str) -> JobRecord | None:
        """The job (still in the history) that ran in VM `vm_id`."""
        for job in reversed(self.ctx.state.jobs.values()):
            if job.vm_id == vm_id:
                return job
        return None

    # -- hosts ----------------------------------------------------------------------------------

    async def drain_host(self, name: str) -> Outcome:
        """Drain a host: no new VMs there; its challenge CVMs move (a new one active elsewhere
        first, then the old one removed); its running jobs finish; then it shows `drained`.
        Kept across restarts until undrained."""
        host = self._set_draining(name, True)
        if isinstance(host, Outcome):
            return host
        moving = self.challenges.move_off(host)
        self.ctx.publish_quota()
        self.jobs.claim_what_fits()
        running = sum(
            1 for job in self.ctx.state.jobs.values() if job.state.active and job.host == name
        )
        others = [h for h in self.ctx.hosts if h.takes_vms]
        note = "" if others else "; no other host takes VMs: its CVMs stay until one does"
        return Outcome.done(
            f"draining host {name}: {moving} challenge CVMs move, {running} running jobs "
            f"finish there{note}"
        )

    async def undrain_host(self, name: str) -> Outcome:
        """Return a drained (or draining) host to the pool; challenge CVMs that have not moved
        off it yet stay (their moves are cancelled): undoing a drain changes nothing else."""
        host = self._set_draining(name, False)
        if isinstance(host, Outcome):
            return host
        stayed = self.challenges.stay_on(host)
        self.ctx.publish_quota()
        self.challenges.capacity_freed()
        self.jobs.claim_what_fits()
        note = f"; {stayed} challenge CVM moves cancelled (they stay)" if stayed else ""
        return Outcome.done(f"host {name} takes VMs again{note}")

    def _set_draining(self, name: str, draining: bool) -> Host | Outcome:
        """Drain (or undrain) host `name`, recorded in the store first; the host, or the
        refusal (no such host, already so, the store cannot record it)."""
        host = self.ctx.hosts.get(name)
        if host is None:
            names = ", ".join(h.name for h in self.ctx.hosts)
            return Outcome.refused(f"no host named {name!r} (hosts: {names})")
        if draining and host.draining:
            return Outcome.refused(f"host {name} is already {host.state.value}")
        if not draining and not host.draining:
            return Outcome.refused(f"host {name} is not draining")
        try:
            self.ctx.store.set_draining(name, draining)
        except StoreError as exc:
            return Outcome.refused(f"cannot record the {'drain' if draining else 'undrain'}: {exc}")
        host.draining = draining
        return host

    def restore_draining(self) -> None:
        """Hosts the operator drained stay drained across restarts (the store keeps them)."""
        try:
            draining = self.ctx.store.draining_hosts()
        except StoreError:
            return
        for host in self.ctx.hosts:
            host.draining = host.name in draining

    # -- the results outbox ---------------------------------------------------------------------

    def list_outbox(self, limit: int = 1000) -> list[OutboxRow]:
        """The results outbox (dead letters first, then unsent, then the latest answered):
        status, attempts and the last error (for a dead letter, the server's words)."""
        try:
            return self.ctx.store.outbox_entries(limit)
        except StoreError:
            return []

    async def retry_dead_letter(self, job_id: str) -> Outcome:
        """Send a result the platform refused (a dead letter) again, now."""
        return self.jobs.outbox.retry_dead_letter(job_id)

    async def discard_dead_letter(self, job_id: str) -> Outcome:
        """Give up on a result the platform refused (kept in the store as `discarded`)."""
        return self.jobs.outbox.discard_dead_letter(job_id)
