"""The order and pacing of claims: a challenge's queue of pending jobs, the token bucket
that paces re-tries of lost claims, a lost claim's backoff, a claim whose answer was lost, and
what a cancel does to a claim under way (engine/claims)."""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field
from enum import StrEnum

from validator_tui.engine.quota import Allocation
from validator_tui.shared.records import JobRecord

CLAIM_RETRY_S = 5.0
#: A lost claim's backoff doubles at each further loss up to this many times the first one.
LOST_BACKOFF_MAX_FACTOR = 32
#: Claim tiers, first claimed first: announced (`new_job`), first seen listed, lost before.
ANNOUNCED, LISTED, RETRY = 0, 1, 2
#: Re-tries of lost claims start at most this many claims a second (each is an HTTP request:
#: thousands of leftovers must not take the engine's core).
RETRIES_PER_S = 20.0
RETRIES_PACED = f"re-try of a lost claim: at most {RETRIES_PER_S:g} such claims a second"


@dataclass(slots=True)
class Queue:
    """One challenge's pending jobs that only what holds every job of the challenge keeps
    waiting (auto-claim, a pause, its CVM, capacity), in claim order (tier, then arrival);
    `shown` is the waiting reason all of them show."""

    heap: list[tuple[int, int, str]] = field(default_factory=list)
    members: dict[str, tuple[int, int]] = field(default_factory=dict)
    shown: str = ""

    def add(self, job_id: str, tier: int, seq: int) -> None:
        self.members[job_id] = (tier, seq)
        heapq.heappush(self.heap, (tier, seq, job_id))

    def discard(self, job_id: str) -> None:
        """Forget `job_id` (its heap entry goes when it reaches the head, or at a rebuild)."""
        if (
            self.members.pop(job_id, None) is not None
            and len(self.heap) > 2 * len(self.members) + 64
        ):
            self.heap = [(tier, seq, job) for job, (tier, seq) in self.members.items()]
            heapq.heapify(self.heap)

    def head(self) -> str | None:
        """The job this queue would claim first, if any."""
        heap = self.heap
        while heap and self.members.get(heap[0][2]) != heap[0][:2]:
            heapq.heappop(heap)
        return heap[0][2] if heap else None


@dataclass(slots=True)
class Pace:
    """A token bucket: at most `rate` spends a second, bursts of at most `rate`."""

    rate: float
    tokens: float = 0.0
    at: float = 0.0

    def ready(self) -> bool:
        """Whether a spend is allowed now (refilling the bucket for the time passed)."""
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        return self.tokens >= 1.0

    def spend(self) -> None:
        self.tokens -= 1.0


@dataclass(slots=True)
class Lost:
    """Claims of a job that answered 404/409/410: how many, and when it may be claimed again."""

    losses: int
    due: float
    due_wall: float
    status: int


@dataclass(slots=True)
class Unsure:
    """A claim whose answer was lost, waiting for a poll to say whether the job is ours."""

    record: JobRecord
    allocation: Allocation | None
    since: float
    recovered: bool = False


class ClaimCancel(StrEnum):
    """What a cancel did to a job whose claim is under way."""

    #: The claim request is out: the job ends when it is answered.
    NOTED = "noted"
    #: The claim's answer was lost: the job ended now.
    ENDED = "ended"
