"""SIGKILL the headless engine driving three dstack hosts (one over a unix socket), restart it:
challenge CVMs adopted where they are, orphaned job VMs removed on every host, one result per
claimed job."""

from __future__ import annotations

import random
import signal
from pathlib import Path

from tests.support.crash import crash_cycles, final_engine, start_engine
from tests.support.engine import wait_for
from tests.support.identities import ALICE
from validator_tui.config_io import write_config
from validator_tui.demo import DemoEnvironment


def live(env: DemoEnvironment, kind: str) -> list[set[str]]:
    """Per host, the ids of its live VMs whose name has `kind` (`-ch-` or `-job-`)."""
    return [
        {vm["id"] for vm in sim.vms() if kind in vm["name"] and vm["status"] != "removing"}
        for sim in env.vmms
    ]


async def kill_when(
    env: DemoEnvironment, workdir: Path, ready: object, what: str, timeout: float = 30.0
) -> None:
    """Start the engine, SIGKILL it as soon as `ready()` holds."""
    process = await start_engine(workdir / "config.toml", workdir / "engine.log")
    try:
        await wait_for(ready, timeout, what)  # type: ignore[arg-type]
    finally:
        process.send_signal(signal.SIGKILL)
        await process.wait()


async def test_kill_9_restart_over_three_hosts_adopts_in_place_and_cleans_every_host(tmp_path):
    engine = {"poll_interval_s": 0.5, "vm_poll_interval_s": 0.05, "job_timeout_s": 30.0}
    async with DemoEnvironment(
        seed=41,
        jobs_per_minute=900,
        boot_seconds=0.3,
        engine=engine,
        state_dir=str(tmp_path),
        hosts=3,
        unix_hosts=1,
    ) as env:
        for sim in env.vmms:
            sim.set_evaluator(latency_s=0.5)
        config = env.config
        write_config(config, tmp_path / "config.toml")
        await kill_when(
            env, tmp_path, lambda: all(len(ids) == 1 for ids in live(env, "-ch-")), "a CVM per host"
        )
        await crash_cycles(config, tmp_path, cycles=3, rng=random.Random(41), max_up=2.5)
        await kill_when(
            env, tmp_path, lambda: all(live(env, "-job-")), "job VMs on every host at the kill"
        )
        env.platform.set_job_rate(0)
        cvms_before = live(env, "-ch-")
        orphans = live(env, "-job-")
        assert all(orphans), orphans
        async with final_engine(config, tmp_path) as (settle, runner):

            def all_answered() -> bool:
                claimed = [j for j in env.platform.jobs() if j["claimed_by"] == ALICE]
                results = env.platform.results()
                pending = [j for j in env.platform.jobs() if j["status"] == "pending"]
                return not pending and all(j["id"] in results for j in claimed)

            await wait_for(all_answered, 90, "every claimed job answered")
            await wait_for(lambda: not any(live(env, "-job-")), 20, "job VMs removed")
            # The orphans went on every host; the CVMs stayed where they were, the same VMs (a CVM
            # created again would have a new id).
            assert live(env, "-ch-") == cvms_before
            assert all(len(ids) == 1 for ids in cvms_before), cvms_before
            settle.set()
            assert await runner == 0
            results = env.platform.results()
            claimed = [j for j in env.platform.jobs() if j["claimed_by"] == ALICE]
            assert len(claimed) > 20
            for job in claimed:
                assert len(results[job["id"]]) == 1, job["id"]
            restarted = [
                j for j in claimed if results[j["id"]][0]["error"] == "validator restarted"
            ]
            assert len(restarted) >= sum(len(ids) for ids in orphans)
