"""What the engine's records tell the operator: cancelled jobs, kept VM logs, why pending jobs
wait, challenge CVMs after the operator's stop/start/remove, requests per booting VM."""

from __future__ import annotations

import asyncio
import json
import logging
import re

import httpx

from tests.support.engine import FAST, challenge_resources, job_vms, running, wait_for
from validator_tui.clients.vmm import VmmClient
from validator_tui.config import ResourceLimits
from validator_tui.demo import DemoEnvironment
from validator_tui.engine.state import EngineState
from validator_tui.engine.tasks import TaskRegistry
from validator_tui.engine.vm_ready import VmNotReady, VmWatcher
from validator_tui.models.vmm import PortMapping, VmConfiguration
from validator_tui.shared.records import ChallengeState, JobState, VmKind, VmRecord

COMPOSE = json.dumps({"manifest_version": 2, "name": "evaluator", "runner": "docker-compose"})


def _state(validator, job_id: str) -> JobState | None:
    job = validator.state.jobs.get(job_id)
    return None if job is None else job.state


async def test_operator_cancel_counts_as_cancelled_not_failed():
    handlers_before = list(logging.getLogger().handlers)
    async with DemoEnvironment(seed=6, jobs_per_minute=0, boot_seconds=0, engine=FAST) as env:
        async with running(env.config) as validator:
            job = env.platform.add_job(code="#sim:hang")
            await wait_for(lambda: _state(validator, job["id"]) is JobState.RUNNING, 5)
            assert (await validator.commands.cancel(job["id"])).ok
            await wait_for(lambda: _state(validator, job["id"]) is JobState.CANCELLED, 5)
            body = env.platform.results()[job["id"]][0]
            assert body["error"] == "cancelled by operator" and body["score"] == 0
            counters = validator.state.header.counters
            assert counters.cancelled == 1 and counters.failed == 0
            record = validator.state.jobs[job["id"]]
            assert record.error == "cancelled by operator"
        lines = (env.config.state_path / "validator.log").read_text().splitlines()
        cancelled = [line for line in lines if f"job={job['id']}" in line and "cancelled" in line]
        assert cancelled and re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ INFO ", cancelled[-1])
        assert any("challenge CVM active" in line for line in lines)
        assert logging.getLogger().handlers == handlers_before


async def test_job_vm_log_is_kept_after_the_vm_is_removed():
    async with DemoEnvironment(seed=8, jobs_per_minute=0, boot_seconds=0, engine=FAST) as env:
        async with running(env.config) as validator:
            job = env.platform.add_job()
            await wait_for(lambda: _state(validator, job["id"]) is JobState.COMPLETED, 10)
            await wait_for(lambda: not job_vms(env), 5, "job VM removed")
            record = validator.state.jobs[job["id"]]
            assert record.vm_id is not None and record.vm_id not in validator.state.vms
            assert 0 < len(record.vm_log) <= 200
            assert any("health check" in line for line in record.vm_log)
            assert all("\x1b" not in line for line in record.vm_log)
            served = [line async for line in validator.commands.vm_logs(record.vm_id, follow=True)]
            assert served[:-1] == list(record.vm_log)
            assert served[-1] == (
                f"[validator] VM {record.vm_id} of job {job['id']} is gone: "
                f"its last {len(record.vm_log)} log lines kept"
            )


async def test_pending_jobs_say_why_they_wait():
    # Room for the three challenge CVMs (2 vCPU each) and exactly one job VM (2 vCPU).
    limits = ResourceLimits(cpu_cores=8, memory_mb=65536, disk_mb=2_000_000, gpu_count=0)
    async with DemoEnvironment(
        seed=9, jobs_per_minute=0, boot_seconds=0, resource_limits=limits, engine=FAST
    ) as env:
        env.config.engine.reserve_job_vms = 0
        async with running(env.config) as validator:
            await validator.commands.set_auto_claim(False)
            job = env.platform.add_job()
            await wait_for(lambda: job["id"] in validator.state.jobs, 5)
            await wait_for(
                lambda: validator.state.jobs[job["id"]].waiting_reason == "auto-claim off", 5
            )
            await validator.commands.set_auto_claim(True)
            hanging = env.platform.add_job(code="#sim:hang")
            await wait_for(lambda: _state(validator, job["id"]) is JobState.COMPLETED, 10)
            await wait_for(lambda: _state(validator, hanging["id"]) is JobState.RUNNING, 10)
            waiting = env.platform.add_job()
            await wait_for(lambda: waiting["id"] in validator.state.jobs, 5)
            record = validator.state.jobs[waiting["id"]]
            await wait_for(lambda: record.waiting_reason.startswith("waiting for capacity"), 5)
            assert record.waiting_reason == "waiting for capacity (needs 2 vCPU, 0 free)"
            assert record.state is JobState.PENDING
            assert (await validator.commands.cancel(hanging["id"])).ok
            await wait_for(lambda: _state(validator, waiting["id"]) is JobState.COMPLETED, 10)
            assert validator.state.jobs[waiting["id"]].waiting_reason == ""


