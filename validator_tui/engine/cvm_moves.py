"""Challenge CVMs provisioned again elsewhere: off a host that is down (failover) or being
drained (a move, cancelled when the drain is undone), and in place of a CVM the VMM lost or the
operator removed."""

from __future__ import annotations

import contextlib

from validator_tui.engine.challenge_book import (
    ChallengeBook,
    ChallengeRuntime,
    ChallengeVm,
    clear_vm,
)
from validator_tui.engine.cvm_provisioning import CvmProvisioner
from validator_tui.engine.cvm_removal import CvmRemoval
from validator_tui.engine.hosts import Host
from validator_tui.engine.store import StoreError
from validator_tui.shared.records import ChallengeState


class CvmMoves:
    """Moves the CVMs of the challenges in `book` when theirs cannot stay where it is."""

    def __init__(
        self, book: ChallengeBook, provisioner: CvmProvisioner, removal: CvmRemoval
    ) -> None:
        self.book = book
        self.ctx = book.ctx
        self._provisioner = provisioner
        self._removal = removal

    def on_host_down(self, host: Host) -> None:
        """`host` is down: every challenge CVM there is left behind (what it held released) and
        its challenge provisioned again on another host; provisioning on `host` is abandoned."""
        for runtime in self.book.runtimes.values():
            vm = runtime.vm
            if vm is not None and vm.allocation.host == host.name:
                self._leave_on_down_host(runtime, vm, host)
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
        self._provisioner.place_waiting()

    def _leave_on_down_host(self, runtime: ChallengeRuntime, vm: ChallengeVm, host: Host) -> None:
        """The serving CVM `vm` is left behind on `host`, which is down; its challenge is
        pending a CVM on another host."""
        self._removal.leave_behind(vm.vm_id, host)
        self._drop_serving(runtime, f"provisioning again: host {host.name} is down")
        record = self.ctx.state.challenges.get(runtime.spec.id)
        if record is not None:
            clear_vm(record)
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
            self.book.set(
                runtime.spec.id,
                ChallengeState.PENDING,
                reason=f"host {host.name} is down: provisioning on another host",
            )

    def _drop_serving(self, runtime: ChallengeRuntime, why: str) -> None:
        """The challenge's serving CVM serves no more (what it held is released); `why` it has
        none is shown to the jobs waiting for one."""
        if runtime.vm is not None:
            self.book.release(runtime.vm.allocation)
        runtime.vm, runtime.compose = None, None
        runtime.why_none = why

    def move_off(self, host: Host) -> int:
        """`host` is being drained: each challenge CVM there moves (a new one is provisioned
        elsewhere, then the old one removed). Returns how many will move."""
        moving = 0
        for runtime in self.book.runtimes.values():
            vm = runtime.vm
            if runtime.leaving or vm is None or vm.allocation.host != host.name:
                continue
            busy = runtime.waiting or (runtime.task is not None and not runtime.task.done())
            # A rebuild under way is not a move: undoing the drain leaves it to finish.
            runtime.moving_off = None if busy else host.name
            runtime.waiting = True
            moving += 1
        self._provisioner.place_waiting()
        return moving

    def stay_on(self, host: Host) -> int:
        """The drain of `host` is undone: each CVM still there stays; its move, waiting for room
        or being provisioned, is cancelled (a CVM that already moved stays where it is). Returns
        how many moves were cancelled."""
        cancelled = 0
        for runtime in self.book.runtimes.values():
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
                self.book.activated(runtime.spec.id)
            cancelled += 1
        return cancelled

    def forget_vm(self, vm_id: str) -> None:
        """The operator removed this CVM: release it and provision a new one now."""
        for runtime in self.book.runtimes.values():
            if runtime.vm is None or runtime.vm.vm_id != vm_id:
                continue
            with contextlib.suppress(StoreError):
                self.ctx.store.delete_challenge_vm(vm_id)
            self._drop_serving(runtime, "provisioning a new one: the operator removed it")
            runtime.failures, runtime.retry_after = 0, 0.0
            record = self.ctx.state.challenges.get(runtime.spec.id)
            if record is not None:
                clear_vm(record)
            reason = "CVM removed by operator: provisioning a new one"
            self.book.set(runtime.spec.id, ChallengeState.PENDING, reason=reason)
            if not runtime.leaving:
                runtime.waiting = True
                self._provisioner.place_waiting()

    def on_vm_lost(self, vm_id: str) -> bool:
        """The VMM no longer lists this CVM (it restarted and forgot it): release what it held
        and provision the challenge again at once. True if it was one of ours."""
        for runtime in self.book.runtimes.values():
            extra = next((vm for vm in runtime.extra_vms if vm.vm_id == vm_id), None)
            active = runtime.vm is not None and runtime.vm.vm_id == vm_id
            if not active and extra is None:
                continue
            self.ctx.state.drop_vm(vm_id)
            with contextlib.suppress(StoreError):
                self.ctx.store.delete_challenge_vm(vm_id)
            if active:
                self._drop_serving(runtime, "provisioning again after the VMM restarted")
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
                self.book.set(
                    runtime.spec.id, ChallengeState.PENDING, reason="CVM lost: provisioning again"
                )
                runtime.waiting = True
                self._provisioner.place_waiting()
            return True
        return False
