"""Outages and restarts lose no work (issue 10): the engine reaches the simulators through TCP
fault proxies that refuse, black-hole, trickle or slow connections. Outage durations are
scaled down from the issue's (60 s → a few seconds); the logic they exercise is the same."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support.engine import (
    all_challenges_active,
    challenge_resources,
    job_vms,
    running,
    wait_for,
)
from tests.support.outage import behind_proxies, events, loop_errors
from validator_tui.config import ResourceLimits
from validator_tui.demo import DemoEnvironment
from validator_tui.engine import validator as validator_module
from validator_tui.engine.records import ChallengeState, JobState
from validator_tui.engine.validator import Validator
from validator_tui.sim.scoring import score_for_code

ENGINE = {
    "poll_interval_s": 0.3,
    "vm_poll_interval_s": 0.05,
    "request_timeout_s": 1.0,
    "ws_backoff_cap_s": 0.5,
    "job_timeout_s": 30.0,
}
#: 3 challenge CVMs (2 vCPU each) and room for 2 job VMs: jobs queue for capacity.
TIGHT = ResourceLimits(cpu_cores=6 + 4, memory_mb=65536, disk_mb=2_000_000, gpu_count=0)


def all_scored(env: DemoEnvironment, jobs: list[dict]) -> bool:
    results = env.platform.results()
    return all(job["id"] in results for job in jobs)


def assert_each_scored_once(env: DemoEnvironment, jobs: list[dict]) -> None:
    results = env.platform.results()
    for job in jobs:
        bodies = results[job["id"]]
        assert len(bodies) == 1, (job["id"], bodies)
        assert bodies[0]["error"] is None, bodies[0]
        assert bodies[0]["score"] == score_for_code(env.platform.job(job["id"])["code"])


@pytest.mark.parametrize("outage_s", [1.5, 4.0], ids=["15s-scaled", "60s-scaled"])
async def test_platform_refused_while_jobs_queue_for_capacity(outage_s):
    """Platform refusing connections for 15 s / 60 s (scaled to 1.5 s / 4 s) while 20 jobs
    queue for capacity: claims pause (nothing is run unclaimed), no result is refused, no dead
    letter, and every job completes exactly once after the platform returns."""
    async with DemoEnvironment(
        seed=41,
        jobs_per_minute=0,
        boot_seconds=0,
        resource_limits=TIGHT,
        engine=ENGINE,
        evaluator_latency_s=0.4,
    ) as env:
        async with behind_proxies(env) as (config, platform, _vmm):
            async with running(config) as validator:
                jobs = env.platform.add_jobs(20)
                await wait_for(lambda: validator.state.header.counters.running >= 2, 10, "jobs")
                await platform.set_mode("refuse")
                await wait_for(
                    lambda: "platform is unreachable" in validator.state.header.claims_paused,
                    5,
                    "claims paused",
                )
                await asyncio.sleep(outage_s)
                claims_during = validator.state.header.counters.claimed_total
                await platform.set_mode("up")
                await wait_for(lambda: all_scored(env, jobs), 60, "every job scored")
                assert validator.state.header.claims_paused == ""
                assert_each_scored_once(env, jobs)
                assert env.platform.stats["results_rejected"] == 0
                counters = validator.state.header.counters
                assert counters.dead_letters == 0
                assert counters.failed == 0 and counters.lost == 0
                assert claims_during < 20
                assert len(events(validator, "platform is not answering")) == 1
                assert len(events(validator, "platform answers again")) == 1
                await wait_for(lambda: counters.completed == 20, 10, "completions counted")


@pytest.mark.parametrize("where", ["response", "request"])
async def test_lost_claim_answer_is_settled_by_a_poll(where):
    """A claim whose answer is lost (`response`: the platform accepted it and the proxy reset
    the connection instead of answering; `request`: the platform never saw it) is neither run
    nor dropped until a poll says whether the job is ours: exactly one result, ours."""
    async with DemoEnvironment(
        seed=42, jobs_per_minute=0, boot_seconds=0, engine=ENGINE, auto_claim=False
    ) as env:
        async with behind_proxies(env) as (config, platform, _vmm):
            async with running(config) as validator:
                platform.cut(b"/claim", where)
                job = env.platform.add_job()
                await wait_for(
                    lambda: (
                        job["id"] in validator.state.jobs
                        and validator.state.jobs[job["id"]].submission_id != ""
                    ),
                    5,
                    "the job seen by a poll",
                )
                await validator.set_auto_claim(True)
                await wait_for(lambda: job["id"] in env.platform.results(), 15, "the result")
                await wait_for(lambda: validator.running_job_count() == 0, 5, "idle")
                assert platform.stats[f"{where}s cut"] == 1
                assert len(env.platform.results()[job["id"]]) == 1
                assert env.platform.results()[job["id"]][0]["error"] is None
                assert env.platform.job(job["id"])["claimed_by"] == config.validator_hotkey
                assert env.platform.stats["results_rejected"] == 0
                notes = [entry.text for entry in validator.state.jobs[job["id"]].timeline]
                assert any("claim answer lost" in note for note in notes), notes
                settled = "not ours" if where == "request" else "no longer pending"
                assert any(settled in note for note in notes), notes
                assert env.vmm.stats["vms_created"] == 3 + 1


async def test_lost_claim_answer_of_a_job_only_announced_says_why_it_cannot_run():
    """A job known only from its `new_job` frame has no submission id until the claim answers;
    if that answer is lost and the job turns out ours, its result says so (no VM is spent)."""
    async with DemoEnvironment(seed=43, jobs_per_minute=0, boot_seconds=0, engine=ENGINE) as env:
        async with behind_proxies(env) as (config, platform, _vmm):
            async with running(config) as validator:
                platform.cut(b"/claim", "response")
                job = env.platform.add_job()
                await wait_for(lambda: job["id"] in env.platform.results(), 15, "the result")
                bodies = env.platform.results()[job["id"]]
                assert len(bodies) == 1
                assert bodies[0]["error"] == "submission id unknown: the claim's answer was lost"
                assert env.vmm.stats["vms_created"] == 3
                assert validator.state.header.counters.dead_letters == 0


async def test_vmm_refused_while_jobs_arrive():
    """The VMM refusing connections for 60 s at 60 jobs/min (scaled: 4 s at 10 jobs/s): no job
    fails because of it; claims pause, jobs wait, then complete. The VMM's going down and its
    return are one event each."""
    async with DemoEnvironment(
        seed=44, jobs_per_minute=0, boot_seconds=0, engine=ENGINE, evaluator_latency_s=0.1
    ) as env:
        async with behind_proxies(env) as (config, _platform, vmm):
            async with running(config) as validator:
                jobs = env.platform.add_jobs(5)
                await wait_for(lambda: validator.state.header.counters.running >= 1, 10, "jobs")
                await vmm.set_mode("refuse")
                started = time.monotonic()
                while time.monotonic() - started < 4.0:
                    jobs.append(env.platform.add_job())
                    await asyncio.sleep(0.1)
                paused = validator.state.header.claims_paused
                await vmm.set_mode("up")
                await wait_for(lambda: all_scored(env, jobs), 60, "every job scored")
                assert "VMM is not answering" in paused
                assert_each_scored_once(env, jobs)
                assert validator.state.header.counters.failed == 0
                assert len(events(validator, "VMM is not answering")) == 1
                assert len(events(validator, "VMM answers again")) == 1
                await wait_for(lambda: not job_vms(env), 15, "job VMs removed")
                assert validator.state.header.claims_paused == ""


async def test_vmm_restarted_empty_mid_run(monkeypatch):
    """The VMM restarts and forgets every VM while jobs run: within one reconcile period (made
    1 s here instead of 5 s) plus a boot the challenge CVMs are back, in-flight jobs get a clear
    error or complete, quota is exactly the new CVMs plus running jobs, nothing stays active."""
    monkeypatch.setattr(validator_module, "RECONCILE_INTERVAL_S", 1.0)
    async with DemoEnvironment(
        seed=45, jobs_per_minute=0, boot_seconds=0.3, engine=ENGINE, evaluator_latency_s=1.5
    ) as env:
        async with running(env.config) as validator:
            before = {c.id: c.vm_id for c in validator.state.challenges.values()}
            jobs = env.platform.add_jobs(4)
            await wait_for(
                lambda: (
                    sum(j.state is JobState.RUNNING for j in validator.state.jobs.values()) >= 2
                ),
                15,
                "jobs evaluating",
            )
            forgotten = env.vmm.restart_empty()
            assert forgotten >= 3 + 2
            await wait_for(lambda: all_challenges_back(validator, before), 8, "CVMs back")
            await wait_for(lambda: all_scored(env, jobs), 30, "a result for every job")
            await wait_for(lambda: validator.running_job_count() == 0, 10, "nothing active")
            errors = [env.platform.results()[job["id"]][0]["error"] for job in jobs]
            assert all(len(env.platform.results()[job["id"]]) == 1 for job in jobs)
            assert any(error is not None for error in errors), errors
            for error in errors:
                assert error is None or "VM lost" in error or "evaluator" in error, error
            usage = validator.ctx.quota.get_usage()
            assert usage.used == challenge_resources(3) and usage.allocations == 3
            live = {vm["id"] for vm in env.vmm.vms()}
            assert {c.vm_id for c in validator.state.challenges.values()} <= live
            assert set(validator.state.vms) <= live
            assert len(events(validator, "lost (the VMM no longer has it)")) == 3


def all_challenges_back(validator, before: dict[str, str | None]) -> bool:
    challenges = validator.state.challenges.values()
    return len(before) == len(challenges) and all(
        c.state is ChallengeState.ACTIVE and c.vm_status == "running" and c.vm_id != before[c.id]
        for c in challenges
    )


ENGINE_TASK_PREFIXES = ("engine-", "job-", "claim-", "result-", "create-", "remove-")


def engine_tasks() -> list[str]:
    return sorted(
        task.get_name()
        for task in asyncio.all_tasks()
        if task.get_name().startswith(ENGINE_TASK_PREFIXES) and not task.done()
    )


@pytest.mark.parametrize(("vmm_mode", "deadline"), [("blackhole", 4.0), ("slow", 8.0)])
async def test_stop_with_create_vm_in_flight_keeps_the_deadline(vmm_mode, deadline):
    """Stop while CreateVm is in flight, the VMM black-holed (or slow: 0.5 s per chunk): the
    engine is stopped within `shutdown_deadline_s`, every task has ended before the store and
    clients closed, no "exception was never retrieved", every job's result is sent; the slow
    VMM's job VMs are removed, the black-holed VMM's are said in the log and removed at the
    next start."""
    engine = ENGINE | {"shutdown_deadline_s": deadline, "request_timeout_s": 2.0}
    async with DemoEnvironment(seed=46, jobs_per_minute=0, boot_seconds=0, engine=engine) as env:
        async with behind_proxies(env) as (config, _platform, vmm):
            with loop_errors() as errors:
                validator = Validator(config)
                task = asyncio.create_task(validator.run())
                await asyncio.wait_for(validator.wait_started(), 10)
                await wait_for(lambda: all_challenges_active(validator), 15, "CVMs")
                await vmm.set_mode(vmm_mode, delay=0.5)
                env.platform.add_jobs(3)
                await wait_for(
                    lambda: (
                        sum(j.state is JobState.PROVISIONING for j in validator.state.jobs.values())
                        == 3
                    ),
                    10,
                    "CreateVm in flight",
                )
                await asyncio.sleep(0.3)
                started = time.monotonic()
                await validator.stop()
                await asyncio.wait_for(task, deadline + 5)
                took = time.monotonic() - started
                leftover = engine_tasks()
            assert took <= deadline + 0.5, took
            assert leftover == []
            assert errors == []
            results = env.platform.results()
            assert len(results) == 3
            assert all(b[0]["error"] == "validator shutting down" for b in results.values())
            await vmm.set_mode("up")
            if vmm_mode == "slow":
                assert job_vms(env) == []
                return
            assert events(validator, "not removed", level="error")
            async with running(config) as second:
                await wait_for(lambda: not job_vms(env), 10, "job VMs removed at the next start")
                assert second.state.header.counters.failed == 0
