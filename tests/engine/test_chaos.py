"""Chaos against the simulators: faults at a configured rate over ~100 jobs, and the invariant
(one accepted result per claimed job, no orphan VM, exact quota). The long run is
`bench/chaos.py --jobs 2000`; both run the same code."""

from __future__ import annotations

from tests.support.chaos import run_chaos
from tests.support.engine import FAST, running, wait_for
from validator_tui.demo import DemoEnvironment


async def test_100_jobs_under_faults_keep_the_invariant():
    report = await run_chaos(100, fault_rate=0.35, seed=7, jobs_per_second=40.0)
    assert report.problems == []
    assert sum(report.faults.values()) >= 25
    assert len(report.faults) >= 8, report.faults
    assert report.outcomes["scored"] >= 50
    assert sum(report.outcomes.values()) == 100
    unclaimed = sum(n for kind, n in report.outcomes.items() if kind.startswith("not claimed"))
    assert unclaimed <= report.faults["5xx_empty"]
    # Each hanging or NaN evaluation ends in an error result (checked job by job in
    # `problems`) unless the platform cancelled its job or it was never ours.
    failing = report.faults["hang"] + report.faults["nan_score"]
    assert failing >= 4, report.faults  # seed 7 draws 4, whatever the timing
    spared = report.faults["platform_cancel"] + unclaimed
    assert report.outcomes["error result"] >= failing - spared


async def test_reconciler_leaves_vms_being_removed_alone():
    async with DemoEnvironment(seed=31, jobs_per_minute=0, boot_seconds=0, engine=FAST) as env:
        async with running(env.config) as validator:
            for _ in range(5):
                job = env.platform.add_job()
                await wait_for(lambda job=job: job["id"] in env.platform.results(), 5, "result")
                removing = [vm for vm in env.vmm.vms() if vm["status"] == "removing"]
                await validator.reconciler.reconcile()
                if removing:
                    break
            assert removing, "no VM was caught while being removed"
            assert [e.message for e in validator.state.events if e.kind == "reconcile"] == []


async def test_late_claim_is_settled_by_a_poll_not_dead_lettered():
    """The claim lands 1.5 s after it was sent, past the 0.5 s request deadline: its answer is
    lost, so the engine does not run the job until a poll says whether it is ours; exactly one
    result either way, no dead letter. (Before unsure claims were settled, the job ran at once
    and its result overtook the claim: 403, retried.)"""
    engine = FAST | {"request_timeout_s": 0.5, "ws_backoff_cap_s": 0.3}
    async with DemoEnvironment(seed=32, jobs_per_minute=0, boot_seconds=0, engine=engine) as env:
        async with running(env.config) as validator:
            env.platform.inject_fault(status=0, delay_s=1.5, path_prefix="/jobs/", method="POST")
            job = env.platform.add_job()
            await wait_for(lambda: job["id"] in env.platform.results(), 15, "the result")
            assert len(env.platform.results()[job["id"]]) == 1
            assert env.platform.job(job["id"])["claimed_by"] == env.config.validator_hotkey
            assert validator.state.header.counters.dead_letters == 0
            notes = [entry.text for entry in validator.state.jobs[job["id"]].timeline]
            assert any("claim answer lost" in note for note in notes), notes
