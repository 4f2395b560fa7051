"""Chaos of restarts: the VMM dies and comes back empty (a host reboot) every `--interval`
seconds for `--duration` seconds while the platform announces `--rate` jobs a minute, through
the real engine and the simulators (in-process, as bench/chaos.py).

Counted: jobs that failed for a reason of ours (must be 0): any failure other than the job's
own VM dying with the host (its evaluator or VM gone mid-run, "VM lost"), which is the one
failure a host reboot causes by design; jobs announced while the VMM was down or in the first
second after it answered, and how they ended; the challenge CVMs created per restart (one per
challenge) and how long claims waited after the VMM answered.

    .venv/bin/python bench/vmm_restarts.py                       # 10 min, every 60 s, 60/min
    .venv/bin/python bench/vmm_restarts.py --duration 180 --interval 30
    .venv/bin/python bench/vmm_restarts.py --rate 0 --during 6 --duration 90 --interval 30

The last is the issue's case: nothing runs when the VMM dies, six jobs are announced while it is
down, so the reconciler's probe is what hears it answer again.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial

from benchlib import median, print_machine

from tests.support.engine import all_challenges_active, running, wait_for
from validator_tui.demo import DemoEnvironment
from validator_tui.engine.validator import Validator

CHALLENGES = 3
ENGINE = {"vm_poll_interval_s": 0.2, "job_timeout_s": 120.0, "boot_timeout_s": 30.0}
#: Errors of a job whose own VM died with the host (the only failure a reboot may cause).
VM_DIED = ("VM lost", "evaluator on VM")
ID = re.compile(r"[0-9a-f]{8}-[0-9a-f-]{27}")


@dataclass
class Restart:
    """One reboot of the VMM: when it answered again and what followed."""

    answered_at: float
    cvms: set[str] = field(default_factory=set)
    active_after_s: float | None = None


@dataclass
class Run:
    """What the run saw."""

    restarts: list[Restart] = field(default_factory=list)
    #: (start, end) of each window in which a job announced counts as "during a restart":
    #: from going down until 1 s after answering again.
    windows: list[tuple[float, float]] = field(default_factory=list)
    #: When each job was first seen at the platform (wall time, within 0.1 s).
    announced: dict[str, float] = field(default_factory=dict)


def cause(error: str | None) -> str:
    """`ok`, `vm died` (the job's own VM went with the host) or `ours` (anything else)."""
    if error is None:
        return "ok"
    return "vm died" if any(text in error for text in VM_DIED) else "ours"


async def watch(env: DemoEnvironment, run: Run, stop: asyncio.Event) -> None:
    """Note when each job was announced, and collect the challenge CVMs the VMM lists after
    each restart (every one is new)."""
    while not stop.is_set():
        now = time.time()
        for job in env.platform.jobs():
            run.announced.setdefault(job["id"], now)
        if run.restarts and env.vmm.serving:
            names = {vm["id"] for vm in env.vmm.vms() if "-ch-" in vm["name"]}
            run.restarts[-1].cvms |= names
        await asyncio.sleep(0.1)


async def restarts(
    env: DemoEnvironment, validator: Validator, run: Run, args: argparse.Namespace
) -> None:
    """Reboot the VMM at every multiple of `interval` seconds within `duration`."""
    started = time.monotonic()
    count = 1
    while count * args.interval < args.duration:
        await asyncio.sleep(max(0.0, started + count * args.interval - time.monotonic()))
        count += 1
        old = {c.vm_id for c in validator.state.challenges.values()}
        went_down = time.time()
        await env.vmm.go_down()
        env.vmm.restart_empty()
        for _ in range(args.during):
            await asyncio.sleep(args.down / (args.during + 1))
            env.platform.add_job()
        await asyncio.sleep(max(0.0, went_down + args.down - time.time()))
        await env.vmm.come_back()
        restart = Restart(time.time())
        run.restarts.append(restart)
        run.windows.append((went_down, restart.answered_at + 1.0))
        await wait_for(partial(replaced, validator, old), 120.0, "the CVMs active again")
        restart.active_after_s = time.time() - restart.answered_at
        print(
            f"restart {len(run.restarts)}: CVMs active again {restart.active_after_s:.1f} s "
            "after the VMM answered",
            flush=True,
        )
    await asyncio.sleep(max(0.0, started + args.duration - time.monotonic()))


def replaced(validator: Validator, old: set[str | None]) -> bool:
    """Every challenge has a new CVM (none of `old`), active."""
    fresh = all(c.vm_id not in old for c in validator.state.challenges.values())
    return fresh and all_challenges_active(validator, CHALLENGES)


def in_window(at: float, windows: list[tuple[float, float]]) -> bool:
    return any(start <= at <= end for start, end in windows)


async def main_async(args: argparse.Namespace) -> int:
    async with DemoEnvironment(
        seed=args.seed,
        jobs_per_minute=args.rate,
        boot_seconds=args.boot_seconds,
        evaluator_latency_s=args.evaluator_s,
        engine=ENGINE,
        challenges=CHALLENGES,
    ) as env:
        assert env.config is not None
        async with running(env.config, challenges=CHALLENGES) as validator:
            run = Run()
            stop = asyncio.Event()
            watcher = asyncio.create_task(watch(env, run, stop))
            started = time.monotonic()
            await restarts(env, validator, run, args)
            env.platform.set_job_rate(0)
            deadline = time.monotonic() + 300.0
            while time.monotonic() < deadline and (
                validator.running_job_count()
                or any(job["status"] in ("pending", "claimed") for job in env.platform.jobs())
            ):
                await asyncio.sleep(0.5)
            stop.set()
            await watcher
            seconds = time.monotonic() - started
            return report(env, validator, run, seconds)


def report(env: DemoEnvironment, validator: Validator, run: Run, seconds: float) -> int:
    """Print the figures; 1 if a job failed for a reason of ours or a restart churned."""
    results = env.platform.results()
    jobs = env.platform.jobs()
    outcomes: Counter[str] = Counter()
    near: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for job in jobs:
        bodies = results.get(job["id"])
        kind = "no result" if not bodies else cause(bodies[0]["error"])
        outcomes[kind] += 1
        seen = run.announced.get(job["id"])
        if seen is not None and in_window(seen, run.windows):
            near[kind] += 1
        if kind in ("ours", "vm died") and bodies:
            errors[f"{kind}: {ID.sub('<id>', str(bodies[0]['error']))[:140]}"] += 1
    per_restart = [len(restart.cvms) for restart in run.restarts]
    claimed = sorted(j.claimed_at for j in validator.state.jobs.values() if j.claimed_at)
    resumed = [
        next((at for at in claimed if at >= r.answered_at), r.answered_at) - r.answered_at
        for r in run.restarts
    ]
    active = [r.active_after_s for r in run.restarts if r.active_after_s is not None]
    print(f"\nran {seconds:.0f} s: {len(run.restarts)} restarts, {len(jobs)} jobs announced")
    print(f"outcomes: {dict(sorted(outcomes.items()))}")
    print(f"announced while down or within 1 s of the answer: {dict(sorted(near.items()))}")
    print(f"failed for a reason of ours: {outcomes['ours']}")
    for text, count in errors.most_common():
        print(f"  {count:4d}  {text}")
    print(f"CVMs created per restart: {per_restart} (one per challenge: {CHALLENGES})")
    if active:
        print(f"CVMs active again after the VMM answered: median {median(active):.1f} s")
    if resumed:
        print(f"first claim after the VMM answered: median {median(resumed):.1f} s")
    churn = any(count != CHALLENGES for count in per_restart)
    return 1 if outcomes["ours"] or outcomes["no result"] or churn else 0


def main() -> int:
    parser = argparse.ArgumentParser(description="VMM restarted empty, again and again")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of restarts")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between restarts")
    parser.add_argument("--down", type=float, default=8.0, help="seconds the VMM is down")
    parser.add_argument("--rate", type=float, default=60.0, help="jobs announced a minute")
    parser.add_argument(
        "--during", type=int, default=0, help="more jobs announced while the VMM is down"
    )
    parser.add_argument("--boot-seconds", type=float, default=2.0, help="VM boot time")
    parser.add_argument("--evaluator-s", type=float, default=0.5, help="evaluation time")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.down >= args.interval:
        parser.error("--down must be shorter than --interval")
    print_machine()
    print(
        f"VMM restarted empty every {args.interval:g} s (down {args.down:g} s) for "
        f"{args.duration:g} s at {args.rate:g} jobs/min",
        flush=True,
    )
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
