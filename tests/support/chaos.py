"""Chaos: N jobs through the real engine while the simulators misbehave at a configured rate.

Faults: Platform 5xx with and without a body on every REST route, requests delayed past the
request timeout, slow answers, WebSocket drops, VMM CreateVm errors, job VMs that never boot,
job VMs that crash, evaluators that hang past the job timeout or answer NaN, platform
cancellations of running jobs, and outages through TCP fault proxies (one at a time, 0.3-1.2 s
each): the platform refusing connections, black-holed, or trickling; the VMM refusing
connections; the VMM restarting empty (every VM forgotten). Invariant checked at the end: every
job the platform recorded as claimed by us has exactly one accepted result (or was cancelled by
the platform and has none), no job stays unclaimed, there is no dead letter, every successful
result carries the simulator's score, no job VM is left, quota is back to exactly the challenge
CVMs, and the engine never had to reap a job VM it lost track of.

`tests/engine/test_chaos.py` runs ~100 jobs; `bench/chaos.py --jobs 2000` the long run.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.support.outage import behind_proxies
from tests.support.proxy import FaultProxy, Mode
from validator_tui.config import ResourceLimits
from validator_tui.demo import DemoEnvironment
from validator_tui.engine.validator import Validator
from validator_tui.shared.records import ChallengeState, Resources
from validator_tui.sim.scoring import score_for_code

REQUEST_TIMEOUT_S = 0.5
ENGINE = {
    "poll_interval_s": 0.5,
    "vm_poll_interval_s": 0.05,
    "request_timeout_s": REQUEST_TIMEOUT_S,
    "boot_timeout_s": 1.0,
    "job_timeout_s": 1.5,
    "ws_backoff_cap_s": 0.5,
    "challenge_check_interval_s": 5.0,
}
ROUTES = (
    ("GET", "/jobs/pending"),
    ("POST", "/jobs/"),
    ("POST", "/challenges/"),
    ("GET", "/challenges/active"),
)
FAULTS = (
    "5xx_body",
    "5xx_empty",
    "timeout",
    "slow",
    "ws_drop",
    "create_vm_error",
    "never_boot",
    "crash_vm",
    "hang",
    "nan_score",
    "platform_cancel",
    "platform_refused",
    "platform_blackhole",
    "platform_trickle",
    "vmm_refused",
    "vmm_restart",
)
OUTAGE_S = (0.3, 1.2)
#: Job codes whose evaluation cannot succeed: their one result must be an error.
FAILING_CODES = frozenset({"#sim:hang", "#sim:score=nan"})
#: Faults that take a proxy down for a while: one at a time.
OUTAGES = frozenset({"platform_refused", "platform_blackhole", "platform_trickle", "vmm_refused"})


@dataclass
class ChaosReport:
    """What happened, and every broken invariant (empty `problems` = the run passed)."""

    jobs: int
    seconds: float = 0.0
    faults: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    #: What the engine went through: claims, lost claim answers, outage seconds, …
    engine: Counter[str] = field(default_factory=Counter)


class FaultMaker:
    """Injects one random fault at a time through the simulators' in-process controls."""

    def __init__(
        self,
        env: DemoEnvironment,
        validator: Validator,
        rng: random.Random,
        proxies: tuple[FaultProxy, FaultProxy],
    ) -> None:
        self.env = env
        self.validator = validator
        self.rng = rng
        self.platform_proxy, self.vmm_proxy = proxies
        self.counts: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._outage: asyncio.Task[None] | None = None
        self.outage_seconds = 0.0

    def inject(self) -> str | None:
        """Inject a random fault; returns the job code to use for the next job, if any.

        Which faults come, in which order, depends on the seed alone: a fault that finds nothing
        to act on (no VM running to crash) still draws its number, so timing never changes
        the sequence."""
        kind = self.rng.choice(FAULTS)
        outage_running = self._outage is not None and not self._outage.done()
        while outage_running and kind in OUTAGES:
            kind = self.rng.choice(FAULTS)
        self.counts[kind] += 1
        platform_sim, vmm = self.env.platform, self.env.vmm
        method, prefix = self.rng.choice(ROUTES)
        if kind == "5xx_body":
            status = self.rng.choice((500, 502, 503, 504))
            body = self.rng.choice(('{"error": "overloaded"}', "<html>bad gateway</html>"))
            platform_sim.inject_fault(status=status, path_prefix=prefix, method=method, body=body)
        elif kind == "5xx_empty":
            platform_sim.inject_fault(status=503, path_prefix=prefix, method=method)
        elif kind == "timeout":
            delay = REQUEST_TIMEOUT_S * 1.6
            platform_sim.inject_fault(status=0, delay_s=delay, path_prefix=prefix, method=method)
        elif kind == "slow":
            delay = REQUEST_TIMEOUT_S * 0.6
            platform_sim.inject_fault(status=0, delay_s=delay, path_prefix=prefix, method=method)
        elif kind == "ws_drop":
            platform_sim.drop_websockets()
        elif kind == "create_vm_error":
            vmm.fail_next(
                "CreateVm", 1, "simulated VMM failure: out of memory", name_contains="-job-"
            )
        elif kind == "never_boot":
            vmm.set_boot(never=True, name_contains="-job-")
            self._later(0.3, lambda: vmm.set_boot(seconds=0.05))
        elif kind == "crash_vm":
            alive = [vm for vm in job_vms(self.env) if vm["status"] == "running"]
            pick = self.rng.random()
            if alive:
                vmm.crash(alive[int(pick * len(alive))]["id"], "simulated kernel panic")
        elif kind == "hang":
            return "#sim:hang"
        elif kind == "nan_score":
            return "#sim:score=nan"
        elif kind in OUTAGES:
            proxy = self.vmm_proxy if kind.startswith("vmm_") else self.platform_proxy
            mode: Mode = {"refused": "refuse", "blackhole": "blackhole", "trickle": "trickle"}[
                kind.split("_", 1)[1]
            ]
            self._start_outage(proxy, mode)
        elif kind == "vmm_restart":
            vmm.restart_empty()
        else:
            claimed = [j for j in platform_sim.jobs() if j["status"] == "claimed"]
            pick = self.rng.random()
            if claimed:
                platform_sim.cancel_job(claimed[int(pick * len(claimed))]["id"])
        return None

    def _start_outage(self, proxy: FaultProxy, mode: Mode) -> None:
        seconds = self.rng.uniform(*OUTAGE_S)
        self.outage_seconds += seconds

        async def outage() -> None:
            await proxy.set_mode(mode, interval=0.05)
            try:
                await asyncio.sleep(seconds)
            finally:
                await proxy.set_mode("up")

        self._outage = asyncio.create_task(outage())

    async def end_outage(self) -> None:
        """Wait for the outage in progress (if any) to end."""
        if self._outage is not None:
            await self._outage

    def _later(self, delay: float, action: Callable[[], None]) -> None:
        async def run() -> None:
            await asyncio.sleep(delay)
            action()

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def job_vms(env: DemoEnvironment) -> list[dict[str, Any]]:
    return [vm for vm in env.vmm.vms() if "-job-" in vm["name"]]


