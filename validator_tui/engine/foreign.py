"""`ForeignVms`: VMs with this hotkey's name prefix that this engine did not create.

Two validators with the same hotkey on the same VMM (two state dirs: the lock only guards
one) see each other's VMs under their own prefix. Such VMs are never touched (not removed, and
at start-up not adopted): a job VM is ours only when our store recorded its name (committed
before CreateVm), a challenge CVM only when we hold or recorded it. A VM is reported once it
looked foreign in two reconcile passes in a row (our own fresh CVM is briefly unrecorded),
loudly: an error in the event log and the header's `conflict`, until they are gone.
"""

from __future__ import annotations

from collections.abc import Iterable

from validator_tui.engine.context import EngineContext
from validator_tui.models.vmm import VmInfo

#: Foreign VMs named one by one in the event log; beyond that, a count.
NAMED_AT_MOST = 5


class ForeignVms:
    """Tells our VMs from another engine's, and says so when there are others."""

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx
        #: By host: VM ids foreign in the host's last pass, and those reported.
        self._suspects: dict[str, set[str]] = {}
        self._confirmed: dict[str, set[str]] = {}

    def is_ours_job_vm(self, info: VmInfo, active_names: set[str]) -> bool:
        """A job VM is ours when one of our jobs runs in it or our store recorded its name."""
        return info.name in active_names or self.ctx.store.knows_vm_name(info.name)

    def is_ours_challenge_vm(self, info: VmInfo) -> bool:
        """A challenge CVM is ours when we hold it, or our store recorded it."""
        if info.id in self.ctx.state.vms:
            return True
        return any(stored.vm_id == info.id for stored in self.ctx.store.challenge_vms())

    def observe(self, host: str, foreign: Iterable[VmInfo]) -> None:
        """One pass's foreign VMs on `host`: report those seen in its previous pass too."""
        current = {info.id: info.name for info in foreign}
        confirmed = self._suspects.get(host, set()) & current.keys()
        fresh = sorted(confirmed - self._confirmed.get(host, set()))
        for vm_id in fresh[:NAMED_AT_MOST]:
            self.ctx.log(
                "error",
                "conflict",
                f"VM {current[vm_id]} ({vm_id}) carries this validator's name prefix but this "
                "engine never created it: another validator with the same hotkey (another "
                "state dir) uses this VMM. Its VMs are left alone; run one validator per hotkey.",
                vm_id=vm_id,
            )
        if len(fresh) > NAMED_AT_MOST:
            self.ctx.log(
                "error", "conflict", f"{len(fresh) - NAMED_AT_MOST} more VMs of another validator"
            )
        self._suspects[host] = set(current)
        if confirmed != self._confirmed.get(host, set()):
            self._confirmed[host] = confirmed
            count = sum(len(ids) for ids in self._confirmed.values())
            header = self.ctx.state.header
            header.conflict = (
                f"another validator with this hotkey uses the VMM ({count} VMs not ours, "
                "left alone)"
                if count
                else ""
            )
            self.ctx.state.header_changed()
            if not count:
                self.ctx.log("info", "conflict", "no VMs of another validator are left")
