"""`JobManager.set_state`, the one place a job's state is set: each move writes the job's row
(the state `store.stored_state` maps it to), stamps the record and publishes it; a move the
state machine does not have raises and changes nothing (an engine built, never run)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.identities import ALICE
from validator_tui.config import ValidatorConfig
from validator_tui.engine.store import StoredState, StoreError
from validator_tui.engine.validator import Validator
from validator_tui.shared.records import IllegalTransition, JobRecord, JobState


@pytest.fixture
async def validator(tmp_path: Path) -> AsyncIterator[Validator]:
    config = ValidatorConfig(
        validator_hotkey=ALICE,
        platform_api_url="http://127.0.0.1:9",
        dstack_vmm_url="http://127.0.0.1:9",
        state_dir=str(tmp_path),
    )
    validator = Validator(config)
    try:
        yield validator
    finally:
        await validator.ctx.tasks.cancel_all(5.0)
        await validator.close()


def row_state(validator: Validator, job_id: str) -> StoredState | None:
    """The state of the job's row while it is in flight (None once it is not)."""
    rows = {stored.id: stored.state for stored in validator.ctx.store.in_flight_jobs()}
    return rows.get(job_id)


def pending(validator: Validator) -> JobRecord:
    record = JobRecord(id="job-1", challenge_id="chal-a", submission_id="sub-1")
    validator.state.put_job(record, "seen pending")
    return record


async def test_each_move_writes_its_row_stamps_and_publishes(validator: Validator) -> None:
    jobs, store = validator.jobs, validator.ctx.store
    record = pending(validator)
    jobs.set_state(record, JobState.CLAIMED, "claim answer lost", settled=False)
    assert row_state(validator, "job-1") is StoredState.CLAIMING
    assert record.claimed_at is None
    jobs.set_state(record, JobState.CLAIMED, "claimed")
    assert row_state(validator, "job-1") is StoredState.CLAIMED
    assert record.claimed_at is not None
    jobs.set_state(record, JobState.PROVISIONING, "creating VM", vm_name="vt-job-1")
    assert store.knows_vm_name("vt-job-1")
    jobs.set_state(record, JobState.RUNNING, "evaluating")
    assert row_state(validator, "job-1") is StoredState.RUNNING
    jobs.set_state(record, JobState.SUBMITTING, "result queued", body=b'{"score": 1}')
    assert store.result_body("job-1") == b'{"score": 1}'
    assert row_state(validator, "job-1") is None  # submitting: no longer in flight
    before = validator.state.version
    jobs.set_state(record, JobState.COMPLETED, "result sent")
    assert validator.state.version > before
    assert record.finished_at is not None
    notes = [entry.text for entry in validator.state.jobs["job-1"].timeline]
    assert notes == [
        "seen pending",
        "claim answer lost",
        "claimed",
        "creating VM",
        "evaluating",
        "result queued",
        "result sent",
    ]


async def test_a_move_the_machine_lacks_raises_and_changes_nothing(validator: Validator) -> None:
    record = pending(validator)
    version = validator.state.version
    with pytest.raises(IllegalTransition, match="from pending to running"):
        validator.jobs.set_state(record, JobState.RUNNING, "evaluating")
    assert record.state is JobState.PENDING
    assert validator.state.version == version
    assert row_state(validator, "job-1") is None
    assert [entry.text for entry in record.timeline] == ["seen pending"]


async def test_a_vm_name_not_committed_raises_and_leaves_the_job_claimed(
    validator: Validator,
) -> None:
    record = pending(validator)
    validator.jobs.set_state(record, JobState.CLAIMED, "claimed")
    validator.ctx.store.close()
    with pytest.raises(StoreError):
        validator.jobs.set_state(record, JobState.PROVISIONING, "creating VM", vm_name="vt-j")
    assert record.state is JobState.CLAIMED
    assert validator.jobs.claims_allowed
    assert record.timeline[-1].text == "claimed"


async def test_an_active_row_not_written_suspends_claims_and_the_move_still_happens(
    validator: Validator,
) -> None:
    record = pending(validator)
    validator.ctx.store.close()
    validator.jobs.set_state(record, JobState.CLAIMED, "claimed")
    assert record.state is JobState.CLAIMED
    assert not validator.jobs.claims_allowed
