"""What crosses from the engine to a console: the header line's facts and the change feed's
unit, `StateDelta` (both sides build it: the engine's state and an attached console's replica).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from validator_tui.shared.records import (
    ChallengeRecord,
    ConnectionView,
    Counters,
    Event,
    HostRecord,
    JobRecord,
    QuotaUsage,
    Resources,
    VmRecord,
)

#: Seconds of one column of the throughput history (the header's sparkline).
THROUGHPUT_BUCKET_S = 10.0


@dataclass(slots=True)
class Header:
    """Everything the header line shows."""

    hotkey: str = ""
    platform: ConnectionView = field(default_factory=ConnectionView)
    vmm: ConnectionView = field(default_factory=ConnectionView)
    last_poll_at: float | None = None
    auto_claim: bool = True
    read_only: bool = False
    counters: Counters = field(default_factory=Counters)
    quota: QuotaUsage = field(default_factory=lambda: QuotaUsage(Resources(), Resources(), 0, 0, 0))
    #: Jobs completed per THROUGHPUT_BUCKET_S bucket, oldest first (the sparkline).
    throughput: tuple[int, ...] = ()
    #: Jobs failed per bucket, the same buckets.
    failures: tuple[int, ...] = ()
    #: Set while VMs of another validator with this hotkey are on the VMM (see engine/foreign).
    conflict: str = ""
    #: Why claims are paused (platform unreachable, VMM not answering, …); "" when they run.
    claims_paused: str = ""
    #: The latest slow request to the platform or the VMM; "" once requests are in time again.
    slow_request: str = ""
    #: Challenges without a CVM for lack of capacity; "" when every challenge has room.
    capacity_warning: str = ""
    #: The platform API answers its REST requests (presumed until one is answered).
    platform_up: bool = True
    #: Where Prometheus metrics are served ("" while they are off).
    metrics_url: str = ""

    def warnings(self) -> tuple[str, ...]:
        """The operator-facing warnings in force, most important first."""
        return tuple(
            text for text in (self.claims_paused, self.capacity_warning, self.slow_request) if text
        )


@dataclass(slots=True)
class StateDelta:
    """What changed between two versions. `full` means: replace everything you hold."""

    version: int
    full: bool
    jobs: list[JobRecord]
    removed_jobs: list[str]
    challenges: list[ChallengeRecord]
    removed_challenges: list[str]
    vms: list[VmRecord]
    removed_vms: list[str]
    events: list[Event]
    header: Header
    #: The dstack hosts of the pool (state, usage, VM count): those changed, or all when
    #: `full`. The pool is fixed for an engine's life: hosts are never removed.
    hosts: list[HostRecord] = field(default_factory=list)