def settled(env: DemoEnvironment, validator: Validator) -> bool:
    """Nothing is left to happen: no job is claimed-and-unanswered, the engine is idle, and
    every job still pending at the platform is one the engine has given up on (lost)."""
    if validator.running_job_count() or validator.state.header.counters.outbox_pending:
        return False
    if any(job["status"] in ("claimed", "pending") for job in env.platform.jobs()):
        return False
    return not job_vms(env)


def check(env: DemoEnvironment, validator: Validator, report: ChaosReport) -> None:
    """Fill `report.outcomes` and `report.problems` from the final state."""
    assert env.config is not None and validator.ctx is not None
    hotkey = env.config.validator_hotkey
    results = env.platform.results()
    for job in env.platform.jobs():
        bodies = results.get(job["id"], [])
        if job["claimed_by"] != hotkey:
            report.outcomes[f"not claimed ({job['status']})"] += 1
            if bodies:
                report.problems.append(f"job {job['id']} has a result but was never claimed")
            continue
        if job["status"] == "cancelled" and not bodies:
            report.outcomes["cancelled by the platform"] += 1
            continue
        if len(bodies) != 1:
            report.problems.append(f"job {job['id']} ({job['status']}) has {len(bodies)} results")
            continue
        body = bodies[0]
        if job["code"] in FAILING_CODES and body["error"] is None:
            report.problems.append(f"job {job['id']} ({job['code']}) was scored, not failed")
        if body["error"] is None:
            report.outcomes["scored"] += 1
            if body["score"] != score_for_code(job["code"]):
                report.problems.append(f"job {job['id']}: score {body['score']} is not the sim's")
        else:
            report.outcomes["error result"] += 1
    for vm in job_vms(env):
        report.problems.append(f"job VM left behind: {vm['name']} ({vm['status']})")
    dead = validator.state.header.counters.dead_letters
    if dead:
        report.problems.append(f"{dead} results were dead-lettered")
    usage = validator.ctx.hosts.get_usage()
    challenges = len(validator.state.challenges)
    expected = Resources(vcpu=2 * challenges, memory_mb=2048 * challenges)
    if (usage.used.vcpu, usage.used.memory_mb) != (expected.vcpu, expected.memory_mb):
        report.problems.append(f"quota not back to the challenge CVMs: {usage.used}")
    if usage.allocations != challenges or usage.ports_used != challenges:
        report.problems.append(f"quota holds {usage.allocations} allocations, {challenges} CVMs")
    for event in validator.state.events:
        if event.kind == "reconcile":
            report.problems.append(f"engine lost track of a VM: {event.message}")
    counters = validator.state.header.counters
    report.engine["claims (200)"] = counters.claimed_total
    report.engine["claims lost (409/410/empty 5xx)"] = counters.lost
    for label, text in (
        ("claim answers lost", "claim answer lost"),
        ("platform down", f"{validator.ctx.platform.name} is not answering"),
        ("VMM down", f"{validator.ctx.hosts['default'].vmm.name} is not answering"),
        ("CVMs lost to a VMM restart", "lost (the VMM no longer has it)"),
    ):
        report.engine[label] = sum(text in e.message for e in validator.state.events)


