"""Two validators with the same hotkey on one VMM (two state dirs: the lock cannot see it):
neither adopts, removes or disturbs the other's VMs; both say so in the event log and the
header."""

from __future__ import annotations

import asyncio

from tests.support.engine import FAST, running, wait_for
from validator_tui.demo import DemoEnvironment
from validator_tui.engine import loops as loops_module


async def test_same_hotkey_engines_leave_each_others_vms_alone_and_say_so(tmp_path, monkeypatch):
    monkeypatch.setattr(loops_module, "RECONCILE_INTERVAL_S", 0.3)
    async with DemoEnvironment(
        seed=51, jobs_per_minute=0, boot_seconds=0, engine=FAST, state_dir=str(tmp_path / "a")
    ) as env:
        assert env.config is not None
        env.vmm.set_evaluator(latency_s=2.0)
        twin = env.make_config(env.config.validator_hotkey, tmp_path / "b")
        async with running(env.config) as first:
            cvms = {c.id: c.vm_id for c in first.state.challenges.values()}
            async with running(twin) as second:
                assert {c.id: c.vm_id for c in first.state.challenges.values()} == cvms
                assert set(cvms.values()) <= {vm["id"] for vm in env.vmm.vms()}
                assert not set(cvms.values()) & {c.vm_id for c in second.state.challenges.values()}
                engines = (first, second)
                conflicts: set[int] = set()

                async def watch() -> None:
                    while True:
                        for index, engine in enumerate(engines):
                            if engine.state.header.conflict:
                                conflicts.add(index)
                        await asyncio.sleep(0.05)

                watcher = asyncio.create_task(watch())
                jobs = [job["id"] for job in env.platform.add_jobs(12)]
                await wait_for(
                    lambda: all(job in env.platform.results() for job in jobs), 60, "12 results"
                )
                watcher.cancel()
                results = env.platform.results()
                assert all(len(results[job]) == 1 for job in jobs)
                assert [results[job][0]["error"] for job in jobs] == [None] * 12
                assert conflicts == {0, 1}, "both engines should have seen the other's VMs"
                for engine in engines:
                    lines = [e.message for e in engine.state.events if e.kind == "conflict"]
                    assert any("another validator with the same hotkey" in line for line in lines)
                    removals = [
                        e.message
                        for e in engine.state.events
                        if "removed orphaned" in e.message or "stale CVM" in e.message
                    ]
                    assert removals == []
                assert {c.id: c.vm_id for c in first.state.challenges.values()} == cvms
