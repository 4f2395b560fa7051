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


async def test_destroy_vm_removes_a_job_vm_and_the_job_fails_with_a_reason():
    """Removed while it evaluates, and removed while its evaluator is still starting (its
    /health answers in 3 s): either way the job fails at once, not at the boot timeout."""
    engine = FAST | {"boot_timeout_s": 30.0}
    async with DemoEnvironment(seed=42, jobs_per_minute=0, boot_seconds=0, engine=engine) as env:
        async with running(env.config) as validator:
            executor = validator.jobs.executor
            assert not await executor.destroy_vm("no-such-vm")
            listed = validator.state.jobs
            for health_latency_s, phase in ((0.0, "evaluating"), (3.0, "created")):
                env.vmm.set_evaluator(health_latency_s=health_latency_s)
                job = env.platform.add_job(code="#sim:hang")

                def in_phase(job_id: str = job["id"], phase: str = phase) -> bool:
                    record = listed.get(job_id)
                    return record is not None and phase in record.timeline[-1].text

                await wait_for(in_phase, 10, phase)
                vm_id = listed[job["id"]].vm_id
                assert vm_id is not None
                assert await executor.destroy_vm(vm_id)
                await wait_for(lambda job=job: job["id"] in env.platform.results(), 5, "result")
                [result] = env.platform.results()[job["id"]]
                assert result["score"] == 0 and vm_id in result["error"], result["error"]
