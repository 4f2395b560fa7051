"""CVMQuotaManager: exact accounting of host resources held by VMs.

Every challenge CVM and job VM holds vcpu, memory, disk, GPUs and one host port from the pool
from the moment it is planned until it is destroyed. An `Allocation` is released exactly
once: a second `release` of the same allocation is a no-op, so no path can make usage drift.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from validator_tui.config import HostPorts, ResourceLimits
from validator_tui.engine.records import QuotaUsage, Resources


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


class CVMQuotaManager:
    """Tracks what the host has given to VMs against `ResourceLimits` and the port pool."""

    def __init__(self, limits: ResourceLimits, ports: HostPorts) -> None:
        self.total = limits.total
        self._pool_start = ports.start
        self._pool_size = ports.size
        self._free_ports = set(range(ports.start, ports.end + 1))
        self._next_port = ports.start
        self._live: dict[int, Allocation] = {}
        self._ids = itertools.count(1)
        self._used = Resources()

    def check_capacity(self, resources: Resources, *, need_port: bool = True) -> bool:
        """True when `resources` (and a host port, if asked) fit in what is left."""
        return (self._used + resources).fits_in(self.total) and (
            not need_port or bool(self._free_ports)
        )

    def allocate(
        self,
        resources: Resources,
        *,
        owner: str,
        need_port: bool = True,
        port: int | None = None,
        kind: str = "job",
    ) -> Allocation:
        """Reserve `resources` and a port (a specific one when `port` is given, e.g. on adoption);
        `kind` ("job" or "challenge") is what `used_by` sums over.

        Raises `CapacityError` without changing anything when they do not fit.
        """
        if not self.check_capacity(resources, need_port=False):
            short = resources.shortfall(self.total - self._used)
            raise CapacityError(f"not enough capacity for {owner}: {short}")
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
        allocation = Allocation(next(self._ids), owner, resources, chosen, kind)
        self._live[allocation.id] = allocation
        self._used += resources
        return allocation

    def _take_port(self) -> int | None:
        """The next free port after the last one handed out (round robin, avoids quick reuse)."""
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
        """Give the resources back. Returns False (and changes nothing) if already released."""
        if self._live.pop(allocation.id, None) is None:
            return False
        self._used -= allocation.resources
        if allocation.port is not None:
            self._free_ports.add(allocation.port)
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
