"""EngineMetrics counts claims and finished jobs from the job records the state is given, and
forgets pending jobs the state drops (bounded memory over months)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from validator_tui.engine import metrics as metrics_module
from validator_tui.engine.health import ServerHealth
from validator_tui.engine.metrics import EngineMetrics
from validator_tui.engine.state import EngineState
from validator_tui.shared.records import JobRecord, JobState


def engine_metrics() -> tuple[EngineState, EngineMetrics]:
    state = EngineState("hotkey")
    return state, EngineMetrics(state, ServerHealth(state, "p", "platform", down_on_5xx=False))


def sample(metrics: EngineMetrics, name: str, **labels: str) -> float:
    text = metrics.exposition().decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    raise KeyError(name)


def test_a_claim_won_then_a_finished_job_are_counted_once_each():
    state, metrics = engine_metrics()
    job = JobRecord(id="j1", challenge_id="c1", created_at=100.0)
    state.put_job(job, "pending")
    job.state, job.claimed_at = JobState.CLAIMED, 100.25
    state.put_job(job, "claimed")
    job.state = JobState.RUNNING
    state.put_job(job, "running")
    job.state, job.finished_at = JobState.COMPLETED, 160.25
    state.put_job(job, "result sent")
    state.put_job(job, "again")
    assert sample(metrics, "validator_claims_total", result="won") == 1
    assert sample(metrics, "validator_claim_latency_seconds_sum") == 0.25
    assert sample(metrics, "validator_jobs_finished_total", outcome="completed") == 1
    assert sample(metrics, "validator_job_duration_seconds_sum") == 60.0
    assert sample(metrics, "validator_jobs", state="running") == 0


def test_a_failed_claim_is_an_error_and_a_lost_race_is_lost():
    state, metrics = engine_metrics()
    failed = JobRecord(id="a", challenge_id="c")
    state.put_job(failed, "pending")
    state.put_job(failed, "claim failed: HTTP 500")
    lost = JobRecord(id="b", challenge_id="c")
    state.put_job(lost, "pending")
    lost.state = JobState.LOST
    state.put_job(lost, "claim lost (HTTP 409)")
    assert sample(metrics, "validator_claims_total", result="error") == 1
    assert sample(metrics, "validator_claims_total", result="lost") == 1
    assert sample(metrics, "validator_jobs_finished_total", outcome="lost") == 1
    assert sample(metrics, "validator_jobs", state="pending") == 1


def test_pending_jobs_the_state_drops_are_forgotten(monkeypatch):
    monkeypatch.setattr(metrics_module, "PRUNE_SLACK", 10)
    state, metrics = engine_metrics()
    for index in range(100):
        state.put_job(JobRecord(id=f"j{index}", challenge_id="c"), "pending")
        state.drop_job(f"j{index}")
    assert len(metrics._seen) <= 2 * len(state.jobs) + 10 + 1
