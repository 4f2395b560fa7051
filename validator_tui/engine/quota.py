"""CVMQuotaManager: exact accounting of one host's resources held by VMs.

Every challenge CVM and job VM holds vcpu, memory, disk, GPUs (concrete slots, as the host's
VMM lists them) and one host port from the pool from the moment it is planned until it is
destroyed. An `Allocation` is released exactly once: a second `release` of the same
allocation is a no-op, so no path can make usage drift.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from validator_tui.config import HostPorts, ResourceLimits
from validator_tui.shared.records import QuotaUsage, Resources


class CapacityError(Exception):
    """An allocation that does not fit in what is left."""


@dataclass(frozen=True, slots=True)
class Allocation:
    """A handle on resources held by one VM; give it back to `release`."""

    id: int
    owner: str
    resources: Resources
    port: int | None
    kind: str = "job"
    #: The host whose quota holds it.
    host: str = "default"
    #: The GPU slots it holds (as the host's VMM names them: `18:00.0`).
    gpu_slots: tuple[str, ...] = ()


class CVMQuotaManager:
    """Tracks what one host has given to VMs against `ResourceLimits`, the port pool and the
    host's GPU slots."""

    def __init__(
        self,
        limits: ResourceLimits,
        ports: HostPorts,
        *,
        host: str = "default",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host
        self._clock = clock
        self.total = limits.total
        self._pool_start = ports.start
        self._pool_size = ports.size
        self._free_ports = set(range(ports.start, ports.end + 1))
        self._next_port = ports.start
        #: Ports another program holds, handed to no VM until the time given (see `set_aside`).
        self._aside: dict[int, float] = {}
        self._live: dict[int, Allocation] = {}
        self._ids = itertools.count(1)
        self._used = Resources()
        #: The host's GPU slots in listing order (None until its VMM listed them).
        self._gpu_slots: tuple[str, ...] | None = None
        #: Slots attached to VMs that are not ours (from the last listing).
        self._busy_slots: frozenset[str] = frozenset()
        self._held_slots: set[str] = set()

    @property
    def gpu_slots(self) -> tuple[str, ...] | None:
        """The host's GPU slots as last listed (None: not listed yet)."""
        return self._gpu_slots

    def set_gpus(self, slots: Sequence[str], busy: Iterable[str]) -> None:
        """The host's GPUs as its VMM lists them (`ListGpus`); `busy` are slots attached to a
        running VM. Those we hold are ours; the other busy ones are never handed out."""
        self._gpu_slots = tuple(slots)
        self._busy_slots = frozenset(busy) - self._held_slots

    def limit_gpus(self, count: int) -> None:
        """Hand out at most `count` GPUs (the host has fewer than its `gpu_count`)."""
        self.total = replace(self.total, gpu=min(self.total.gpu, count))

    def _free_slots(self) -> list[str]:
        slots = self._gpu_slots or ()
        return [s for s in slots if s not in self._held_slots and s not in self._busy_slots]

    def check_capacity(self, resources: Resources, *, need_port: bool = True) -> bool:
        """True when `resources` (and a host port, if asked) fit in what is left."""
        self._reclaim_ports()
        return (
            (self._used + resources).fits_in(self.total)
            and (not need_port or bool(self._free_ports))
            and (resources.gpu == 0 or len(self._free_slots()) >= resources.gpu)
        )

    def free_share(self, resources: Resources) -> float:
        """What would be left free after placing `resources` (and a port), as the smallest
        share of any resource this host has: 1.0 empty, 0.0 full (placement ranks by it)."""
        free = self.total - self._used - resources
        total = self.total
        shares = [
            free.vcpu / total.vcpu,
            free.memory_mb / total.memory_mb,
            free.disk_mb / total.disk_mb,
            (len(self._free_ports) - 1) / self._pool_size,
        ]
        if total.gpu:
            shares.append(free.gpu / total.gpu)
        return min(shares)

    def allocate(
        self,
        resources: Resources,
        *,
        owner: str,
        need_port: bool = True,
        port: int | None = None,
        kind: str = "job",
        gpu_slots: Sequence[str] | None = None,
    ) -> Allocation:
        """Reserve `resources`, a port and `resources.gpu` GPU slots (a specific port and slots
        when given, e.g. on adoption); `kind` ("job" or "challenge") is what `used_by` sums
        over.

        Raises `CapacityError` without changing anything when they do not fit.
        """
        if not (self._used + resources).fits_in(self.total):
            short = resources.shortfall(self.total - self._used)
            raise CapacityError(f"not enough capacity for {owner}: {short}")
        slots = self._pick_slots(resources.gpu, gpu_slots, owner)
        chosen: int | None = None
        if port is not None:
            if port in self._free_ports:
                chosen = port
            elif need_port:
                raise CapacityError(f"host port {port} is not free for {owner}")
        elif need_port:
            chosen = self._take_port()
            if chosen is None:
                raise CapacityError(f"no free host port for {owner}")
        if chosen is not None:
            self._free_ports.discard(chosen)
        allocation = Allocation(next(self._ids), owner, resources, chosen, kind, self.host, slots)
        self._live[allocation.id] = allocation
        self._used += resources
        self._held_slots.update(slots)
        return allocation

    def _pick_slots(self, count: int, wanted: Sequence[str] | None, owner: str) -> tuple[str, ...]:
        """`count` free GPU slots (or exactly `wanted`, when not held already)."""
        if wanted is not None:
            taken = [slot for slot in wanted if slot in self._held_slots]
            if taken:
                raise CapacityError(f"GPU slot {taken[0]} is already held, not free for {owner}")
            return tuple(wanted)
        if count == 0:
            return ()
        if self._gpu_slots is None:
            raise CapacityError(f"the GPUs of host {self.host} are not listed yet ({owner})")
        free = self._free_slots()
        if len(free) < count:
            raise CapacityError(
                f"no free GPU slot on host {self.host} for {owner}: needs {count}, {len(free)} free"
            )
        return tuple(free[:count])

    def set_aside(self, port: int, seconds: float) -> None:
        """`port` is held by another program: hand it to no VM for `seconds` (a VM holding it
        now gives it back to the set-aside ports, not to the free ones)."""
        self._aside[port] = self._clock() + seconds
        self._free_ports.discard(port)

    @property
    def ports_set_aside(self) -> int:
        """How many ports are set aside now."""
        self._reclaim_ports()
        return len(self._aside)

    def _reclaim_ports(self) -> None:
        """Ports whose time aside is over are free again (unless a VM holds one)."""
        if not self._aside:
            return
        now = self._clock()
        held = {allocation.port for allocation in self._live.values()}
        for port, until in list(self._aside.items()):
            if until <= now:
                del self._aside[port]
                if port not in held:
                    self._free_ports.add(port)

    def replace_port(self, allocation: Allocation) -> Allocation:
        """The same allocation with another free host port: its handle from now on (its old
        port is not given back; set it aside first if another program holds it). Raises
        `CapacityError` when no other port is free."""
        live = self._live.get(allocation.id)
        if live is None:
            raise CapacityError(f"{allocation.owner} holds nothing on host {self.host}")
        port = self._take_port()
        if port is None:
            raise CapacityError(f"no other free host port for {allocation.owner}")
        self._free_ports.discard(port)
        if live.port is not None and live.port not in self._aside:
            self._free_ports.add(live.port)
        moved = replace(live, port=port)
        self._live[allocation.id] = moved
        return moved

    def _take_port(self) -> int | None:
        """The next free port after the last one handed out (round robin, avoids quick reuse)."""
        self._reclaim_ports()
        if not self._free_ports:
            return None
        for offset in range(self._pool_size):
            candidate = self._pool_start + (self._next_port - self._pool_start + offset) % (
                self._pool_size
            )
            if candidate in self._free_ports:
                self._next_port = candidate + 1
                return candidate
        return None

    def release(self, allocation: Allocation) -> bool:
        """Give the resources back (by the allocation's id: a handle from before
        `replace_port` releases the same). Returns False (and changes nothing) if already
        released."""
        live = self._live.pop(allocation.id, None)
        if live is None:
            return False
        self._used -= live.resources
        self._held_slots.difference_update(live.gpu_slots)
        if live.port is not None and live.port not in self._aside:
            self._free_ports.add(live.port)
        return True

    def used_by(self, kind: str) -> Resources:
        """What the live allocations of one kind hold."""
        total = Resources()
        for allocation in self._live.values():
            if allocation.kind == kind:
                total += allocation.resources
        return total

    def fits_beside(self, held: Resources, extra: Resources) -> bool:
        """True when `held` plus `extra` fit in the totals (whatever else is allocated now)."""
        return (held + extra).fits_in(self.total)

    def get_usage(self) -> QuotaUsage:
        """Used and total of every resource, and the number of live allocations."""
        return QuotaUsage(
            used=self._used,
            total=self.total,
            ports_used=self._pool_size - len(self._free_ports),
            ports_total=self._pool_size,
            allocations=len(self._live),
        )

    def holds(self, allocation: Allocation) -> bool:
        """True while `allocation` is live here."""
        return self._live.get(allocation.id) is allocation
