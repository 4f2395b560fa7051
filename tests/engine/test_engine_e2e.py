"""The engine end to end against both simulators over loopback."""

from __future__ import annotations

import asyncio

from tests.support.engine import FAST, challenge_resources, job_vms, running, wait_for
from tests.support.identities import ALICE, BOB
from validator_tui.config import ResourceLimits
from validator_tui.demo import DemoEnvironment
from validator_tui.shared.records import ChallengeState, JobState
from validator_tui.sim.scoring import score_for_code


async def test_200_jobs_over_3_challenges_with_tight_quota():
    limits = ResourceLimits(cpu_cores=6 + 8, memory_mb=65536, disk_mb=2_000_000, gpu_count=0)
    async with DemoEnvironment(
        seed=3, jobs_per_minute=0, boot_seconds=0, resource_limits=limits, engine=FAST
    ) as env:
        async with running(env.config) as validator:
            jobs = env.platform.add_jobs(200)
            peak = 0

            def done() -> bool:
                nonlocal peak
                peak = max(peak, validator.state.header.counters.running)
                return len(env.platform.results()) == 200

            await wait_for(done, 60, "200 results")
            await wait_for(lambda: not job_vms(env), 10, "job VMs removed")
            results = env.platform.results()
            for job in jobs:
                bodies = results[job["id"]]
                assert len(bodies) == 1, job["id"]
                assert bodies[0]["error"] is None
                assert bodies[0]["score"] == score_for_code(env.platform.job(job["id"])["code"])
            assert 1 < peak <= 4
            usage = validator.ctx.hosts.get_usage()
            assert usage.used == challenge_resources()
            assert usage.allocations == 3 and usage.ports_used == 3
            await wait_for(lambda: validator.state.header.counters.completed == 200, 5)
        assert {vm["name"].split("-ch-")[0] for vm in env.vmm.vms()} == {f"vt-{ALICE[:8]}"}
        assert len(env.vmm.vms()) == 3


async def test_claim_race_between_two_validators():
    async with DemoEnvironment(seed=4, jobs_per_minute=0, boot_seconds=0, engine=FAST) as env:
        bob_config = env.make_config(BOB, env.config.state_path.parent / "bob")
        async with running(env.config) as alice, running(bob_config) as bob:
            jobs = env.platform.add_jobs(80)
            await wait_for(lambda: len(env.platform.results()) == 80, 60, "80 results")
            results = env.platform.results()
            by = {job["id"]: env.platform.job(job["id"])["claimed_by"] for job in jobs}
            assert all(len(results[job["id"]]) == 1 for job in jobs)
            for engine, hotkey, other in ((alice, ALICE, BOB), (bob, BOB, ALICE)):
                lost = [j.id for j in engine.state.jobs.values() if j.state is JobState.LOST]
                completed = [
                    j.id for j in engine.state.jobs.values() if j.state is JobState.COMPLETED
                ]
                assert all(by[job_id] == other for job_id in lost)
                assert all(by[job_id] == hotkey for job_id in completed)
            errors = [body[0]["error"] for body in results.values() if body[0]["error"]]
            assert errors == []
            await wait_for(
                lambda: (
                    alice.state.header.counters.completed + bob.state.header.counters.completed
                    == 80
                ),
                5,
                "both engines counted the accepted results",
            )
            assert alice.state.header.counters.lost + bob.state.header.counters.lost > 0


async def test_platform_cancel_while_queued_booting_and_evaluating():
    async with DemoEnvironment(seed=5, jobs_per_minute=0, boot_seconds=0, engine=FAST) as env:
        async with running(env.config) as validator:
            await validator.commands.set_auto_claim(False)
            queued = env.platform.add_job()
            await wait_for(lambda: queued["id"] in validator.state.jobs, 5, "queued job seen")
            env.platform.cancel_job(queued["id"])
            await wait_for(
                lambda: validator.state.jobs[queued["id"]].state is JobState.CANCELLED, 5
            )

            env.vmm.set_boot(never=True, name_contains="-job-")
            booting = env.platform.add_job()
            await wait_for(lambda: booting["id"] in validator.state.jobs, 5)
            assert (await validator.commands.claim(booting["id"])).ok
            await wait_for(
                lambda: validator.state.jobs[booting["id"]].state is JobState.PROVISIONING, 5
            )
            await wait_for(lambda: bool(job_vms(env)), 5, "job VM created")
            env.platform.cancel_job(booting["id"])
            await wait_for(
                lambda: validator.state.jobs[booting["id"]].state is JobState.CANCELLED, 5
            )
            env.vmm.set_boot(seconds=0)

            evaluating = env.platform.add_job(code="#sim:hang\nprint('x')")
            await wait_for(lambda: evaluating["id"] in validator.state.jobs, 5)
            assert (await validator.commands.claim(evaluating["id"])).ok
            await wait_for(
                lambda: validator.state.jobs[evaluating["id"]].state is JobState.RUNNING, 5
            )
            env.platform.cancel_job(evaluating["id"])
            await wait_for(
                lambda: validator.state.jobs[evaluating["id"]].state is JobState.CANCELLED, 5
            )
            await wait_for(lambda: not job_vms(env), 5, "job VMs removed")
            assert env.platform.results() == {}
            assert validator.ctx.hosts.get_usage().used == challenge_resources()


