"""Soak: the engine headless for a long time at a high job rate with faults on.

The engine runs in this process (headless logging to stderr); both simulators run in their own
processes, so the readings are the engine's alone. Every `--sample-s` seconds it records RSS,
open file descriptors, asyncio tasks, the SQLite files' size and the engine's in-memory record
counts; at the end it stops the job stream and the faults, waits for the engine to go idle,
checks the invariant (one accepted result per claimed job, no job VM left, quota back to the
challenge CVMs) and prints a table.

    .venv/bin/python bench/soak.py --minutes 30 2>/tmp/soak.log | tee /tmp/soak.out
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from benchlib import SimProcesses, bench_config, print_machine, rss_mb, sim_processes

from validator_tui.engine.validator import Validator
from validator_tui.headless import run_headless
from validator_tui.logs import setup_logging

ENGINE = {
    "poll_interval_s": 2.0,
    "request_timeout_s": 2.0,
    "boot_timeout_s": 4.0,
    "job_timeout_s": 8.0,
    "vm_poll_interval_s": 0.1,
    "ws_backoff_cap_s": 2.0,
    "max_job_history": 2000,
}
PATHS = ("/jobs/pending", "/jobs/", "/challenges/", "/challenges/active")


@dataclass(frozen=True)
class Sample:
    """One reading of the engine process."""

    minute: float
    rss_mb: float
    fds: int
    tasks: int
    sqlite_kb: float
    jobs_in_memory: int
    events: int
    claimed: int
    completed: int
    failed: int
    outbox: int


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--jobs-per-minute", type=float, default=300.0)
    parser.add_argument("--fault-every", type=float, default=2.0, metavar="S")
    parser.add_argument("--sample-s", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--boot-seconds", type=float, default=0.3)
    parser.add_argument("--eval-seconds", type=float, default=0.3)
    parser.add_argument("--cpu-cores", type=int, default=40, help="quota: 2 per VM")
    return parser.parse_args()


def sqlite_kb(state_dir: Path) -> float:
    """Size of the state database and its WAL/SHM files, in KB."""
    return sum(p.stat().st_size for p in state_dir.glob("state.sqlite3*")) / 1024.0


def sample(validator: Validator, started: float) -> Sample:
    c = validator.state.header.counters
    return Sample(
        minute=(time.monotonic() - started) / 60.0,
        rss_mb=rss_mb(),
        fds=len(os.listdir("/proc/self/fd")),
        tasks=len(asyncio.all_tasks()),
        sqlite_kb=sqlite_kb(validator.config.state_path),
        jobs_in_memory=len(validator.state.jobs),
        events=len(validator.state.events),
        claimed=c.claimed_total,
        completed=c.completed,
        failed=c.failed,
        outbox=c.outbox_pending,
    )


class Faults:
    """Random faults through the simulators' `/_sim/` control routes (cheap calls only: what
    this process allocates shows in the engine's RSS)."""

    def __init__(
        self,
        sims: SimProcesses,
        validator: Validator,
        rng: random.Random,
        args: argparse.Namespace,
    ) -> None:
        self.sims = sims
        self.validator = validator
        self.rng = rng
        self.args = args
        self.counts: dict[str, int] = {}

    async def post(self, base: str, path: str, body: dict[str, Any]) -> httpx.Response:
        return await self.sims.control.post(base + path, json=body)

    async def one(self) -> None:
        """Inject one fault picked at random."""
        platform, vmm = self.sims.platform_url, self.sims.vmm_url
        kind = self.rng.choice(
            ("5xx_body", "5xx_empty", "timeout", "slow", "ws_drop", "create_vm", "never_boot",
             "hang", "crash_vm", "platform_cancel")
        )  # fmt: skip
        self.counts[kind] = self.counts.get(kind, 0) + 1
        path = self.rng.choice(PATHS)
        timeout = ENGINE["request_timeout_s"]
        if kind == "5xx_body":
            body = {"status": self.rng.choice((500, 502, 503)), "path_prefix": path}
            await self.post(platform, "/_sim/faults", body | {"body": '{"error": "busy"}'})
        elif kind == "5xx_empty":
            await self.post(platform, "/_sim/faults", {"status": 502, "path_prefix": path})
        elif kind in ("timeout", "slow"):
            delay = timeout + 1.0 if kind == "timeout" else timeout / 2
            await self.post(
                platform, "/_sim/faults", {"status": 0, "delay_s": delay, "path_prefix": path}
            )
        elif kind == "ws_drop":
            await self.post(platform, "/_sim/ws/drop", {})
        elif kind == "create_vm":
            await self.post(vmm, "/_sim/fail", {"method": "CreateVm", "error": "no space"})
        elif kind == "never_boot":
            await self.post(vmm, "/_sim/boot", {"never": True, "name_contains": "-job-"})
            await asyncio.sleep(1.0)
            await self.post(vmm, "/_sim/boot", {"seconds": self.args.boot_seconds})
        elif kind == "hang":
            await self.post(platform, "/_sim/jobs", {"code": "#sim:hang"})
        elif kind == "crash_vm":
            vms = (await self.sims.control.get(vmm + "/_sim/vms")).json()
            jobs = [vm for vm in vms if "-job-" in vm["name"] and vm["status"] == "running"]
            if jobs:
                await self.post(vmm, "/_sim/crash", {"id": self.rng.choice(jobs)["id"]})
        else:
            running = [j.id for j in self.validator.state.jobs.values() if j.state.active]
            if running:
                job_id = self.rng.choice(running)
                await self.post(platform, f"/_sim/jobs/{job_id}/cancel", {})

    async def run(self, every: float) -> None:
        while True:
            await asyncio.sleep(self.rng.expovariate(1.0 / every))
            with contextlib.suppress(httpx.HTTPError):
                await self.one()