async def test_challenge_record_through_stop_start_and_remove():
    async with DemoEnvironment(seed=10, jobs_per_minute=0, boot_seconds=0.3, engine=FAST) as env:
        async with running(env.config) as validator:
            challenge = next(iter(validator.state.challenges.values()))
            first_vm = challenge.vm_id
            assert first_vm is not None and challenge.jobs_run == 0
            assert (await validator.commands.stop_vm(first_vm)).ok
            record = validator.state.challenges[challenge.id]
            assert record.state is ChallengeState.STOPPED and record.active_since is None
            assert record.reason == "stopped by operator"
            assert not validator.challenges.is_active(challenge.id)

            assert (await validator.commands.start_vm(first_vm)).ok
            assert record.state in (ChallengeState.BOOTING, ChallengeState.ACTIVE)
            await validator.reconciler.reconcile()
            await wait_for(
                lambda: record.state is ChallengeState.ACTIVE and record.vm_status == "running",
                10,
                "active again after start",
            )
            await wait_for(lambda: validator.challenges.is_active(challenge.id), 10)
            assert record.vm_id == first_vm and record.active_since is not None

            assert (await validator.commands.remove_vm(first_vm)).ok
            assert record.vm_id != first_vm
            assert record.state is not ChallengeState.ACTIVE and record.state in (
                ChallengeState.PENDING,
                ChallengeState.FETCHING,
                ChallengeState.PROVISIONING,
                ChallengeState.BOOTING,
            )
            await wait_for(lambda: record.state is ChallengeState.ACTIVE, 15, "re-provisioned")
            assert record.vm_id not in (None, first_vm)
            assert record.vm_status == "running"
            texts = [entry.text for entry in record.history]
            assert "stopped: stopped by operator" in texts
            assert "pending: CVM removed by operator: provisioning a new one" in texts
            assert texts[-1] == "active"
            job = env.platform.add_job(challenge_id=challenge.id)
            await wait_for(lambda: _state(validator, job["id"]) is JobState.COMPLETED, 10)
            assert record.jobs_run == 1
            await wait_for(lambda: validator.ctx.hosts.get_usage().allocations == 3, 5)
            assert validator.ctx.hosts.get_usage().used == challenge_resources()


async def test_booting_vms_share_one_status_request():
    async with DemoEnvironment(seed=11, jobs_per_minute=0, boot_seconds=2.0) as env:
        state = EngineState("x")
        tasks = TaskRegistry()
        async with (
            VmmClient(env.vmm.url) as vmm,
            httpx.AsyncClient(trust_env=False) as http,
        ):
            watcher = VmWatcher(vmm, http, state, tasks, max_interval=0.5)
            ports = env.config.host_ports
            vm_ids = []
            for index in range(20):
                port = ports.start + 100 + index
                config = VmConfiguration(
                    name=f"watch-{index}",
                    image="dstack-0.5.2",
                    compose_file=COMPOSE,
                    vcpu=1,
                    memory=512,
                    disk_size=1,
                    ports=[PortMapping(host_port=port, vm_port=ports.evaluator_port)],
                )
                vm_id = await vmm.create_vm(config)
                state.put_vm(VmRecord(vm_id, config.name, VmKind.JOB, f"job-{index}"))
                vm_ids.append((vm_id, f"http://127.0.0.1:{port}/health"))
            before = dict(env.vmm.stats)
            took = await asyncio.gather(
                *(watcher.wait_ready(vm_id, url, timeout=20) for vm_id, url in vm_ids)
            )
            status_calls = env.vmm.stats.get("Status", 0) - before.get("Status", 0)
            assert all(seconds > 1.0 for seconds in took)
            # 20 VMs booting for 2 s, asked about at most every 0.5 s: one request serves all
            # of them (the first few are quick, 5 ms doubling), never one per VM per poll.
            assert status_calls <= 15, status_calls
            assert env.vmm.stats.get("GetInfo", 0) == before.get("GetInfo", 0)
            assert all(state.vms[vm_id].boot_progress == "done" for vm_id, _ in vm_ids)
            assert watcher.watching == 0

            spare = [PortMapping(host_port=ports.start + 150, vm_port=ports.evaluator_port)]
            lost = config.model_copy(update={"name": "watch-lost", "ports": spare})
            lost_id = await vmm.create_vm(lost)
            waiting = asyncio.create_task(watcher.wait_ready(lost_id, vm_ids[0][1], timeout=10))
            await asyncio.sleep(0.1)
            env.vmm.restart_empty()
            try:
                await waiting
            except VmNotReady as exc:
                assert "VM lost" in str(exc)
            else:
                raise AssertionError("a VM the VMM forgot must not be reported ready")
        await tasks.cancel_all(1.0)
