"""Several dstack hosts as one pool, against three VMM simulators over loopback (one of them
reached over a unix socket): placement and per-host limits, a host that dies and comes back,
drain, and GPUs attached by slot."""

from __future__ import annotations

import asyncio
from collections import Counter

from tests.support.engine import FAST, running, wait_for
from validator_tui.config import ResourceLimits
from validator_tui.demo import DemoEnvironment
from validator_tui.engine.validator import Validator
from validator_tui.shared.records import ChallengeState, HostState, JobState, Resources
from validator_tui.sim.scoring import score_for_code

#: Per host: one challenge CVM (2 vCPU) and room for four job VMs (2 vCPU each).
LIMITS = ResourceLimits(cpu_cores=10, memory_mb=65536, disk_mb=2_000_000, gpu_count=0)
CVM = Resources(vcpu=2, memory_mb=2048, disk_mb=20 * 1024)


def job_vms_on(env: DemoEnvironment) -> list[int]:
    """Job VMs (not being removed) on each host's simulator."""
    return [
        sum(1 for vm in sim.vms() if "-job-" in vm["name"] and vm["status"] != "removing")
        for sim in env.vmms
    ]


def cvm_ids(env: DemoEnvironment) -> list[set[str]]:
    """The challenge CVMs (not being removed) on each host's simulator."""
    return [
        {vm["id"] for vm in sim.vms() if "-ch-" in vm["name"] and vm["status"] != "removing"}
        for sim in env.vmms
    ]


def cvms_held(validator: Validator) -> dict[str, int]:
    return dict(Counter(c.host for c in validator.state.challenges.values()))


async def test_300_jobs_over_three_hosts_one_over_unix_each_exactly_one_result():
    async with DemoEnvironment(
        seed=31,
        jobs_per_minute=0,
        boot_seconds=0,
        resource_limits=LIMITS,
        engine=FAST,
        hosts=3,
        unix_hosts=1,
    ) as env:
        assert env.vmms[2].url.startswith("unix:")
        async with running(env.config) as validator:
            assert cvms_held(validator) == {"h1": 1, "h2": 1, "h3": 1}
            jobs = env.platform.add_jobs(300)
            peak = [0, 0, 0]

            def done() -> bool:
                for index, count in enumerate(job_vms_on(env)):
                    peak[index] = max(peak[index], count)
                return len(env.platform.results()) == 300

            await wait_for(done, 90, "300 results")
            results = env.platform.results()
            for job in jobs:
                bodies = results[job["id"]]
                assert len(bodies) == 1, job["id"]
                assert bodies[0]["error"] is None
                assert bodies[0]["score"] == score_for_code(env.platform.job(job["id"])["code"])
            placed = Counter(validator.state.jobs[job["id"]].host for job in jobs)
            assert set(placed) == {"h1", "h2", "h3"} and min(placed.values()) >= 50, placed
            assert all(sim.stats["CreateVm"] > 50 for sim in env.vmms)
            # Peak concurrency within each host's limits: 4 job VMs beside its CVM.
            assert all(1 <= count <= 4 for count in peak), peak
            await wait_for(lambda: job_vms_on(env) == [0, 0, 0], 10, "job VMs removed")
            for host in validator.ctx.hosts:
                usage = host.quota.get_usage()
                assert usage.used == CVM and usage.allocations == 1 and usage.ports_used == 1
            assert validator.ctx.hosts.get_usage().used == CVM.times(3)


async def test_a_host_that_dies_fails_over_and_its_stale_cvm_goes_when_it_returns():
    engine = FAST | {"host_down_grace_s": 1.0, "request_timeout_s": 1.0, "boot_timeout_s": 10.0}
    async with DemoEnvironment(
        seed=32,
        jobs_per_minute=0,
        boot_seconds=0.3,
        evaluator_latency_s=0.3,
        resource_limits=LIMITS,
        engine=engine,
        hosts=3,
        unix_hosts=1,
    ) as env:
        async with running(env.config) as validator:
            h2 = env.host_of("h2")
            victim = next(c for c in validator.state.challenges.values() if c.host == "h2")
            stale = victim.vm_id
            first = env.platform.add_jobs(60)
            await wait_for(lambda: job_vms_on(env)[1] >= 2, 20, "jobs running on h2")
            await h2.go_down()
            await wait_for(
                lambda: validator.state.hosts["h2"].state is HostState.DOWN, 30, "h2 down"
            )

            def moved() -> bool:
                record = validator.state.challenges[victim.id]
                return record.state is ChallengeState.ACTIVE and record.host in ("h1", "h3")

            # That it moves, not how fast: a timing belongs in a bench, not a test.
            await wait_for(moved, 30, "the challenge CVM provisioned on another host")
            while_down = env.platform.add_jobs(30)
            await wait_for(
                lambda: all(j["id"] in env.platform.results() for j in while_down),
                30,
                "jobs claimed while h2 is down answered",
            )
            assert {validator.state.jobs[j["id"]].host for j in while_down} <= {"h1", "h3"}
            assert stale in {vm["id"] for vm in h2.vms()}, "h2 kept its VMs while down"
            await asyncio.sleep(1.0)  # the port stays closed a while longer
            await h2.come_back()
            await wait_for(lambda: stale not in cvm_ids(env)[1], 15, "stale CVM removed")
            await wait_for(lambda: len(env.platform.results()) == 90, 30, "every result")
            results = env.platform.results()
            for job in first + while_down:
                assert len(results[job["id"]]) == 1, job["id"]
            failed = [
                results[j["id"]][0]["error"]
                for j in first
                if results[j["id"]][0]["error"] is not None
            ]
            assert all("host h2" in error for error in failed), failed
            claimed = [j for j in validator.state.jobs.values() if j.claimed_at is not None]
            assert all(job.id in results for job in claimed)
            await wait_for(lambda: job_vms_on(env) == [0, 0, 0], 15, "job VMs removed")
            cvms = cvm_ids(env)
            assert sum(len(ids) for ids in cvms) == 3, cvms  # nothing duplicated
            held = {c.vm_id for c in validator.state.challenges.values()}
            assert held == set().union(*cvms)
            assert validator.ctx.hosts["h2"].quota.get_usage().allocations == 0
            assert validator.state.hosts["h2"].state is HostState.UP
            errors = [e.message for e in validator.state.events if e.kind == "conflict"]
            assert errors == []


