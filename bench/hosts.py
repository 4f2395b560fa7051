"""Several dstack hosts as one pool: what the engine's throughput and its placement cost.

1. End to end (claim → VM → evaluate → result → VM removed, instant boots and evaluators):
   jobs/s, engine CPU ms/job and VMM requests/job with 1 VMM host and with 3, measured in the
   same run, each with about `--backlog` unfinished jobs offered. Four pools:
   - 1 host with `--cores` vCPU (the baseline);
   - 3 hosts with `--cores` vCPU each (three times the room);
   - 3 hosts with `--cores`/3 vCPU each (the same room as the baseline, split: what the
     placement and the per-host machinery cost on their own);
   - 1 host with 3x `--cores` vCPU (the room of the second pool in one host: as many jobs in
     flight, so the second pool's cost can be told apart from the concurrency's).
   The engine runs in this process; the platform simulator and one VMM simulator per host run
   in their own processes (`validator-tui sim …`), so the engine's CPU is read on its own.
   With `--rounds` above 1 the four pools are measured in turn, round after round, and the
   median of the rounds is reported.

2. Placement, no sockets (the engine's own `HostPool` and `JobManager`, `engine/hosts.py` and
   `engine/jobs.py`), with 1, 3 and 8 hosts of `--host-cores` vCPU each:
   - per claimed job, what `claim_what_fits` does for each job it claims: `place_job` (spread
     or pack) and the capacity check that follows it, over `--pending` jobs, with the pool
     kept about half full (3 challenge CVMs, and after each placement a random job VM ends);
   - per job arriving (`on_new_job`, the WebSocket path) while every host is full;
   - one `claim_what_fits` pass over `--pending` pending jobs (every completion runs one):
     none fits; one slot was freed (one job is placed and its claim started); every waiting
     job's reason changes (a host starts draining, or stops).

    .venv/bin/python bench/hosts.py                  # about 2 minutes on 2 shared cores
    .venv/bin/python bench/hosts.py --jobs 2000 --rounds 5
    .venv/bin/python bench/hosts.py --no-end-to-end  # placement only: seconds, no sockets
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from statistics import median
from typing import Any, Literal

import httpx
from benchlib import (
    HOTKEYS,
    Row,
    SimProcesses,
    bench_config,
    percentile,
    print_machine,
    print_table,
    spawn_sim,
)

from validator_tui.config import (
    EngineSettings,
    HostConfig,
    HostPorts,
    ResourceLimits,
    ValidatorConfig,
    VmSpec,
)
from validator_tui.demo import find_free_port_range
from validator_tui.engine.hosts import HostPool, build_pool
from validator_tui.engine.quota import Allocation, CapacityError
from validator_tui.engine.state import EngineState
from validator_tui.engine.tasks import TaskRegistry
from validator_tui.engine.validator import Validator
from validator_tui.shared.records import ChallengeRecord, ChallengeState

Placement = Literal["spread", "pack"]
JOB_VM = VmSpec(vcpu=2, memory_mb=2048, disk_gb=10)
CHALLENGE_VM = VmSpec(vcpu=2, memory_mb=2048, disk_gb=20)
CHALLENGES = ("bench-c1", "bench-c2", "bench-c3")
#: Host ports per host (one per VM; in part 2 nothing listens on them).
PORTS_PER_HOST = 400


def limits(cores: int) -> ResourceLimits:
    """`cores` vCPU with 1 GB of memory each (a job VM: 2 vCPU, 2 GB, 10 GB disk)."""
    return ResourceLimits(cpu_cores=cores, memory_mb=cores * 1024, disk_mb=10_000_000, gpu_count=0)


# -- part 1: end to end ---------------------------------------------------------------------


@dataclass(frozen=True)
class Pool:
    """One pool of part 1: its label, how many hosts, and the vCPU of each."""

    label: str
    hosts: int
    cores: int


@dataclass(frozen=True)
class Run:
    """One measured run of a pool."""

    jobs: int
    seconds: float
    engine_cpu: float
    sims_cpu: float
    vmm_requests: int

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds

    @property
    def engine_ms(self) -> float:
        return 1000 * self.engine_cpu / self.jobs

    @property
    def sims_ms(self) -> float:
        return 1000 * self.sims_cpu / self.jobs

    @property
    def vmm_per_job(self) -> float:
        return self.vmm_requests / self.jobs


@dataclass
class HostSims:
    """The platform simulator and one VMM simulator per host, each in its own process."""

    sims: SimProcesses
    vmm_urls: list[str]

    async def vmm_requests(self) -> int:
        """Requests all VMM simulators served so far (RPCs, `/logs`, evaluators)."""
        total = 0
        for url in self.vmm_urls:
            response = await self.sims.control.get(f"{url}/_sim/stats")
            response.raise_for_status()
            stats: dict[str, int] = response.json()
            total += sum(
                value
                for key, value in stats.items()
                if key not in ("vms_created", "vms_removed", "restarts")
            )
        return total


@asynccontextmanager
async def host_sims(hosts: int) -> AsyncIterator[HostSims]:
    """Start the platform simulator and `hosts` VMM simulators (instant boots and evaluators)
    as subprocesses on ephemeral loopback ports; stop them after."""
    processes: list[asyncio.subprocess.Process] = []
    control = httpx.AsyncClient(timeout=30.0, trust_env=False)
    try:
        platform_proc, platform_url = await spawn_sim("platform", "--seed", "0")
        processes.append(platform_proc)
        vmm_urls = []
        for _ in range(hosts):
            process, url = await spawn_sim("vmm", "--boot-seconds", "0")
            processes.append(process)
            vmm_urls.append(url)
            response = await control.post(f"{url}/_sim/evaluator", json={"latency_s": 0.0})
            response.raise_for_status()
        pids = tuple(process.pid for process in processes)
        yield HostSims(SimProcesses(platform_url, vmm_urls[0], pids, control), vmm_urls)
    finally:
        await control.aclose()
        for process in processes:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


def pool_config(
    platform_url: str, vmm_urls: list[str], state_dir: str, cores: int
) -> ValidatorConfig:
    """The engine config of `bench_config` (fast loops, small VMs), with one host per VMM URL
    of `cores` vCPU each (`[[hosts]]` h1, h2, … when there are several, each with its own
    free host-port range)."""
    single = bench_config(platform_url, vmm_urls[0], state_dir, cpu_cores=cores)
    if len(vmm_urls) == 1:
        return single
    ranges: list[tuple[int, int]] = []
    for _ in vmm_urls:
        ranges.append(find_free_port_range(PORTS_PER_HOST, avoid=ranges))
    hosts = [
        HostConfig(
            name=f"h{index + 1}",
            url=url,
            resource_limits=limits(cores),
            host_ports=HostPorts(start=first, end=last),
        )
        for index, (url, (first, last)) in enumerate(zip(vmm_urls, ranges, strict=True))
    ]
    return ValidatorConfig(
        validator_hotkey=single.validator_hotkey,
        platform_api_url=platform_url,
        state_dir=state_dir,
        engine=single.engine,
        job_vm=single.job_vm,
        challenge_vm=single.challenge_vm,
        hosts=hosts,
    )


async def measure(pool: Pool, jobs: int, warmup: int, backlog: int) -> Run:
    """Run the engine on `pool` over `warmup` then `jobs` measured jobs."""
    async with host_sims(pool.hosts) as sims:
        with tempfile.TemporaryDirectory(prefix="bench-hosts-") as state:
            config = pool_config(sims.sims.platform_url, sims.vmm_urls, state, pool.cores)
            validator = Validator(config)
            task = asyncio.create_task(validator.run())
            try:
                await sims.sims.wait_claimer_ready(HOTKEYS[0])
                await sims.sims.feed(warmup, backlog)
                cpu0, sims0 = time.process_time(), sims.sims.cpu_seconds()
                requests0 = await sims.vmm_requests()
                seconds = await sims.sims.feed(jobs, backlog)
                return Run(
                    jobs,
                    seconds,
                    time.process_time() - cpu0,
                    sims.sims.cpu_seconds() - sims0,
                    await sims.vmm_requests() - requests0,
                )
            finally:
                await validator.stop()
                await asyncio.wait_for(task, 60)


async def end_to_end(args: argparse.Namespace) -> list[Row]:
    """Part 1: the four pools, `--rounds` times in turn; rows against the 1-host pool."""
    per_host = args.cores // 3
    pools = [
        Pool("1 host", 1, args.cores),
        Pool("3 hosts, 3x the room", 3, args.cores),
        Pool(f"3 hosts, same room ({per_host} vCPU each)", 3, per_host),
        Pool(f"1 host, 3x the room ({3 * args.cores} vCPU)", 1, 3 * args.cores),
    ]
    runs: dict[str, list[Run]] = {pool.label: [] for pool in pools}
    for round_ in range(args.rounds):
        order = pools if round_ % 2 == 0 else pools[::-1]
        for pool in order:
            run = await measure(pool, args.jobs, args.warmup, args.backlog)
            runs[pool.label].append(run)
            print(
                f"  round {round_ + 1}, {pool.label}: {run.rate:.1f} jobs/s, "
                f"engine {run.engine_ms:.2f} ms/job",
                flush=True,
            )
    metrics: list[tuple[str, Callable[[Run], float]]] = [
        ("jobs/s", lambda run: run.rate),
        ("engine CPU ms/job", lambda run: run.engine_ms),
        ("simulators CPU ms/job", lambda run: run.sims_ms),
        ("VMM requests/job", lambda run: run.vmm_per_job),
    ]

    def medians(pool: Pool, value: Callable[[Run], float]) -> float:
        return median([value(run) for run in runs[pool.label]])

    rows: list[Row] = []
    for pool in pools:
        for name, value in metrics:
            base = None if pool is pools[0] else medians(pools[0], value)
            rows.append(Row(f"{pool.label}: {name}", medians(pool, value), baseline=base))
    # The same room in 3 hosts or in one: what the hosts cost with as many jobs in flight.
    for name, value in metrics[:2]:
        rows.append(
            Row(
                f"3 hosts against 1 host, both 3x the room: {name}",
                medians(pools[1], value),
                baseline=medians(pools[3], value),
            )
        )
    return rows


# -- part 2: placement ----------------------------------------------------------------------


def settings_for(
    hosts: int, host_cores: int, placement: Placement, state_dir: str = ""
) -> ValidatorConfig:
    """A config of `hosts` hosts of `host_cores` vCPU each; its URLs are never contacted."""
    engine = EngineSettings(placement=placement, auto_claim=True)
    common: dict[str, Any] = {
        "validator_hotkey": HOTKEYS[0],
        "platform_api_url": "http://127.0.0.1:9",
        "state_dir": state_dir,
        "engine": engine,
        "job_vm": JOB_VM,
        "challenge_vm": CHALLENGE_VM,
    }
    if hosts == 1:
        return ValidatorConfig(
            **common,
            dstack_vmm_url="http://127.0.0.1:9",
            resource_limits=limits(host_cores),
            host_ports=HostPorts(start=20000, end=20000 + PORTS_PER_HOST - 1),
        )
    return ValidatorConfig(
        **common,
        hosts=[
            HostConfig(
                name=f"h{index + 1}",
                url=f"http://10.0.0.{index + 1}:11530",
                resource_limits=limits(host_cores),
                host_ports=HostPorts(
                    start=20000 + 1000 * index, end=20000 + 1000 * index + PORTS_PER_HOST - 1
                ),
            )
            for index in range(hosts)
        ],
    )


def place_challenges(pool: HostPool) -> None:
    """The three challenge CVMs, placed as the engine places them."""
    for challenge in CHALLENGES:
        pool.place_cvm(
            CHALLENGE_VM.resources,
            owner=f"challenge {challenge}",
            job_vm=JOB_VM.resources,
            reserve_vms=1,
        )


def fill(pool: HostPool, owner: str) -> list[Allocation]:
    """Place job VMs until no host has room; their allocations."""
    placed = []
    while True:
        try:
            placed.append(pool.place_job(JOB_VM.resources, owner=f"{owner} {len(placed)}"))
        except CapacityError:
            return placed


def decision_times(hosts: int, host_cores: int, placement: Placement, pending: int) -> list[float]:
    """Microseconds of `place_job` + the capacity check after it, for each of `pending` jobs,
    with the pool about half full: after each placement a random job VM ends (untimed)."""
    config = settings_for(hosts, host_cores, placement)
    pool = build_pool(
        config.host_settings(env={}),
        state=EngineState(HOTKEYS[0]),
        http=httpx.AsyncClient(),
        tasks=TaskRegistry(),
        timeout=1.0,
        vm_poll_interval=1.0,
        placement=placement,
        grace=30.0,
    )
    place_challenges(pool)
    live = fill(pool, "prefill")
    rng = random.Random(hosts)
    rng.shuffle(live)
    for allocation in live[len(live) // 2 :]:
        pool.release(allocation)
    del live[len(live) // 2 :]
    resources = JOB_VM.resources
    samples = []
    clock = time.perf_counter_ns
    gc.collect()
    for index in range(pending):
        started = clock()
        allocation = pool.place_job(resources, owner=f"job {index}")
        pool.job_capacity_reason(resources)
        samples.append((clock() - started) / 1000)
        live.append(allocation)
        pool.release(live.pop(rng.randrange(len(live))))
    return samples


@dataclass
class PassTimes:
    """Part 2 timings on the real `JobManager` of one pool size (µs per job, ms per pass)."""

    arrival_us: list[float]
    none_fits_ms: list[float]
    one_freed_ms: list[float]
    reasons_change_ms: list[float]

    def extend(self, other: PassTimes) -> None:
        """Add the samples of `other` to these."""
        self.arrival_us += other.arrival_us
        self.none_fits_ms += other.none_fits_ms
        self.one_freed_ms += other.one_freed_ms
        self.reasons_change_ms += other.reasons_change_ms


async def pass_times(hosts: int, host_cores: int, pending: int, passes: int) -> PassTimes:
    """An engine (built, never run: no sockets) with every host full and `pending` jobs
    arriving, then `passes` passes of `claim_what_fits` of each kind."""
    with tempfile.TemporaryDirectory(prefix="bench-hosts-jobs-") as state:
        validator = Validator(settings_for(hosts, host_cores, "spread", state))
        ctx, jobs = validator.ctx, validator.jobs
        try:
            place_challenges(ctx.hosts)
            for challenge in CHALLENGES:
                ctx.state.put_challenge(
                    ChallengeRecord(
                        challenge, challenge, state=ChallengeState.ACTIVE, vm_status="running"
                    )
                )
            held = fill(ctx.hosts, "running")
            clock = time.perf_counter_ns
            arrival = []
            gc.collect()
            for index in range(pending):
                started = clock()
                jobs.on_new_job(f"bench-job-{index:05d}", CHALLENGES[index % len(CHALLENGES)])
                arrival.append((clock() - started) / 1000)

            def timed_pass() -> float:
                started = clock()
                jobs.claim_what_fits()
                return (clock() - started) / 1e6

            none_fits = [timed_pass() for _ in range(passes)]
            first = next(iter(ctx.hosts))
            reasons_change = []
            for _ in range(passes):
                first.draining = not first.draining
                reasons_change.append(timed_pass())
            first.draining = False
            jobs.claim_what_fits()
            one_freed = []
            for _ in range(min(passes, len(held))):
                ctx.hosts.release(held.pop())
                one_freed.append(timed_pass())
            left = ctx.hosts.job_capacity_reason(JOB_VM.resources)
            assert left, "each pass should have placed one job in the freed slot"
            return PassTimes(arrival, none_fits, one_freed, reasons_change)
        finally:
            await ctx.tasks.cancel_all(5.0)
            await validator.close()


async def placement(args: argparse.Namespace) -> list[Row]:
    """Part 2 rows: per-job placement by policy and host count, then the passes."""
    rows: list[Row] = []
    host_counts = (1, 3, 8)
    policies: tuple[Placement, ...] = ("spread", "pack")
    decisions: dict[tuple[Placement, int], list[float]] = {}
    timings = {hosts: PassTimes([], [], [], []) for hosts in host_counts}
    # Each size in turn, `--repeats` times: a hiccup of the shared machine hits one repeat.
    for _ in range(args.repeats):
        for policy in policies:
            for hosts in host_counts:
                samples = decision_times(hosts, args.host_cores, policy, args.pending)
                decisions.setdefault((policy, hosts), []).extend(samples)
        for hosts in host_counts:
            timings[hosts].extend(
                await pass_times(hosts, args.host_cores, args.pending, args.passes)
            )
    for policy in policies:
        base = decisions[policy, 1]
        for hosts in host_counts:
            samples = decisions[policy, hosts]
            label = f"{policy}, {hosts} host{'s' if hosts > 1 else ''}"
            rows.append(
                Row(
                    f"{label}: place job + capacity check µs",
                    median(samples),
                    percentile(samples, 99),
                    baseline=None if hosts == 1 else median(base),
                )
            )
            rows.append(
                Row(
                    f"{label}: place job + capacity check p95 µs",
                    percentile(samples, 95),
                    baseline=None if hosts == 1 else percentile(base, 95),
                )
            )
    one = timings[1]
    kinds: list[tuple[str, Callable[[PassTimes], list[float]]]] = [
        ("job arrives, all hosts full (on_new_job) µs", lambda t: t.arrival_us),
        (f"pass over {args.pending} pending, none fits ms", lambda t: t.none_fits_ms),
        (f"pass over {args.pending} pending, one slot freed ms", lambda t: t.one_freed_ms),
        (
            f"pass over {args.pending} pending, every reason changes ms",
            lambda t: t.reasons_change_ms,
        ),
    ]
    for name, pick in kinds:
        for hosts in host_counts:
            mine = pick(timings[hosts])
            rows.append(
                Row(
                    f"{hosts} host{'s' if hosts > 1 else ''}: {name}",
                    median(mine),
                    percentile(mine, 99),
                    baseline=None if hosts == 1 else median(pick(one)),
                )
            )
    return rows


async def main(args: argparse.Namespace) -> None:
    print_machine()
    print(
        f"hosts: {args.jobs} jobs per pool and round after {args.warmup} warm-up jobs, backlog "
        f"{args.backlog}, {args.rounds} round(s), boot 0 s, evaluator latency 0 s; placement "
        f"over {args.pending} pending jobs, hosts of {args.host_cores} vCPU",
        flush=True,
    )
    if not args.no_end_to_end:
        rows = await end_to_end(args)
        print_table("Several hosts: throughput, instant boots and evaluators", rows)
    print_table("Several hosts: placement (no sockets)", await placement(args))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500, help="measured jobs per pool and round")
    parser.add_argument("--warmup", type=int, default=100, help="jobs before measuring")
    parser.add_argument("--backlog", type=int, default=200, help="unfinished jobs offered")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over the four pools")
    parser.add_argument(
        "--cores", type=int, default=60, help="vCPU of the 1-host pool (and of each of 3 hosts)"
    )
    parser.add_argument(
        "--no-end-to-end", action="store_true", help="only the placement part (no simulators)"
    )
    parser.add_argument("--pending", type=int, default=1000, help="pending jobs (placement)")
    parser.add_argument("--passes", type=int, default=50, help="claim passes timed per kind")
    parser.add_argument(
        "--repeats", type=int, default=5, help="placement measurements per size (pooled)"
    )
    parser.add_argument(
        "--host-cores", type=int, default=64, help="vCPU of each host (placement part)"
    )
    args = parser.parse_args()
    if args.cores < 12:
        parser.error(
            "--cores must be at least 12 (3 hosts of 4 vCPU: a challenge CVM and a job VM)"
        )
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
