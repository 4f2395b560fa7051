"""SIGKILL the headless engine mid-run, restart it: exactly one result per claimed job."""

from __future__ import annotations

import random

from tests.support.crash import crash_cycles, final_engine
from tests.support.engine import wait_for
from tests.support.identities import ALICE
from validator_tui.demo import DemoEnvironment


def claimed_by_us(env: DemoEnvironment) -> list[dict]:
    return [job for job in env.platform.jobs() if job["claimed_by"] == ALICE]


async def test_kill_9_restart_cycles_lose_and_duplicate_nothing(tmp_path):
    engine = {"poll_interval_s": 0.5, "vm_poll_interval_s": 0.05, "job_timeout_s": 30.0}
    async with DemoEnvironment(
        seed=11, jobs_per_minute=600, boot_seconds=0.3, engine=engine, state_dir=str(tmp_path)
    ) as env:
        env.vmm.set_evaluator(latency_s=0.2)
        config = env.config
        await crash_cycles(config, tmp_path, cycles=5, rng=random.Random(11), max_up=2.5)
        env.platform.set_job_rate(0)
        async with final_engine(config, tmp_path) as (settle, runner):

            def all_answered() -> bool:
                claimed = claimed_by_us(env)
                results = env.platform.results()
                pending = [j for j in env.platform.jobs() if j["status"] == "pending"]
                return bool(claimed) and not pending and all(j["id"] in results for j in claimed)

            await wait_for(all_answered, 60, "every claimed job answered")
            settle.set()
            assert await runner == 0
            results = env.platform.results()
            claimed = claimed_by_us(env)
            assert len(claimed) > 10
            for job in claimed:
                assert len(results[job["id"]]) == 1, job["id"]
            assert set(results) == {job["id"] for job in claimed}
            restarted = [
                j for j in claimed if results[j["id"]][0]["error"] == "validator restarted"
            ]
            assert restarted, "no job was in flight at a kill: the test did not test anything"
            vms = env.vmm.vms()
            assert all("-ch-" in vm["name"] for vm in vms if vm["status"] != "removing")
            live = [vm for vm in vms if vm["status"] != "removing"]
            assert len(live) == 3
