"""Per-challenge numbers over the last hour (the CVM details show them)."""

from __future__ import annotations

import pytest

from validator_tui.engine.challenge_stats import WINDOW_S, ChallengeStatsBook
from validator_tui.shared.records import ChallengeStats, JobRecord, JobState
from validator_tui.tui.screens.challenge_details import stats_text


def job(state: JobState, score: float | None, ms: int, challenge: str = "alpha") -> JobRecord:
    return JobRecord(
        id=f"{state}-{ms}", challenge_id=challenge, state=state, score=score, execution_time_ms=ms
    )


def test_the_last_hour_of_completed_and_failed_jobs_is_summed_up() -> None:
    book = ChallengeStatsBook()
    now = 100_000.0
    assert book.record(job(JobState.COMPLETED, 0.9, 4000), now - WINDOW_S - 1)  # too old
    for ms, score in ((1000, 0.2), (2000, 0.4), (3000, 0.6)):
        assert book.record(job(JobState.COMPLETED, score, ms), now - 10)
    assert book.record(job(JobState.FAILED, 0.0, 9000), now - 5)
    assert not book.record(job(JobState.CANCELLED, None, 500), now)
    assert not book.record(job(JobState.LOST, None, 500), now)
    book.record(job(JobState.COMPLETED, 1.0, 10, challenge="beta"), now)
    stats = book.summary("alpha", now)
    assert (stats.completed, stats.failed, stats.p50_ms, stats.p95_ms) == (3, 1, 2000, 9000)
    assert stats.mean_score == pytest.approx(0.4)
    assert stats.success_rate == 0.75
    assert book.summary("nobody", now) == ChallengeStats()


def test_the_details_line_says_what_each_number_is() -> None:
    stats = ChallengeStats(completed=3, failed=1, mean_score=0.4, p50_ms=2000, p95_ms=90_000)
    assert stats_text(stats).plain == (
        "3 done · 1 failed · 75% success · mean score 0.400 · p50 2.0s · p95 1m30s"
    )
    assert stats_text(ChallengeStats()).plain == "no job finished in the last hour"