async def test_operator_cancel_sends_cancelled_result():
    async with DemoEnvironment(seed=6, jobs_per_minute=0, boot_seconds=0, engine=FAST) as env:
        async with running(env.config) as validator:
            job = env.platform.add_job(code="#sim:hang")
            await wait_for(
                lambda: (
                    job["id"] in validator.state.jobs
                    and validator.state.jobs[job["id"]].state is JobState.RUNNING
                ),
                5,
            )
            outcome = await validator.commands.cancel(job["id"])
            assert outcome.ok, outcome.message
            await wait_for(lambda: job["id"] in env.platform.results(), 5)
            body = env.platform.results()[job["id"]][0]
            assert body["error"] == "cancelled by operator" and body["score"] == 0
            await wait_for(lambda: not job_vms(env), 5)
            assert validator.ctx.hosts.get_usage().used == challenge_resources()
            refused = await validator.commands.cancel(job["id"])
            assert not refused.ok


async def test_challenge_updated_rebuilds_and_bad_hash_is_refused():
    async with DemoEnvironment(seed=7, jobs_per_minute=0, boot_seconds=0, engine=FAST) as env:
        async with running(env.config) as validator:
            challenge = env.platform.challenges()[0]
            old_vm = validator.state.challenges[challenge["id"]].vm_id
            updated = env.platform.update_challenge(challenge["id"])
            await wait_for(
                lambda: (
                    validator.state.challenges[challenge["id"]].vm_id != old_vm
                    and validator.state.challenges[challenge["id"]].state is ChallengeState.ACTIVE
                ),
                10,
                "rebuilt CVM active",
            )
            record = validator.state.challenges[challenge["id"]]
            assert record.github_commit == updated["github_commit"]
            await wait_for(lambda: old_vm not in {vm["id"] for vm in env.vmm.vms()}, 5)
            creates = env.vmm.stats["CreateVm"]
            env.platform.update_challenge(challenge["id"], bad_hash=True)
            await wait_for(
                lambda: validator.state.challenges[challenge["id"]].state is ChallengeState.FAILED,
                10,
            )
            assert "hash mismatch" in validator.state.challenges[challenge["id"]].reason
            assert env.vmm.stats["CreateVm"] == creates
            job = env.platform.add_job(challenge_id=challenge["id"])
            await asyncio.sleep(0.3)
            assert validator.state.jobs[job["id"]].state is JobState.PENDING


async def test_platform_faults_lose_nothing():
    async with DemoEnvironment(seed=8, jobs_per_minute=0, boot_seconds=0, engine=FAST) as env:
        async with running(env.config) as validator:
            busy = '{"error": "overloaded"}'
            env.platform.inject_fault(status=503, count=3, path_prefix="/jobs/pending", body=busy)
            env.platform.inject_fault(
                status=503, count=4, path_prefix="/jobs/", method="POST", body=busy
            )
            env.platform.inject_fault(status=0, delay_s=6, count=1, path_prefix="/jobs/pending")
            jobs = env.platform.add_jobs(10)
            await wait_for(lambda: len(env.platform.results()) == 10, 30, "10 results")
            assert all(len(env.platform.results()[j["id"]]) == 1 for j in jobs)
            for _ in range(3):
                assert env.platform.drop_websockets() >= 0
                await asyncio.sleep(0.05)
            env.platform.drop_websockets()
            late = env.platform.add_jobs(5)
            await wait_for(
                lambda: all(j["id"] in env.platform.results() for j in late), 20, "late jobs"
            )
            await wait_for(
                lambda: validator.state.header.platform.status == "connected", 10, "WS back"
            )
            assert validator.ctx.platform.frames_received > 0
            await wait_for(lambda: not job_vms(env), 5, "job VMs removed")


async def test_vm_and_evaluator_failures_fail_the_job_and_engine_carries_on():
    engine = FAST | {"boot_timeout_s": 1.0, "job_timeout_s": 3.0}
    async with DemoEnvironment(seed=9, jobs_per_minute=0, boot_seconds=0, engine=engine) as env:
        async with running(env.config) as validator:
            env.vmm.fail_next("CreateVm", 1, "simulated VMM failure")
            create_fail = env.platform.add_job()
            await wait_for(lambda: create_fail["id"] in env.platform.results(), 10)
            assert "simulated VMM failure" in env.platform.results()[create_fail["id"]][0]["error"]

            env.vmm.set_boot(never=True, name_contains="-job-")
            never = env.platform.add_job()
            await wait_for(lambda: never["id"] in env.platform.results(), 10)
            assert "boot timed out" in env.platform.results()[never["id"]][0]["error"]
            env.vmm.set_boot(seconds=0)

            hang = env.platform.add_job(code="#sim:hang")
            nan = env.platform.add_job(code="#sim:score=nan")
            big = env.platform.add_job(code="#sim:score=1.7")
            text = env.platform.add_job(code='#sim:score="x"')
            await wait_for(
                lambda: all(j["id"] in env.platform.results() for j in (hang, nan, big, text)),
                15,
            )
            results = env.platform.results()
            assert "timed out" in results[hang["id"]][0]["error"]
            assert "expected a number in [0, 1]" in results[nan["id"]][0]["error"]
            assert "expected a number in [0, 1]" in results[big["id"]][0]["error"]
            assert "invalid" in results[text["id"]][0]["error"]
            for job in (create_fail, never, hang, nan, big, text):
                assert results[job["id"]][0]["score"] == 0
                await wait_for(
                    lambda job=job: validator.state.jobs[job["id"]].state is JobState.FAILED, 5
                )
            good = env.platform.add_job()
            await wait_for(lambda: good["id"] in env.platform.results(), 10)
            assert env.platform.results()[good["id"]][0]["error"] is None
            await wait_for(lambda: not job_vms(env), 5)
            assert validator.ctx.hosts.get_usage().used == challenge_resources()
