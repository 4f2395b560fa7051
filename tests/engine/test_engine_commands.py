"""Operator commands in any order never corrupt quota or state."""

from __future__ import annotations

import asyncio
import random

from tests.support.engine import all_challenges_active, running, wait_for
from validator_tui.demo import DemoEnvironment
from validator_tui.shared.records import JobState, Resources, VmKind

FAST = {"poll_interval_s": 0.3, "vm_poll_interval_s": 0.05, "challenge_check_interval_s": 0.5}


async def test_random_command_storm_keeps_quota_exact():
    rng = random.Random(5)
    async with DemoEnvironment(seed=31, jobs_per_minute=0, boot_seconds=0.05, engine=FAST) as env:
        env.vmm.set_evaluator(latency_s=0.05)
        async with running(env.config) as validator:
            env.platform.add_jobs(60)
            outcomes = []
            for _ in range(150):
                jobs = list(validator.state.jobs.values())
                vms = list(validator.state.vms.values())
                challenges = list(validator.state.challenges)
                action = rng.choice(["claim", "cancel", "rebuild", "vm", "auto", "orm"])
                if action == "claim" and jobs:
                    outcomes.append(await validator.commands.claim(rng.choice(jobs).id))
                elif action == "cancel" and jobs:
                    outcomes.append(await validator.commands.cancel(rng.choice(jobs).id))
                elif action == "rebuild" and challenges:
                    outcomes.append(await validator.commands.rebuild(rng.choice(challenges)))
                elif action == "vm" and vms:
                    vm = rng.choice(vms)
                    command = rng.choice(
                        [
                            validator.commands.start_vm,
                            validator.commands.stop_vm,
                            validator.commands.remove_vm,
                        ]
                    )
                    outcomes.append(await command(vm.id))
                elif action == "auto":
                    outcomes.append(await validator.commands.set_auto_claim(rng.random() < 0.7))
                elif action == "orm" and challenges:
                    outcomes.append(
                        await validator.commands.orm_query(
                            rng.choice(challenges), "SELECT 1 AS one", []
                        )
                    )
                await asyncio.sleep(rng.uniform(0, 0.03))
            assert any(o.ok for o in outcomes) and any(not o.ok for o in outcomes)
            assert all(o.message for o in outcomes)
            await validator.commands.set_auto_claim(True)
            for challenge in list(validator.state.challenges.values()):
                if challenge.vm_id and challenge.vm_status in ("stopped", "exited"):
                    assert (await validator.commands.start_vm(challenge.vm_id)).ok
            await wait_for(lambda: all_challenges_active(validator), 60, "challenges active again")
            await wait_for(
                lambda: (
                    all(job.state.finished for job in validator.state.jobs.values())
                    and len(env.platform.results()) + _lost(validator) >= 60
                ),
                60,
                "every job finished",
            )
            await wait_for(lambda: validator.ctx.hosts.get_usage().allocations == 3, 10)
            held = [vm for vm in validator.state.vms.values() if vm.kind is VmKind.CHALLENGE]
            assert len(held) == 3
            usage = validator.ctx.hosts.get_usage()
            assert usage.used == Resources(vcpu=6, memory_mb=6144, disk_mb=3 * 20 * 1024)
            assert usage.ports_used == 3
            results = env.platform.results()
            assert all(len(bodies) == 1 for bodies in results.values())


def _lost(validator) -> int:
    return sum(
        1
        for job in validator.state.jobs.values()
        if job.state in (JobState.LOST, JobState.CANCELLED)
    )
