"""`Resources`: an amount of host resources, the one shape in which the quota, the VM specs
and every message about capacity speak of them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class Resources:
    """An amount of host resources (memory and disk in MB)."""

    vcpu: int = 0
    memory_mb: int = 0
    disk_mb: int = 0
    gpu: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            self.vcpu + other.vcpu,
            self.memory_mb + other.memory_mb,
            self.disk_mb + other.disk_mb,
            self.gpu + other.gpu,
        )

    def __sub__(self, other: Resources) -> Resources:
        return self + other.times(-1)

    def times(self, count: int) -> Resources:
        """`count` times this amount."""
        return Resources(
            self.vcpu * count, self.memory_mb * count, self.disk_mb * count, self.gpu * count
        )

    def fits_in(self, total: Resources) -> bool:
        """True when no resource of this amount exceeds `total`'s."""
        return (
            self.vcpu <= total.vcpu
            and self.memory_mb <= total.memory_mb
            and self.disk_mb <= total.disk_mb
            and self.gpu <= total.gpu
        )

    def shortfall(self, free: Resources) -> str:
        """What of this amount does not fit in `free`: `4 vCPU, 0 free; 4 GB RAM, 2 GB free`
        ("" when it all fits)."""
        parts = [
            f"needs {need}, {have} free"
            for need, have, short in (
                (f"{self.vcpu} vCPU", f"{max(0, free.vcpu)}", self.vcpu > free.vcpu),
                (
                    f"{_size(self.memory_mb)} RAM",
                    _size(max(0, free.memory_mb)),
                    self.memory_mb > free.memory_mb,
                ),
                (
                    f"{_size(self.disk_mb)} disk",
                    _size(max(0, free.disk_mb)),
                    self.disk_mb > free.disk_mb,
                ),
                (f"{self.gpu} GPU", f"{max(0, free.gpu)}", self.gpu > free.gpu),
            )
            if short
        ]
        return "; ".join(parts)

    def __str__(self) -> str:
        """`4 vCPU, 4 GB RAM, 50 GB disk` (GPUs when there are any): for messages and toasts."""
        parts = [f"{self.vcpu} vCPU", f"{_size(self.memory_mb)} RAM", f"{_size(self.disk_mb)} disk"]
        if self.gpu:
            parts.append(f"{self.gpu} GPU")
        return ", ".join(parts)


def _size(megabytes: int) -> str:
    """`512 MB`, `4 GB`, `1.5 GB`: a size given in MB, in the largest unit that reads well."""
    if megabytes < 1024:
        return f"{megabytes} MB"
    return f"{megabytes / 1024:.1f}".removesuffix(".0") + " GB"
