"""The reference's JobManager methods (`has_capacity`, `claim_job`) against the simulators."""

from __future__ import annotations

from tests.support.engine import FAST, running, wait_for
from validator_tui.config import ResourceLimits
from validator_tui.demo import DemoEnvironment


async def test_has_capacity_says_whether_the_next_claim_fits():
    """Room for the three challenge CVMs and one job VM: before the claim the job fits; after
    it, the next one does not, and its claim is refused for capacity."""
    limits = ResourceLimits(cpu_cores=6 + 2, memory_mb=65536, disk_mb=2_000_000, gpu_count=0)
    async with DemoEnvironment(
        seed=41, jobs_per_minute=0, boot_seconds=0, resource_limits=limits, engine=FAST
    ) as env:
        async with running(env.config) as validator:
            assert (await validator.commands.set_auto_claim(False)).ok
            first, second = env.platform.add_job(code="#sim:hang"), env.platform.add_job()
            await wait_for(lambda: second["id"] in validator.state.jobs, 10, "both jobs listed")
            jobs, listed = validator.jobs, validator.state.jobs
            assert jobs.has_capacity(listed[first["id"]])
            assert jobs.has_capacity(listed[second["id"]])
            assert (await jobs.claim_job(first["id"])).ok
            assert not jobs.has_capacity(listed[second["id"]])
            refused = await jobs.claim_job(second["id"])
            assert not refused.ok and "capacity" in refused.message
            assert env.platform.job(second["id"])["status"] == "pending"
