"""Work resumes only once the engine has settled: a VMM that comes back empty (a host reboot),
a challenge CVM provisioned again under a claimed job, and a drain undone before anything
moved. No job fails for a state of the engine's own making; an undone drain changes nothing."""

from __future__ import annotations

import asyncio

from tests.support.engine import challenge_resources, running, wait_for
from tests.support.outage import events
from validator_tui.demo import DemoEnvironment
from validator_tui.engine import loops as loops_module
from validator_tui.shared.records import HostState, JobState
from validator_tui.sim.scoring import score_for_code
from validator_tui.sim.vmm import VmmSimulator

ENGINE = {
    "poll_interval_s": 0.3,
    "vm_poll_interval_s": 0.05,
    "request_timeout_s": 1.0,
    "ws_backoff_cap_s": 0.5,
    "job_timeout_s": 30.0,
}


def assert_each_scored_once(env: DemoEnvironment, jobs: list[dict]) -> None:
    results = env.platform.results()
    for job in jobs:
        bodies = results[job["id"]]
        assert len(bodies) == 1, (job["id"], bodies)
        assert bodies[0]["error"] is None, bodies[0]
        assert bodies[0]["score"] == score_for_code(env.platform.job(job["id"])["code"])


async def test_vmm_back_empty_after_an_outage_fails_no_job(monkeypatch):
    """The VMM dies with the challenge CVMs active, jobs are announced while it is down and in
    the first second after it answers again, empty, on the same port: no job fails; each
    completes once the challenge's CVM is active again, and each challenge gets one new CVM."""
    monkeypatch.setattr(loops_module, "RECONCILE_INTERVAL_S", 1.0)
    async with DemoEnvironment(
        seed=61, jobs_per_minute=0, boot_seconds=0.4, engine=ENGINE, evaluator_latency_s=0.05
    ) as env:
        async with running(env.config) as validator:
            before = len(events(validator, "created CVM"))
            await env.vmm.go_down()
            env.vmm.restart_empty()
            await wait_for(
                lambda: "VMM is not answering" in validator.state.header.claims_paused,
                5,
                "claims paused",
            )
            jobs = []
            for _ in range(6):
                jobs.append(env.platform.add_job())
                await asyncio.sleep(0.15)
            await env.vmm.come_back()
            for _ in range(8):
                jobs.append(env.platform.add_job())
                await asyncio.sleep(0.12)
            await wait_for(
                lambda: all(job["id"] in env.platform.results() for job in jobs), 30, "results"
            )
            assert_each_scored_once(env, jobs)
            assert validator.state.header.counters.failed == 0
            assert len(events(validator, "created CVM")) - before == 3
            assert len(events(validator, "lost (the VMM no longer has it)")) == 3
            await wait_for(lambda: validator.running_job_count() == 0, 10, "idle")
            assert validator.ctx.hosts.get_usage().used == challenge_resources(3)


async def test_claimed_job_waits_for_its_cvm_provisioned_again():
    """A job is claimed and fetching its submission when the VMM restarts empty; its challenge's
    CVM is provisioned again (slowly): the job waits for it, says so, then completes."""
    async with DemoEnvironment(
        seed=62, jobs_per_minute=0, boot_seconds=0.1, engine=ENGINE, evaluator_latency_s=0.05
    ) as env:
        async with running(env.config) as validator:
            challenge = next(iter(validator.state.challenges.values()))
            env.platform.inject_fault(
                status=0, path_prefix=f"/challenges/{challenge.id}/orm", delay_s=1.5
            )
            job = env.platform.add_job(challenge_id=challenge.id)
            await wait_for(
                lambda: (
                    job["id"] in validator.state.jobs
                    and validator.state.jobs[job["id"]].state is JobState.CLAIMED
                ),
                10,
                "the job claimed",
            )
            env.vmm.set_boot(seconds=2.5, name_contains="-ch-")
            env.vmm.restart_empty()
            await validator.reconciler.reconcile()
            assert not validator.challenges.is_active(challenge.id)
            await wait_for(lambda: job["id"] in env.platform.results(), 20, "the result")
            assert_each_scored_once(env, [job])
            notes = [entry.text for entry in validator.state.jobs[job["id"]].timeline]
            waiting = f"waiting for challenge CVM {challenge.name}"
            assert any(note.startswith(waiting) for note in notes), notes


