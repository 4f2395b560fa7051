"""Per-challenge numbers over the last hour: jobs done and failed, success rate, mean score,
p50/p95 execution time. Fed with every job that finishes with a result; bounded."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from validator_tui.shared.records import ChallengeStats, JobRecord, JobState

#: The window the numbers cover.
WINDOW_S = 3600.0
#: Finished jobs remembered per challenge (an hour at 8 jobs/s; older ones fall out first).
MAX_SAMPLES = 30_000


@dataclass(frozen=True, slots=True)
class _Sample:
    at: float
    completed: bool
    score: float | None
    execution_ms: int | None


class ChallengeStatsBook:
    """The last hour of finished jobs of each challenge, and their summary."""

    def __init__(self) -> None:
        self._samples: dict[str, deque[_Sample]] = {}

    def record(self, job: JobRecord, now: float | None = None) -> bool:
        """Count `job` if it completed or failed (cancelled and lost jobs say nothing about the
        challenge); True when it was counted."""
        if job.state not in (JobState.COMPLETED, JobState.FAILED):
            return False
        samples = self._samples.setdefault(job.challenge_id, deque(maxlen=MAX_SAMPLES))
        at = time.time() if now is None else now
        completed = job.state is JobState.COMPLETED
        samples.append(
            _Sample(at, completed, job.score if completed else None, job.execution_time_ms)
        )
        return True

    def forget(self, challenge_id: str) -> None:
        """The challenge left the active list."""
        self._samples.pop(challenge_id, None)

    def summary(self, challenge_id: str, now: float | None = None) -> ChallengeStats:
        """The numbers of `challenge_id` over the last WINDOW_S seconds."""
        samples = self._samples.get(challenge_id)
        if not samples:
            return ChallengeStats()
        since = (time.time() if now is None else now) - WINDOW_S
        while samples and samples[0].at < since:
            samples.popleft()
        done = [s for s in samples if s.completed]
        failed = len(samples) - len(done)
        scores = [s.score for s in done if s.score is not None]
        times = sorted(s.execution_ms for s in samples if s.execution_ms is not None)
        return ChallengeStats(
            completed=len(done),
            failed=failed,
            mean_score=sum(scores) / len(scores) if scores else None,
            p50_ms=_percentile(times, 0.50),
            p95_ms=_percentile(times, 0.95),
        )


def _percentile(ordered: list[int], share: float) -> int | None:
    """The nearest-rank percentile of an ordered list (None when it is empty)."""
    if not ordered:
        return None
    rank = max(1, -(-len(ordered) * share // 1))
    return ordered[int(rank) - 1]
