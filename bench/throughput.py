"""Engine throughput: jobs per second end to end (claim → VM → evaluate → result → VM removed)
with instant boots and evaluators, and the CPU each job costs.

Modes (each measured over `--jobs` jobs after a warm-up, with about `--backlog` unfinished
jobs offered at any time):

- headless, simulators in their own processes: the engine runs in this process; its CPU and
  the simulators' CPU are reported separately;
- headless, simulators in this process (as `validator-tui demo --headless` runs them);
- engine + TUI: `validator-tui run --config …` in a pseudo-terminal (real rendering),
  simulators in their own processes.

`--profile` repeats the headless (and, unless `--no-tui`, the TUI) run under cProfile and
prints where the time goes.

    .venv/bin/python bench/throughput.py --jobs 3000 --profile
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bare_client import BareClient
from benchlib import (
    HOTKEYS,
    PtyProgram,
    Row,
    SimProcesses,
    bench_config,
    cli_argv,
    cpu_seconds,
    per_job,
    print_machine,
    print_profile,
    print_requests,
    print_table,
    sim_processes,
    wait_until,
    write_bench_config,
)

from validator_tui.config import EngineSettings, ResourceLimits, ValidatorConfig
from validator_tui.demo import DemoEnvironment
from validator_tui.engine.validator import Validator
from validator_tui.shared.records import ChallengeState

CPU_CORES = 64


@dataclass(frozen=True)
class Run:
    """One measured run: jobs, wall seconds, CPU seconds of the engine and of the simulators."""

    jobs: int
    seconds: float
    engine_cpu: float
    sims_cpu: float | None
    #: Requests per job served by the simulators, by target (headless, sims in own processes).
    requests: dict[str, float] | None = None

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds

    def engine_ms_per_job(self) -> float:
        return 1000 * self.engine_cpu / self.jobs


def challenges_active(validator: Validator) -> bool:
    challenges = validator.state.challenges.values()
    return len(challenges) == 3 and all(c.state is ChallengeState.ACTIVE for c in challenges)


async def headless_separate(
    jobs: int,
    warmup: int,
    backlog: int,
    profile: cProfile.Profile | None,
    boot_seconds: float = 0.0,
) -> tuple[Run, Run]:
    """The engine in this process, both simulators in their own; then, on the same
    simulators, the bare client (`bare_client.py`) over as many jobs: (engine, bare)."""
    async with sim_processes(boot_seconds=boot_seconds) as sims:
        with tempfile.TemporaryDirectory(prefix="bench-tput-") as state:
            config = bench_config(sims.platform_url, sims.vmm_url, state, cpu_cores=CPU_CORES)
            validator = Validator(config)
            task = asyncio.create_task(validator.run())
            try:
                await sims.wait_claimer_ready(HOTKEYS[0])
                await sims.feed(warmup, backlog)
                cpu0, sims0 = time.process_time(), sims.cpu_seconds()
                requests0 = await sims.requests()
                if profile is not None:
                    profile.enable()
                seconds = await sims.feed(jobs, backlog)
                if profile is not None:
                    profile.disable()
                engine = Run(
                    jobs,
                    seconds,
                    time.process_time() - cpu0,
                    sims.cpu_seconds() - sims0,
                    per_job(requests0, await sims.requests(), jobs),
                )
            finally:
                await validator.stop()
                await asyncio.wait_for(task, 60)
        with tempfile.TemporaryDirectory(prefix="bench-bare-") as state:
            config = bench_config(
                sims.platform_url, sims.vmm_url, state, hotkey=HOTKEYS[2], cpu_cores=CPU_CORES
            )
            return engine, await bare(sims, config, jobs, warmup, backlog)


async def bare(
    sims: SimProcesses, config: ValidatorConfig, jobs: int, warmup: int, backlog: int
) -> Run:
    """The bare client over `jobs` jobs on the simulators the engine just used."""
    client = BareClient(config)
    await client.load_composes()
    listener = asyncio.create_task(client.listen())
    try:
        await asyncio.sleep(0.5)
        await sims.feed(warmup, backlog)
        cpu0, sims0 = time.process_time(), sims.cpu_seconds()
        requests0 = await sims.requests()
        seconds = await sims.feed(jobs, backlog)
        return Run(
            jobs,
            seconds,
            time.process_time() - cpu0,
            sims.cpu_seconds() - sims0,
            per_job(requests0, await sims.requests(), jobs),
        )
    finally:
        listener.cancel()
        await client.aclose()


async def headless_together(jobs: int, warmup: int, backlog: int) -> Run:
    """The engine and both simulators in this process (one event loop)."""
    limits = ResourceLimits(
        cpu_cores=CPU_CORES, memory_mb=CPU_CORES * 1024, disk_mb=10_000_000, gpu_count=0
    )
    engine = EngineSettings().model_dump() | {"vm_poll_interval_s": 0.05}
    env = DemoEnvironment(
        jobs_per_minute=0, boot_seconds=0, resource_limits=limits, engine=engine, port_pool=400
    )
    async with env:
        assert env.config is not None
        validator = Validator(env.config)
        task = asyncio.create_task(validator.run())
        platform = env.platform

        async def feed(total: int) -> float:
            done_before = platform.stats["results_accepted"]
            started, added = time.monotonic(), 0
            while (done := platform.stats["results_accepted"] - done_before) < total:
                want = min(total, done + backlog) - added
                if want > 0:
                    platform.add_jobs(want)
                    added += want
                await asyncio.sleep(0.02)
            return time.monotonic() - started

        try:
            await wait_until(lambda: challenges_active(validator), 60, "challenge CVMs")
            await feed(warmup)
            cpu0 = time.process_time()
            seconds = await feed(jobs)
            return Run(jobs, seconds, time.process_time() - cpu0, None)
        finally:
            await validator.stop()
            await asyncio.wait_for(task, 60)


async def with_tui(
    jobs: int,
    warmup: int,
    backlog: int,
    profile_to: Path | None,
    switch_interval: float | None = None,
) -> Run:
    """`validator-tui run` in a pseudo-terminal; both simulators in their own processes."""
    async with sim_processes() as sims:
        with tempfile.TemporaryDirectory(prefix="bench-tput-tui-") as state:
            config = bench_config(
                sims.platform_url, sims.vmm_url, state, hotkey=HOTKEYS[1], cpu_cores=CPU_CORES
            )
            path = write_bench_config(config, Path(state))
            argv = cli_argv("run", "--config", str(path), switch_interval=switch_interval)
            if profile_to is not None:
                argv[1:1] = ["-m", "cProfile", "-o", str(profile_to)]
            program = PtyProgram(argv)
            drain = asyncio.create_task(program.drain(1e9))
            try:
                await sims.wait_claimer_ready(HOTKEYS[1])
                await sims.feed(warmup, backlog)
                cpu0, sims0 = cpu_seconds(program.pid), sims.cpu_seconds()
                seconds = await sims.feed(jobs, backlog)
                run = Run(
                    jobs,
                    seconds,
                    cpu_seconds(program.pid) - cpu0,
                    sims.cpu_seconds() - sims0,
                )
                if profile_to is not None:
                    await asyncio.sleep(1.0)
                    program.send(b"q")  # the console asks: stop the validator (s) or detach
                    await asyncio.sleep(1.0)
                    program.send(b"s")
                    await wait_until(lambda: program.process.poll() is not None, 60, "TUI exit")
                return run
            finally:
                drain.cancel()
                await program.stop()


def row(name: str, run: Run, target: str) -> list[Row]:
    rows = [
        Row(f"{name}: jobs/s", run.rate, target=target),
        Row(f"{name}: engine CPU ms/job", run.engine_ms_per_job()),
    ]
    if run.sims_cpu is not None:
        rows.append(Row(f"{name}: simulators CPU ms/job", 1000 * run.sims_cpu / run.jobs))
    return rows


async def main(args: argparse.Namespace) -> None:
    print_machine()
    print(
        f"throughput: {args.jobs} jobs per mode after {args.warmup} warm-up jobs, "
        f"backlog {args.backlog}, boot 0 s, evaluator latency 0 s",
        flush=True,
    )
    rows: list[Row] = []
    run, baseline = await headless_separate(args.jobs, args.warmup, args.backlog, None)
    rows += row("headless, sims in own processes", run, "≥100 jobs/s")
    rows += row("bare client, same sims", baseline, "")
    rows.append(
        Row(
            "engine CPU per job / bare client's",
            run.engine_ms_per_job() / baseline.engine_ms_per_job(),
            target="≤1.5x",
        )
    )
    assert run.requests is not None and baseline.requests is not None
    print_requests("Requests per job, engine (headless)", run.requests)
    print_requests("Requests per job, bare client", baseline.requests)
    if args.boot_s > 0:
        boot_jobs = args.boot_jobs or min(args.jobs, 300)
        booting, bare_booting = await headless_separate(
            boot_jobs, min(args.warmup, 20), args.backlog, None, boot_seconds=args.boot_s
        )
        assert booting.requests is not None and bare_booting.requests is not None
        title = f"VMs booting for {args.boot_s:g} s"
        print_requests(f"Requests per job, engine (headless), {title}", booting.requests)
        print_requests(f"Requests per job, bare client, {title}", bare_booting.requests)
        rows += row(f"headless, {title}", booting, "")
    if not args.no_together:
        run = await headless_together(args.jobs, args.warmup, args.backlog)
        rows += row("headless, sims in the same process", run, "")
    if not args.no_tui:
        run = await with_tui(args.jobs, args.warmup, args.backlog, None)
        rows += row("engine + TUI (pty), sims in own processes", run, "≥60 jobs/s")
        for interval in args.switch_interval:
            run = await with_tui(args.jobs, args.warmup, args.backlog, None, interval)
            rows += row(f"engine + TUI, switch interval {interval * 1000:g} ms", run, "")
    print_table("Throughput: instant boots and evaluators", rows)
    if args.profile:
        profile = cProfile.Profile()
        await headless_separate(args.jobs, args.warmup, args.backlog, profile)
        print("profile of the headless engine (sims in their own processes):")
        print_profile(profile)
        if not args.no_tui:
            with tempfile.TemporaryDirectory(prefix="bench-prof-") as tmp:
                target = Path(tmp) / "tui.prof"
                await with_tui(args.jobs, args.warmup, args.backlog, target)
                print("profile of `validator-tui run` (engine + TUI) over the whole run:")
                print_profile(pstats.Stats(str(target)))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3000, help="measured jobs per mode")
    parser.add_argument("--warmup", type=int, default=200, help="jobs before measuring")
    parser.add_argument("--backlog", type=int, default=200, help="unfinished jobs offered")
    parser.add_argument("--profile", action="store_true", help="also profile (cProfile)")
    parser.add_argument("--no-tui", action="store_true", help="skip the engine + TUI mode")
    parser.add_argument(
        "--switch-interval",
        type=float,
        nargs="*",
        default=[],
        help="also run the engine + TUI mode with these sys.setswitchinterval values (s)",
    )
    parser.add_argument(
        "--no-together", action="store_true", help="skip the sims-in-the-same-process mode"
    )
    parser.add_argument(
        "--boot-s",
        type=float,
        default=2.0,
        help="also count requests per job with VMs that boot this long (0: skip)",
    )
    parser.add_argument(
        "--boot-jobs", type=int, default=0, help="jobs of the booting run (0: --jobs, at most 300)"
    )
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
