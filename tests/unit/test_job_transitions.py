"""The job state machine (records.JOB_TRANSITIONS, JobRecord.enter) and the row state each
job state is stored as (store.stored_state)."""

from __future__ import annotations

import itertools

import pytest

from validator_tui.engine.store import StoredState, stored_state
from validator_tui.shared.records import (
    JOB_TRANSITIONS,
    IllegalTransition,
    JobRecord,
    JobState,
)

#: In enum order (not the sets' order, which differs between processes: xdist collects alike).
MOVES = list(itertools.product(JobState, JobState))
ALLOWED = [(a, b) for a, b in MOVES if b in JOB_TRANSITIONS[a]]
REFUSED = [(a, b) for a, b in MOVES if b not in JOB_TRANSITIONS[a]]
#: Moves the engine makes today, each a path the engine tests take.
ENGINE_PATHS = [
    (JobState.PENDING, JobState.CLAIMED),  # claim won, or its answer lost
    (JobState.PENDING, JobState.LOST),  # another validator won it
    (JobState.PENDING, JobState.CANCELLED),  # cancelled by the platform while pending
    (JobState.CLAIMED, JobState.PENDING),  # unsure claim settled: not ours
    (JobState.CLAIMED, JobState.CLAIMED),  # unsure claim settled: ours, run it
    (JobState.CLAIMED, JobState.PROVISIONING),
    (JobState.CLAIMED, JobState.SUBMITTING),  # ended early, no VM
    (JobState.CLAIMED, JobState.CANCELLED),
    (JobState.PROVISIONING, JobState.RUNNING),
    (JobState.PROVISIONING, JobState.SUBMITTING),
    (JobState.PROVISIONING, JobState.CANCELLED),
    (JobState.RUNNING, JobState.SUBMITTING),
    (JobState.RUNNING, JobState.CANCELLED),
    (JobState.SUBMITTING, JobState.COMPLETED),
    (JobState.SUBMITTING, JobState.FAILED),
    (JobState.SUBMITTING, JobState.CANCELLED),
    (JobState.SUBMITTING, JobState.LOST),
    (JobState.FAILED, JobState.COMPLETED),  # a dead letter sent again
]


def _job(state: JobState) -> JobRecord:
    return JobRecord(id="j", challenge_id="c", state=state, created_at=100.0)


def test_every_state_has_its_moves_listed() -> None:
    assert set(JOB_TRANSITIONS) == set(JobState)
    assert set(ENGINE_PATHS) <= set(ALLOWED)


@pytest.mark.parametrize(("before", "after"), ALLOWED)
def test_every_allowed_move_works(before: JobState, after: JobState) -> None:
    job = _job(before)
    job.enter(after)
    assert job.state is after


@pytest.mark.parametrize(("before", "after"), REFUSED)
def test_every_other_move_raises_and_changes_nothing(before: JobState, after: JobState) -> None:
    job = _job(before)
    with pytest.raises(IllegalTransition, match=f"from {before.value} to {after.value}"):
        job.enter(after)
    assert job.state is before
    assert (job.claimed_at, job.finished_at) == (None, None)


def test_finished_jobs_other_than_failed_never_move() -> None:
    for state in (JobState.COMPLETED, JobState.CANCELLED, JobState.LOST):
        assert JOB_TRANSITIONS[state] == frozenset()


def test_a_claim_stamps_claimed_at_unless_unsettled_and_pending_clears_it() -> None:
    job = _job(JobState.PENDING)
    job.enter(JobState.CLAIMED, settled=False)
    assert job.claimed_at is None
    job.enter(JobState.CLAIMED)
    assert job.claimed_at is not None and job.claimed_at >= job.created_at
    job.enter(JobState.PENDING)
    assert job.claimed_at is None


def test_an_end_stamps_finished_at() -> None:
    job = _job(JobState.RUNNING)
    job.enter(JobState.SUBMITTING)
    assert job.finished_at is None
    job.enter(JobState.COMPLETED)
    assert job.finished_at is not None and job.finished_at >= job.created_at


def test_stored_state_is_the_job_state_but_an_unsettled_claim_stays_claiming() -> None:
    for state in JobState:
        assert stored_state(state) == StoredState(state.value)
    assert stored_state(JobState.CLAIMED, settled=False) is StoredState.CLAIMING
    assert stored_state(JobState.RUNNING, settled=False) is StoredState.RUNNING