async def _started(validator: Validator) -> None:
    await asyncio.wait_for(validator.wait_started(), 10)
    deadline = time.monotonic() + 15
    while not (
        len(validator.state.challenges) == 3
        and all(c.state is ChallengeState.ACTIVE for c in validator.state.challenges.values())
    ):
        if time.monotonic() > deadline:
            raise RuntimeError("challenge CVMs did not become active")
        await asyncio.sleep(0.01)


async def run_chaos(
    jobs: int,
    *,
    fault_rate: float = 0.2,
    seed: int = 0,
    jobs_per_second: float = 50.0,
    settle_timeout: float = 60.0,
) -> ChaosReport:
    """Run `jobs` jobs with a fault before each one with probability `fault_rate`."""
    rng = random.Random(seed)
    report = ChaosReport(jobs)
    limits = ResourceLimits(cpu_cores=6 + 16, memory_mb=65536, disk_mb=2_000_000, gpu_count=0)
    env = DemoEnvironment(
        seed=seed,
        jobs_per_minute=0,
        boot_seconds=0.05,
        resource_limits=limits,
        engine=ENGINE,
        evaluator_latency_s=0.02,
    )
    started = time.monotonic()
    async with env, behind_proxies(env) as (config, platform_proxy, vmm_proxy):
        validator = Validator(config)
        engine = asyncio.create_task(validator.run())
        try:
            await _started(validator)
            faults = FaultMaker(env, validator, rng, (platform_proxy, vmm_proxy))
            for _ in range(jobs):
                code = faults.inject() if rng.random() < fault_rate else None
                env.platform.add_job(code=code)
                await asyncio.sleep(rng.expovariate(jobs_per_second))
            await faults.end_outage()
            env.vmm.set_boot(seconds=0.05)
            deadline = time.monotonic() + settle_timeout
            while not settled(env, validator):
                if time.monotonic() > deadline:
                    report.problems.append("did not settle: jobs still claimed or running")
                    break
                await asyncio.sleep(0.05)
            report.faults = faults.counts
            report.engine["outage seconds"] = round(faults.outage_seconds)
            check(env, validator, report)
        finally:
            await validator.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(engine, 30)
    report.seconds = time.monotonic() - started
    return report