async def test_undrain_before_anything_moved_changes_nothing():
    """Drain the only host while jobs run on it, undrain it a moment later: nothing could move,
    so no CVM is created or removed."""
    async with DemoEnvironment(
        seed=63,
        jobs_per_minute=0,
        boot_seconds=0.1,
        evaluator_latency_s=1.0,
        engine=ENGINE,
    ) as env:
        async with running(env.config) as validator:
            name = next(iter(validator.state.hosts))
            created = sum(sim.stats["vms_created"] for sim in env.vmms)
            cvms = {c.id: c.vm_id for c in validator.state.challenges.values()}
            jobs = env.platform.add_jobs(4)
            await wait_for(lambda: validator.running_job_count() >= 1, 10, "jobs running")
            assert (await validator.commands.drain_host(name)).ok
            assert validator.state.hosts[name].state is HostState.DRAINING
            await asyncio.sleep(0.5)
            assert (await validator.commands.undrain_host(name)).ok
            await wait_for(
                lambda: all(job["id"] in env.platform.results() for job in jobs), 20, "results"
            )
            await asyncio.sleep(1.0)
            assert {c.id: c.vm_id for c in validator.state.challenges.values()} == cvms
            job_vms = sum(1 for job in jobs if validator.state.jobs[job["id"]].vm_id)
            assert sum(sim.stats["vms_created"] for sim in env.vmms) == created + job_vms
            assert events(validator, "replaced by rebuilt CVM") == []


async def test_claims_wait_until_the_vm_list_of_a_returning_vmm_was_read(monkeypatch):
    """The VMM answers again but its VM list cannot be read yet (Status refused): a job
    announced meanwhile is not claimed and says why; once the list is read, the lost CVMs are
    provisioned again and the job completes."""
    monkeypatch.setattr(loops_module, "RECONCILE_INTERVAL_S", 1.0)
    async with DemoEnvironment(
        seed=64, jobs_per_minute=0, boot_seconds=0.1, engine=ENGINE, evaluator_latency_s=0.05
    ) as env:
        async with running(env.config) as validator:
            await env.vmm.go_down()
            env.vmm.restart_empty()
            await wait_for(
                lambda: "VMM is not answering" in validator.state.header.claims_paused,
                5,
                "claims paused",
            )
            env.vmm.fail_next("Status", count=5, error="Failed to list VMs: busy")
            job = env.platform.add_job()
            await env.vmm.come_back()
            await wait_for(
                lambda: validator.state.header.claims_paused == "", 5, "the VMM answering"
            )
            await wait_for(lambda: job["id"] in validator.state.jobs, 5, "the job seen")
            record = validator.state.jobs[job["id"]]
            assert record.state is JobState.PENDING
            assert record.waiting_reason == (
                "waiting for the VM list of the VMM, which answers again, to be checked"
            )
            await wait_for(lambda: job["id"] in env.platform.results(), 20, "the result")
            assert_each_scored_once(env, [job])
            assert len(events(validator, "lost (the VMM no longer has it)")) == 3


async def test_undrain_cancels_moves_under_way():
    """Two hosts: drain h1 while the moves of its CVMs to h2 boot, undrain it: the moves are
    cancelled (the CVMs being booted on h2 are removed), the CVMs on h1 keep serving, nothing is
    replaced."""
    async with DemoEnvironment(
        seed=65, jobs_per_minute=0, boot_seconds=0.1, engine=ENGINE, hosts=2
    ) as env:
        async with running(env.config) as validator:
            h2 = env.host_of("h2")
            before = {c.id: (c.host, c.vm_id) for c in validator.state.challenges.values()}
            moving = sum(1 for host, _ in before.values() if host == "h1")
            on_h2 = cvms_on(h2)
            h2.set_boot(seconds=30, name_contains="-ch-")
            drained = await validator.commands.drain_host("h1")
            assert drained.ok and f"{moving} challenge CVMs move" in drained.message
            await wait_for(lambda: len(cvms_on(h2)) == len(on_h2) + moving, 5, "moves booting")
            undone = await validator.commands.undrain_host("h1")
            assert undone.ok and f"{moving} challenge CVM moves cancelled" in undone.message
            await wait_for(lambda: cvms_on(h2) == on_h2, 5, "the moves' CVMs removed")
            # The simulator lists a CVM as removing at once; the engine gives its quota back
            # once it has read RemoveVm's answer.
            hosts = validator.ctx.hosts
            await wait_for(lambda: hosts.get_usage().allocations == 3, 5, "the moves' quota back")
            after = {c.id: (c.host, c.vm_id) for c in validator.state.challenges.values()}
            assert after == before
            assert all(not validator.challenges.claims_wait(cid) for cid in after)
            assert events(validator, "replaced by rebuilt CVM") == []


def cvms_on(sim: VmmSimulator) -> set[str]:
    """The challenge CVMs a VMM simulator lists (those being removed left out)."""
    return {vm["id"] for vm in sim.vms() if "-ch-" in vm["name"] and vm["status"] != "removing"}
