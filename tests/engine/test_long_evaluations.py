"""Real-length evaluations (issue: real jobs and a rough platform): `POST /evaluate` is bounded
by the job's remaining time only, never by `request_timeout_s`; an answer that trickles ends
at the job timeout, not before and not never; an answer in hand when the deadline is checked
is used. Scaled: request timeout 1 s, evaluations of 2-3 s, job timeout 6 s."""

from __future__ import annotations

import asyncio
import time

from tests.support.engine import FAST, running, wait_for
from tests.support.sim_thread import SimThread
from validator_tui.demo import DemoEnvironment
from validator_tui.shared.records import JobState

SCALED = FAST | {"request_timeout_s": 1.0, "job_timeout_s": 6.0}


def _finished(validator, job_id: str) -> bool:
    job = validator.state.jobs.get(job_id)
    return job is not None and job.state.finished


async def test_an_evaluation_longer_than_the_request_timeout_completes():
    async with DemoEnvironment(seed=3, jobs_per_minute=0, boot_seconds=0, engine=SCALED) as env:
        async with running(env.config) as validator:
            job = env.platform.add_job(code="#sim:sleep=2.5\nprint('slow')")
            await wait_for(lambda: _finished(validator, job["id"]), 15, "job finished")
            record = validator.state.jobs[job["id"]]
            assert record.state is JobState.COMPLETED, record.error
            assert record.error is None and record.execution_time_ms >= 2500
            (body,) = env.platform.results()[job["id"]]
            assert "error" not in body or body["error"] is None


async def test_a_hanging_evaluation_ends_at_the_job_timeout_not_the_request_timeout():
    async with DemoEnvironment(seed=4, jobs_per_minute=0, boot_seconds=0, engine=SCALED) as env:
        async with running(env.config) as validator:
            job = env.platform.add_job(code="#sim:hang")
            await wait_for(lambda: _finished(validator, job["id"]), 15, "job finished")
            record = validator.state.jobs[job["id"]]
            assert record.state is JobState.FAILED
            assert record.error == "job timed out after 6s"
            assert record.execution_time_ms >= 5500


async def test_a_trickling_answer_ends_at_the_job_timeout():
    async with DemoEnvironment(seed=5, jobs_per_minute=0, boot_seconds=0, engine=SCALED) as env:
        async with running(env.config) as validator:
            job = env.platform.add_job(code="#sim:trickle=20")
            started = time.monotonic()
            await wait_for(lambda: _finished(validator, job["id"]), 15, "job finished")
            record = validator.state.jobs[job["id"]]
            assert record.state is JobState.FAILED
            assert record.error == "job timed out after 6s"
            assert 5.5 <= record.execution_time_ms / 1000 <= 8.0
            assert time.monotonic() - started < 12


async def test_an_answer_that_came_while_the_engine_was_paused_is_used(tmp_path):
    """The engine's loop is blocked (as SIGSTOP would) from before the evaluator answers until
    after the job's deadline; the simulators, in their own thread, answer meanwhile."""
    sims = SimThread(tmp_path, auto_claim=True, engine=SCALED | {"job_timeout_s": 4.0})
    try:
        async with running(sims.env.config) as validator:
            job = sims.call(lambda: sims.env.platform.add_job(code="#sim:sleep=1.5"))
            await wait_for(
                lambda: (
                    validator.state.jobs.get(job["id"]) is not None
                    and validator.state.jobs[job["id"]].state is JobState.RUNNING
                ),
                10,
                "job running",
            )
            await asyncio.sleep(0.5)
            time.sleep(5.0)  # the pause: the whole engine stands still past the job's end
            await wait_for(lambda: _finished(validator, job["id"]), 10, "job finished")
            record = validator.state.jobs[job["id"]]
            assert record.state is JobState.COMPLETED, record.error
    finally:
        sims.close()


async def test_a_slow_health_check_is_bounded_by_the_boot_timeout():
    async with DemoEnvironment(seed=6, jobs_per_minute=0, boot_seconds=0, engine=SCALED) as env:
        async with running(env.config) as validator:
            env.vmm.set_evaluator(health_latency_s=1.5)
            job = env.platform.add_job()
            await wait_for(lambda: _finished(validator, job["id"]), 20, "job finished")
            record = validator.state.jobs[job["id"]]
            assert record.state is JobState.COMPLETED, record.error