async def test_drain_moves_cvms_lets_running_jobs_finish_then_shows_drained():
    async with DemoEnvironment(
        seed=33,
        jobs_per_minute=0,
        boot_seconds=0.2,
        evaluator_latency_s=1.0,
        resource_limits=LIMITS,
        engine=FAST,
        hosts=3,
    ) as env:
        async with running(env.config) as validator:
            cvm_on_h1 = next(c for c in validator.state.challenges.values() if c.host == "h1")
            old_cvm = cvm_on_h1.vm_id
            jobs = env.platform.add_jobs(30)

            def running_on_h1() -> set[str]:
                return {
                    job.id
                    for job in validator.state.jobs.values()
                    if job.host == "h1" and job.state is JobState.RUNNING
                }

            await wait_for(lambda: len(running_on_h1()) >= 2, 20, "jobs running on h1")
            there = {j.id for j in validator.state.jobs.values() if j.host == "h1"}
            drained = await validator.commands.drain_host("h1")
            assert drained.ok and "1 challenge CVMs move" in drained.message, drained.message
            assert validator.state.hosts["h1"].state is HostState.DRAINING
            creates = env.host_of("h1").stats["CreateVm"]
            await wait_for(
                lambda: validator.state.hosts["h1"].state is HostState.DRAINED, 20, "drained"
            )
            await wait_for(lambda: len(env.platform.results()) == 30, 30, "every result")
            results = env.platform.results()
            assert all(results[job_id][0]["error"] is None for job_id in there)
            assert env.host_of("h1").stats["CreateVm"] == creates, "a VM placed on h1"
            assert {j.id for j in validator.state.jobs.values() if j.host == "h1"} == there
            moved = validator.state.challenges[cvm_on_h1.id]
            assert moved.host in ("h2", "h3") and moved.vm_id != old_cvm
            assert cvm_ids(env)[0] == set() and sum(len(ids) for ids in cvm_ids(env)) == 3
            assert all(len(results[j["id"]]) == 1 for j in jobs)
            again = await validator.commands.drain_host("h1")
            assert not again.ok and "already drained" in again.message
            assert (await validator.commands.undrain_host("h1")).ok
            assert validator.state.hosts["h1"].state is HostState.UP
            assert validator.ctx.store.draining_hosts() == set()
            more = env.platform.add_jobs(12)
            await wait_for(lambda: all(j["id"] in env.platform.results() for j in more), 30)
            assert "h1" in {validator.state.jobs[j["id"]].host for j in more}


async def test_gpu_jobs_get_distinct_slots_attached_and_shown_by_get_info():
    limits = ResourceLimits(cpu_cores=32, memory_mb=65536, disk_mb=2_000_000, gpu_count=2)
    async with DemoEnvironment(
        seed=34,
        jobs_per_minute=0,
        boot_seconds=0,
        evaluator_latency_s=1.5,
        resource_limits=limits,
        engine=FAST,
        hosts=2,
        gpus=2,
    ) as env:
        env.config = env.config.model_copy(
            update={"job_vm": env.config.job_vm.model_copy(update={"gpu": 1})}
        )
        async with running(env.config, challenges=3) as validator:
            jobs = env.platform.add_jobs(6)
            slots: dict[str, str] = {}

            def attached() -> int:
                for host, sim in zip(("h1", "h2"), env.vmms, strict=True):
                    for vm in sim.vms():
                        if "-job-" in vm["name"] and vm["status"] == "running":
                            slots[vm["id"]] = host
                return sum(1 for _ in slots)

            await wait_for(lambda: attached() >= 4, 20, "four GPU job VMs at once")
            running_now = []
            for host, sim in zip(("h1", "h2"), env.vmms, strict=True):
                client = validator.ctx.hosts[host].vmm
                for vm in sim.vms():
                    if "-job-" in vm["name"] and vm["status"] == "running":
                        info = await client.get_info(vm["id"])
                        assert info is not None and info.configuration is not None
                        gpus = info.configuration.gpus
                        assert gpus is not None and gpus.attach_mode == "listed"
                        running_now.append((host, tuple(g.slot for g in gpus.gpus)))
            assert len(running_now) == len(set(running_now)) == 4, running_now
            assert all(len(slot) == 1 for _, slot in running_now)
            assert validator.state.hosts["h1"].gpu_slots == ("18:00.0", "2a:00.0")
            await wait_for(lambda: len(env.platform.results()) == 6, 30, "six results")
            assert all(env.platform.results()[j["id"]][0]["error"] is None for j in jobs)
            cvm = next(iter(env.vmms[0].vms()))
            info = await validator.ctx.hosts["h1"].vmm.get_info(cvm["id"])
            assert info is not None and info.configuration is not None
            assert info.configuration.gpus is not None and info.configuration.gpus.gpus == []
            for host in validator.ctx.hosts:
                assert host.quota.get_usage().used.gpu == 0
