"""EngineState: versioned change feed, bounded history and events."""

from validator_tui.engine.state import THROUGHPUT_BUCKETS, EngineState
from validator_tui.shared.records import JobRecord, JobState


def test_changes_since_returns_only_changed_copies():
    state = EngineState("hk")
    state.put_job(JobRecord(id="a", challenge_id="c"))
    state.put_job(JobRecord(id="b", challenge_id="c"))
    first = state.changes_since(0)
    assert first.full and {j.id for j in first.jobs} == {"a", "b"}
    job = state.jobs["a"]
    job.state = JobState.RUNNING
    state.put_job(job, "running")
    delta = state.changes_since(first.version)
    assert not delta.full
    assert [j.id for j in delta.jobs] == ["a"]
    assert delta.jobs[0] is not job
    assert delta.jobs[0].state is JobState.RUNNING
    assert state.changes_since(delta.version).jobs == []


def test_removed_jobs_reported():
    state = EngineState("hk")
    state.put_job(JobRecord(id="a", challenge_id="c"))
    version = state.changes_since(0).version
    state.drop_job("a")
    delta = state.changes_since(version)
    assert delta.removed_jobs == ["a"] and delta.jobs == []


def test_finished_history_is_bounded():
    state = EngineState("hk", max_job_history=100)
    for i in range(1000):
        job = JobRecord(id=f"j{i}", challenge_id="c", state=JobState.COMPLETED)
        state.put_job(job)
    assert len(state.jobs) == 100
    assert "j999" in state.jobs and "j0" not in state.jobs


def test_events_bounded_and_incremental():
    state = EngineState("hk", max_events=50)
    for i in range(200):
        state.event("info", "test", f"event {i}")
    assert len(state.events) == 50
    delta = state.changes_since(0, event_seq=195)
    assert [e.message for e in delta.events] == [f"event {i}" for i in range(195, 200)]


def test_timeline_bounded():
    state = EngineState("hk")
    job = JobRecord(id="a", challenge_id="c")
    for i in range(500):
        state.put_job(job, f"note {i}")
    assert len(job.timeline) <= 50
    assert job.timeline[-1].text == "note 499"


def test_old_finished_jobs_keep_no_logs():
    state = EngineState("hk", max_job_history=1000)
    for i in range(300):
        job = JobRecord(id=f"j{i}", challenge_id="c", logs=["x" * 100] * 50, metrics={"a": 1})
        for n in range(10):
            state.put_job(job, f"step {n}")
        job.state = JobState.COMPLETED
        job.score = 0.5
        state.put_job(job, "done")
    old, recent = state.jobs["j0"], state.jobs["j299"]
    assert old.logs == [] and old.metrics == {} and len(old.timeline) <= 4
    assert old.score == 0.5 and old.timeline[-1].text == "done"
    assert len(recent.logs) == 50 and len(recent.timeline) == 11


def test_the_throughput_history_counts_completed_and_failed_jobs_per_bucket():
    state = EngineState("hk")
    start = 1_000_000.0
    for offset, outcome in (
        (0, JobState.COMPLETED),
        (1, JobState.COMPLETED),
        (2, JobState.FAILED),
        (12, JobState.FAILED),
        (13, JobState.CANCELLED),
        (14, JobState.LOST),
    ):
        state.count_finish(outcome, now=start + offset)
    completed, failed = state.throughput(now=start + 15)
    assert len(completed) == len(failed) == THROUGHPUT_BUCKETS
    assert completed[-2:] == (2, 0) and failed[-2:] == (1, 1)
    assert sum(completed) == 2 and sum(failed) == 2
