"""The console on a `FakeEngine`, run as a program in a terminal (for the pty + pyte tests).

    python -m tests.support.wire_app burst   # the demo scene, then a burst of changes
    python -m tests.support.wire_app fresh   # the scene as it is after the burst, at once

Both end in the same engine state at the same clock, so a terminal that received everything
the `burst` app wrote must show what the `fresh` app's first frames show. The burst touches
what partial repaints could get wrong: rows shifting under new jobs, cells changing width,
wide characters, long errors, counters, gauges, the sparkline, events, a challenge's state.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

from tests.support.fake_engine import FakeEngine, demo_state
from validator_tui.control import ChallengeState, JobState, Resources
from validator_tui.tui.app import ValidatorApp

STEP_S = 0.02
#: When the burst begins (after the first frames).
BURST_AFTER_S = 1.5
STATES = (JobState.CLAIMED, JobState.PROVISIONING, JobState.RUNNING, JobState.SUBMITTING)
ERRORS = (
    "job timed out after 60s",
    "VM boot failed: 超时 (timeout) 🚫",
    "evaluator answered 500: internal error while scoring the submission",
)


def burst_steps(engine: FakeEngine) -> list[Callable[[], None]]:
    """The changes of the burst, in order (each one a small engine change)."""
    steps: list[Callable[[], None]] = []
    challenge_ids = list(engine.state.challenges)

    def tick() -> None:
        engine.now += 0.35

    for index in range(60):

        def new_job(index: int = index) -> None:
            tick()
            job = engine.add_job(JobState.PENDING, challenge_id=challenge_ids[index % 2], age=0.0)
            engine.add_event("info", "job", f"new job {job.id[:8]}")

        steps.append(new_job)
        if index % 3 == 0:

            def advance(index: int = index) -> None:
                jobs = sorted(engine.state.jobs.values(), key=lambda job: job.created_at)
                job = jobs[-2 - index % 4]
                if job.state is JobState.PENDING:
                    engine.update_job(job.id, state=JobState.CLAIMED, claimed_at=engine.now)
                elif job.state in STATES[:-1]:
                    engine.update_job(job.id, state=STATES[STATES.index(job.state) + 1])
                engine.recount()

            steps.append(advance)
        if index % 7 == 0:

            def fail(index: int = index) -> None:
                jobs = [job for job in engine.state.jobs.values() if not job.state.finished]
                job = min(jobs, key=lambda job: job.created_at)
                engine.update_job(
                    job.id,
                    state=JobState.FAILED,
                    error=ERRORS[index % len(ERRORS)],
                    finished_at=engine.now,
                    score=0.0,
                )
                engine.add_event("error", "job", ERRORS[index % len(ERRORS)], job_id=job.id)
                engine.recount()

            steps.append(fail)
        if index % 10 == 0:

            def quota(index: int = index) -> None:
                engine.set_quota(
                    Resources(vcpu=4 + index % 12, memory_mb=8192 + index * 256, disk_mb=99000),
                    Resources(vcpu=16, memory_mb=32768, disk_mb=512000),
                    (5 + index % 9, 100),
                )
                engine.throughput = (*engine.throughput[1:], index % 7)
                engine.state.header_changed()

            steps.append(quota)

    def cvm_active() -> None:
        booting = challenge_ids[2]
        engine.update_challenge(
            booting,
            state=ChallengeState.ACTIVE,
            boot_progress="done",
            active_since=engine.now,
            name="code-arena 代码",
        )

    steps.append(cvm_active)
    return steps


async def main(mode: str) -> None:
    engine = demo_state(FakeEngine())
    steps = burst_steps(engine)
    app = ValidatorApp(engine, clock=lambda: engine.now, cursor_blink=False)
    if mode == "fresh":
        for step in steps:
            step()
    else:

        async def burst() -> None:
            await asyncio.sleep(BURST_AFTER_S)
            for step in steps:
                step()
                await asyncio.sleep(STEP_S)

        task = asyncio.create_task(burst())
        task.add_done_callback(lambda _: None)
    await app.run_async()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
