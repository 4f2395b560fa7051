"""A pending list full of entries nobody can claim (another validator's leftovers: their claims
answer 404): a job that answered 404 is not claimed again until its backoff has passed, and jobs
announced among thousands of such entries are claimed before any of them is tried again."""

from __future__ import annotations

from tests.support.engine import FAST, running, wait_for
from tests.support.identities import ALICE
from validator_tui.config import ResourceLimits
from validator_tui.demo import DemoEnvironment
from validator_tui.engine.validator import Validator
from validator_tui.shared.records import JobState


def polls_after(validator: Validator, count: int) -> object:
    """A predicate: true once `count` more polls of the pending list have answered."""
    start = validator.state.header.last_poll_at
    seen: list[float | None] = [start]

    def done() -> bool:
        now = validator.state.header.last_poll_at
        if now != seen[-1]:
            seen.append(now)
        return len(seen) > count

    return done


async def test_a_job_that_answered_404_waits_for_its_backoff_before_another_claim():
    async with DemoEnvironment(seed=21, jobs_per_minute=0, boot_seconds=0, engine=FAST) as env:
        async with running(env.config) as validator:
            leftovers = env.platform.add_unclaimable(20)
            stats = env.platform.stats
            await wait_for(lambda: stats["claims_not_found"] >= 20, 10, "20 claims answered 404")
            await wait_for(polls_after(validator, 4), 10, "four more polls")  # type: ignore[arg-type]
            assert stats["claims_not_found"] == 20
            assert validator.state.header.counters.lost == 20
            for job_id in leftovers:
                record = validator.state.jobs[job_id]
                assert record.state is JobState.PENDING
                assert record.waiting_reason.startswith("lost its claim (HTTP 404)"), job_id


async def test_a_job_that_answered_404_is_claimed_again_once_its_backoff_passed():
    engine = FAST | {"lost_claim_backoff_s": 0.5}
    async with DemoEnvironment(seed=22, jobs_per_minute=0, boot_seconds=0, engine=engine) as env:
        async with running(env.config) as validator:
            env.platform.add_unclaimable(3)
            stats = env.platform.stats
            await wait_for(lambda: stats["claims_not_found"] >= 6, 10, "each claimed twice")
            # The simulator counts a 404 as it answers; the engine once it has read the answer.
            header = validator.state.header
            await wait_for(lambda: header.counters.lost >= 6, 5, "each 404 counted by the engine")


async def test_announced_jobs_go_before_thousands_of_listed_leftovers():
    one_job_vm = ResourceLimits(cpu_cores=6 + 2, memory_mb=65536, disk_mb=2_000_000)
    async with DemoEnvironment(
        seed=23,
        jobs_per_minute=0,
        boot_seconds=0,
        engine=FAST,
        pending_limit=5000,
        resource_limits=one_job_vm,
    ) as env:
        async with running(env.config) as validator:
            await validator.commands.set_auto_claim(False)
            leftovers = set(env.platform.add_unclaimable(3000))
            await wait_for(lambda: leftovers <= validator.state.jobs.keys(), 10, "leftovers seen")
            real = [job["id"] for job in env.platform.add_jobs(3)]
            await wait_for(lambda: set(real) <= validator.state.jobs.keys(), 10, "jobs seen")
            env.platform.requests.clear()
            await validator.commands.set_auto_claim(True)
            await wait_for(
                lambda: all(env.platform.job(job_id)["claimed_by"] == ALICE for job_id in real),
                30,
                "the announced jobs claimed",
            )
            claims = [
                path.split("/")[2]
                for method, path, _ in env.platform.requests
                if method == "POST" and path.endswith("/claim")
            ]
            # One job VM fits at a time: the claims reach the platform in the order they start.
            assert set(claims[:3]) == set(real), claims[:5]
            await wait_for(lambda: len(env.platform.results()) == 3, 30, "three results")