async def sampler(validator: Validator, every: float, out: list[Sample], started: float) -> None:
    while True:
        out.append(sample(validator, started))
        s = out[-1]
        print(
            f"  t={s.minute:6.1f} min rss={s.rss_mb:6.1f} MB fds={s.fds:4d} tasks={s.tasks:4d} "
            f"sqlite={s.sqlite_kb:8.1f} KB jobs={s.jobs_in_memory:5d} completed={s.completed}",
            flush=True,
        )
        await asyncio.sleep(every)


def idle(validator: Validator) -> bool:
    counters = validator.state.header.counters
    return validator.running_job_count() == 0 and counters.outbox_pending == 0


async def check_invariant(sims: SimProcesses, validator: Validator, hotkey: str) -> list[str]:
    """Problems with the end state (empty when the invariant holds)."""
    problems: list[str] = []
    jobs = await sims.jobs()
    results = (await sims.control.get(sims.platform_url + "/_sim/results")).json()["results"]
    for job in jobs:
        if job["claimed_by"] != hotkey:
            continue
        count = len(results.get(job["id"], []))
        if job["status"] == "cancelled" and count == 0:
            continue
        if count != 1:
            problems.append(f"job {job['id']} ({job['status']}) has {count} results")
    vms = (await sims.control.get(sims.vmm_url + "/_sim/vms")).json()
    orphans = [vm["id"] for vm in vms if "-job-" in vm["name"] and vm["status"] != "removing"]
    if orphans:
        problems.append(f"orphan job VMs: {orphans}")
    assert validator.ctx is not None
    usage = validator.ctx.hosts.get_usage()
    challenge_vcpu = 2 * len(validator.state.challenges)
    if usage.used.vcpu != challenge_vcpu or usage.allocations != len(validator.state.challenges):
        problems.append(f"quota not back to the challenge CVMs: {usage}")
    return problems


def print_samples(samples: list[Sample]) -> None:
    print("\n| minute | RSS MB | fds | tasks | SQLite KB | jobs in memory | events | "
          "claimed | completed | failed | outbox |")  # fmt: skip
    print("|" + "---|" * 11)
    for s in samples:
        print(
            f"| {s.minute:.1f} | {s.rss_mb:.1f} | {s.fds} | {s.tasks} | {s.sqlite_kb:.0f} | "
            f"{s.jobs_in_memory} | {s.events} | {s.claimed} | {s.completed} | {s.failed} | "
            f"{s.outbox} |"
        )
    if len(samples) >= 4:
        half = samples[len(samples) // 2 :]
        first, last = half[0], half[-1]
        print(
            f"\nsecond half drift: RSS {last.rss_mb - first.rss_mb:+.1f} MB, "
            f"fds {last.fds - first.fds:+d}, tasks {last.tasks - first.tasks:+d}, "
            f"SQLite {last.sqlite_kb - first.sqlite_kb:+.0f} KB"
        )


async def main() -> int:
    args = parse_args()
    print_machine()
    print(f"soak: {args.minutes:g} min, {args.jobs_per_minute:g} jobs/min, "
          f"a fault every ~{args.fault_every:g} s, seed {args.seed}", flush=True)  # fmt: skip
    setup_logging("json")
    rng = random.Random(args.seed)
    samples: list[Sample] = []
    with tempfile.TemporaryDirectory(prefix="validator-tui-soak-") as state_dir:
        async with sim_processes(
            seed=args.seed, boot_seconds=args.boot_seconds, evaluator_latency_s=args.eval_seconds
        ) as sims:
            config = bench_config(
                sims.platform_url, sims.vmm_url, state_dir, cpu_cores=args.cpu_cores, engine=ENGINE
            )
            validator = Validator(config)
            engine = asyncio.create_task(run_headless(validator, status_every=60.0))
            await asyncio.wait_for(validator.wait_started(), 30)
            started = time.monotonic()
            await sims.set_rate(args.jobs_per_minute)
            faults = Faults(sims, validator, rng, args)
            background = [
                asyncio.create_task(faults.run(args.fault_every)),
                asyncio.create_task(sampler(validator, args.sample_s, samples, started)),
            ]
            await asyncio.sleep(args.minutes * 60)
            await sims.set_rate(0)
            background[0].cancel()
            await sims.control.post(sims.vmm_url + "/_sim/boot", json={"seconds": 0.3})
            deadline = time.monotonic() + 120
            while not idle(validator) and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
            await asyncio.sleep(ENGINE["poll_interval_s"] * 3)
            while not idle(validator) and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
            background[1].cancel()
            samples.append(sample(validator, started))
            problems = await check_invariant(sims, validator, config.validator_hotkey)
            await validator.stop()
            await engine
    print_samples(samples)
    print(f"\nfaults injected: {dict(sorted(faults.counts.items()))}")
    print("invariant: " + ("OK" if not problems else "FAILED"))
    for problem in problems[:20]:
        print(f"  {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
