"""What a long-running engine keeps in memory: nothing grows once the job history is full.

Measured with tracemalloc (allocations still alive), not with time: each test fails if its
structure keeps something per job after the job is gone.
"""

from __future__ import annotations

import gc
import json
import tracemalloc
import uuid
from collections.abc import Callable, Iterator

import pytest

from validator_tui.control import frames
from validator_tui.engine.state import EngineState
from validator_tui.models.platform import PendingJobsResponse
from validator_tui.shared.records import JobRecord, JobState
from validator_tui.shared.versioned import MAX_TOMBSTONES


@pytest.fixture(autouse=True)
def traced() -> Iterator[None]:
    """Trace allocations for the whole test (what was set up before counts too: a structure
    that replaces old entries with new ones then shows no growth)."""
    tracemalloc.start()
    yield
    tracemalloc.stop()


def alive() -> int:
    """Bytes allocated since tracing started and still alive."""
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def retained_bytes(work: Callable[[], object]) -> int:
    """Bytes `work` left alive (its result dropped)."""
    before = alive()
    work()
    return alive() - before


def finish_jobs(state: EngineState, count: int) -> None:
    for _ in range(count):
        job = JobRecord(id=str(uuid.uuid4()), challenge_id="c", submission_id=str(uuid.uuid4()))
        state.put_job(job, "claimed")
        job.state = JobState.COMPLETED
        state.put_job(job, "result sent")


def test_the_change_feed_stops_growing_once_the_history_is_full() -> None:
    state = EngineState("hk", max_job_history=100)
    finish_jobs(state, MAX_TOMBSTONES + 200)  # history and removal log both full
    grown = retained_bytes(lambda: finish_jobs(state, 5000))
    # Each remembered removal costs ~180 bytes: 5,000 more would be ~0.9 MB.
    assert grown < 100_000, f"{grown} bytes kept for 5,000 jobs that are gone"
    assert len(state.jobs) == 100


def test_a_reader_further_behind_than_the_removal_log_gets_everything() -> None:
    state = EngineState("hk", max_job_history=10)
    finish_jobs(state, 20)
    behind = state.changes_since(0).version
    finish_jobs(state, 100)
    recent = state.changes_since(0).version
    finish_jobs(state, MAX_TOMBSTONES - 50)
    old_reader = state.changes_since(behind)
    assert old_reader.full and {j.id for j in old_reader.jobs} == set(state.jobs)
    new_reader = state.changes_since(recent)
    assert not new_reader.full and len(new_reader.removed_jobs) == MAX_TOMBSTONES - 50


def test_common_notes_are_shared_and_notes_naming_an_id_are_not_interned() -> None:
    state = EngineState("hk")
    first, second = JobRecord(id="a", challenge_id="c"), JobRecord(id="b", challenge_id="c")
    for job in (first, second):
        state.put_job(job, "".join(["result ", "sent"]))
        state.put_job(job, "".join(["VM ", "4f2a9c01", " created"]))
    assert first.timeline[0].text is second.timeline[0].text
    assert first.timeline[1].text is not second.timeline[1].text
    grown = retained_bytes(
        lambda: [state.put_job(JobRecord(id="x", challenge_id="c"), f"VM {uuid.uuid4()} created")]
    )
    assert grown < 20_000


def test_parsing_platform_answers_keeps_no_value_alive() -> None:
    def parse() -> None:
        for _ in range(3000):
            job = {"id": str(uuid.uuid4()), "challenge_id": "c", "submission_id": str(uuid.uuid4())}
            PendingJobsResponse.model_validate_json(json.dumps({"jobs": [job]}))

    grown = retained_bytes(parse)
    # pydantic's JSON string cache would keep 6,000 unique ids alive (~0.5 MB).
    assert grown < 50_000, f"{grown} bytes kept after parsing 3,000 answers"


def test_decoding_state_frames_keeps_no_value_alive() -> None:
    state = EngineState("hk")
    finish_jobs(state, 2000)
    snapshot = state.changes_since(0)
    lines = list(frames.state_frames(snapshot, snapshot=True))
    del state, snapshot

    def decode() -> None:
        decoded = [frames.decode_server(line) for line in lines]
        assert sum(len(frame.jobs) for frame in decoded if isinstance(frame, frames.StateFrame))

    grown = retained_bytes(decode)
    assert grown < 50_000, f"{grown} bytes kept after decoding {len(lines)} frames"
