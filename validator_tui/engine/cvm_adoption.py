"""Adopting the challenge CVMs found at start-up: the first sync of the active list takes over
one running CVM per challenge whose compose matches (on whichever host) and removes the others."""

from __future__ import annotations

from validator_tui.engine.challenge_book import KIND, ChallengeBook, ChallengeRuntime, ChallengeVm
from validator_tui.engine.compose import ComposeError
from validator_tui.engine.cvm_removal import CvmRemoval
from validator_tui.engine.hosts import Host
from validator_tui.engine.quota import CapacityError
from validator_tui.models.vmm import VmInfo
from validator_tui.shared.records import ChallengeState


class CvmAdoption:
    """The CVMs found at start-up, by challenge, until the first sync adopts or removes them."""

    def __init__(self, book: ChallengeBook, removal: CvmRemoval) -> None:
        self.book = book
        self.ctx = book.ctx
        self._removal = removal
        self._adoptable: dict[str, list[tuple[Host, VmInfo]]] = {}

    def offer_existing(self, host: Host, vms: list[VmInfo]) -> None:
        """Challenge CVMs found on `host` at start-up; the first sync adopts (one per challenge,
        on whichever host) or removes them."""
        for info in vms:
            challenge_id = self._challenge_of_vm(info)
            self._adoptable.setdefault(challenge_id, []).append((host, info))

    @property
    def pending(self) -> bool:
        """Whether CVMs found at start-up still wait for the first sync to adopt or remove
        them (their ports and resources are not held by the quota until then)."""
        return bool(self._adoptable)

    def _challenge_of_vm(self, info: VmInfo) -> str:
        for stored in self.ctx.store.challenge_vms():
            if stored.vm_id == info.id:
                return stored.challenge_id
        return self.ctx.naming.challenge_of(info.name)

    async def adopt(self, runtime: ChallengeRuntime) -> bool:
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
                        self.book.vm_resources(),
                        owner=f"challenge {spec.id}",
                        port=port,
                        kind=KIND,
                        gpu_slots=_gpu_slots(info),
                    )
                    compose = await self.book.compose(spec)
                except (CapacityError, ComposeError) as exc:
                    self.ctx.log("warn", "adopt", f"{spec.name}: cannot adopt CVM {info.id}: {exc}")
                else:
                    runtime.vm = ChallengeVm(info.id, spec.compose_hash, allocation)
                    runtime.compose = compose
                    self.book.record_vm(runtime, info.id, port, info.status, info.boot_progress)
                    self.book.set(spec.id, ChallengeState.ACTIVE, reason="adopted after restart")
                    self.ctx.log(
                        "info",
                        "adopt",
                        f"{spec.name}: adopted CVM {info.id}{self.book.on(host)}",
                        challenge_id=spec.id,
                    )
                    adopted = True
                    runtime.waiting = host.draining
                    runtime.moving_off = host.name if host.draining else None
                    continue
            await self._removal.remove_vm_id(host, info.id, f"stale CVM of challenge {spec.id}")
        return adopted

    def _room_for_adoption(self, host: Host) -> bool:
        """Whether one more CVM on `host` leaves room for the reserved job VMs there."""
        config = self.ctx.config
        reserve = config.job_vm.resources.times(config.engine.reserve_job_vms)
        held = host.quota.used_by(KIND)
        return host.quota.fits_beside(held + reserve, self.book.vm_resources())

    async def remove_leftovers(self) -> None:
        """The first sync is done: remove the CVMs found of challenges that are not active."""
        for leftovers in self._adoptable.values():
            for host, info in leftovers:
                await self._removal.remove_vm_id(
                    host, info.id, "CVM of a challenge that is not active"
                )
        self._adoptable.clear()


def _host_port(info: VmInfo) -> int | None:
    if info.configuration and info.configuration.ports:
        return info.configuration.ports[0].host_port
    return None


def _gpu_slots(info: VmInfo) -> tuple[str, ...]:
    """The GPU slots a VM was created with (none when its configuration lists none)."""
    gpus = info.configuration.gpus if info.configuration else None
    return tuple(gpu.slot for gpu in gpus.gpus) if gpus else ()
