"""Claim latency: the simulator writes `new_job` on the WebSocket → the simulator receives the
claim request (both stamped with time.monotonic_ns() inside the platform simulator process).

Both simulators run in their own processes. Jobs are generated one at a time, spaced by
`--interval-ms`, so the number is latency, not queueing. Phases, each with its own hotkey:

1. baseline: a minimal asyncio claimer in this process (websockets recv → httpx POST claim),
2. the engine headless in this process,
3. the engine with the TUI: `validator-tui run --config …` in a pseudo-terminal (real
   rendering), the job feed busy with the same job stream,
4. the engine headless in its own process (`validator-tui run --headless`),
5. the same with two bare protocol clients in this process (the feed received and applied
   into a replica, nothing rendered: what serving consoles costs the engine),
6. the same with two consoles attached (`validator-tui attach`, each in a pseudo-terminal:
   real rendering of the change feed the engine pushes them),
7. the baseline again (the baseline figure is the median over phases 1 and 7).

For phases 2 and 4-6 the rate of changes the engine's feed carried during the job stream is
printed (state versions per second).

    .venv/bin/python bench/claim_latency.py --jobs 300
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import httpx
from benchlib import (
    HOTKEYS,
    PtyProgram,
    Row,
    SimProcesses,
    bench_config,
    cli_argv,
    cpu_seconds,
    median,
    percentile,
    print_machine,
    print_table,
    sim_processes,
    wait_until,
    write_bench_config,
)
from websockets.asyncio.client import connect

from validator_tui.control.client import SocketEngine
from validator_tui.control.paths import find_socket
from validator_tui.engine.validator import Validator

HOTKEY_HEADER = "X-Validator-Hotkey"

#: Reads the engine's state version (for the change rate), when the claimer can tell it.
Probe = Callable[[], Awaitable[int]] | None
Claimer = Callable[[SimProcesses, str, Path], AbstractAsyncContextManager[Probe]]


@asynccontextmanager
async def baseline_claimer(sims: SimProcesses, hotkey: str, _dir: Path) -> AsyncIterator[Probe]:
    """The floor: recv a frame, parse it, POST the claim; nothing else."""

    async def claim_forever() -> None:
        ws_url = sims.platform_url.replace("http://", "ws://") + f"/validators/{hotkey}/ws"
        async with (
            httpx.AsyncClient(
                base_url=sims.platform_url, headers={HOTKEY_HEADER: hotkey}, trust_env=False
            ) as http,
            connect(ws_url, additional_headers={HOTKEY_HEADER: hotkey}, compression=None) as ws,
        ):
            async for frame in ws:
                message = json.loads(frame)
                if message.get("type") == "new_job":
                    await http.post(f"/jobs/{message['job_id']}/claim")

    task = asyncio.create_task(claim_forever())
    try:
        yield None
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@asynccontextmanager
async def engine_claimer(sims: SimProcesses, hotkey: str, state: Path) -> AsyncIterator[Probe]:
    """The engine, headless, in this process."""
    validator = Validator(bench_config(sims.platform_url, sims.vmm_url, state, hotkey=hotkey))
    task = asyncio.create_task(validator.run())

    async def version() -> int:
        return validator.state.version

    try:
        yield version
    finally:
        await validator.stop()
        await asyncio.wait_for(task, 60)


def tui_claimer(switch_interval: float | None = None) -> Claimer:
    """`validator-tui run` (engine + TUI) in a pseudo-terminal, output read as it comes;
    `switch_interval`: its `sys.setswitchinterval` (None: Python's 5 ms)."""

    @asynccontextmanager
    async def claimer(sims: SimProcesses, hotkey: str, state: Path) -> AsyncIterator[Probe]:
        config = bench_config(sims.platform_url, sims.vmm_url, state, hotkey=hotkey)
        path = write_bench_config(config, state)
        argv = cli_argv("run", "--config", str(path), switch_interval=switch_interval)
        program = PtyProgram(argv)
        drain = asyncio.create_task(program.drain(1e9))
        try:
            yield None
        finally:
            drain.cancel()
            await program.stop()

    return claimer


async def engine_version(state: Path) -> int:
    """The state version of the engine on `state`, read over its control socket."""
    client = SocketEngine(state, read_only=True, client="bench")
    await client.connect()
    try:
        return client.replica.engine_version
    finally:
        await client.close()


def process_claimer(consoles: int, readers: int = 0) -> Claimer:
    """`validator-tui run --headless` in its own process, with `consoles` attached consoles
    (`validator-tui attach`, each in a pseudo-terminal, output read as it comes) and `readers`
    bare protocol clients in this process (the feed received and applied, nothing rendered:
    what serving consoles costs the engine, without their rendering's CPU)."""

    @asynccontextmanager
    async def claimer(sims: SimProcesses, hotkey: str, state: Path) -> AsyncIterator[Probe]:
        config = bench_config(sims.platform_url, sims.vmm_url, state, hotkey=hotkey)
        path = write_bench_config(config, state)
        engine = await asyncio.create_subprocess_exec(
            *cli_argv("run", "--headless", "--config", str(path)),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        programs: list[PtyProgram] = []
        drains: list[asyncio.Task[None]] = []
        clients: list[SocketEngine] = []
        try:
            await wait_until(lambda: find_socket(config.state_path).exists(), 30, "the engine")
            for _ in range(readers):
                clients.append(SocketEngine(config.state_path, client="bench-reader"))
                await clients[-1].connect()
            for _ in range(consoles):
                program = PtyProgram(cli_argv("attach", "--config", str(path)))
                programs.append(program)
                await program.wait_for(b"Challenge CVMs", 0, timeout=30)
                drains.append(asyncio.create_task(program.drain(1e9)))
            marks: list[tuple[float, list[float]]] = []

            async def probe() -> int:
                """The engine's state version; on the second call, also print the CPU the
                engine and each console used since the first (% of one core)."""
                pids = [engine.pid, *(program.pid for program in programs)]
                marks.append((time.monotonic(), [cpu_seconds(pid) for pid in pids]))
                if len(marks) == 2:
                    (t0, c0), (t1, c1) = marks
                    used = [
                        f"{100 * (b - a) / (t1 - t0):.0f}%" for a, b in zip(c0, c1, strict=True)
                    ]
                    print(f"    CPU: engine {used[0]}, consoles {used[1:]}", flush=True)
                return await engine_version(config.state_path)

            yield probe
        finally:
            for drain in drains:
                drain.cancel()
            for program in programs:
                await program.stop()
            for client in clients:
                await client.close()
            engine.send_signal(signal.SIGTERM)
            await asyncio.wait_for(engine.wait(), 60)

    return claimer


async def run_phase(
    sims: SimProcesses, claimer: Claimer, hotkey: str, jobs: int, interval_ms: float
) -> list[float]:
    """Latencies (ms) of the jobs this claimer took while jobs were generated one at a time."""
    with tempfile.TemporaryDirectory(prefix="bench-claim-") as state:
        async with claimer(sims, hotkey, Path(state)) as probe:
            await sims.wait_claimer_ready(hotkey)
            start_ns = time.monotonic_ns()
            version_before = await probe() if probe else 0
            claims_before = (await sims.stats()).get("claims_ok", 0)
            await sims.set_rate(60_000.0 / interval_ms)
            deadline = time.monotonic() + jobs * interval_ms / 1000 * 3 + 30
            while (await sims.stats()).get("claims_ok", 0) - claims_before < jobs:
                if time.monotonic() > deadline:
                    raise RuntimeError("the claimer fell behind the job stream")
                await asyncio.sleep(0.2)
            await sims.set_rate(0)
            if probe:
                changes = await probe() - version_before
                seconds = (time.monotonic_ns() - start_ns) / 1e9
                print(f"    {changes / seconds:.0f} changes/s during the stream", flush=True)
            await asyncio.sleep(max(0.5, 3 * interval_ms / 1000))
    return [
        (job["claim_received_ns"] - job["announced_ns"]) / 1e6
        for job in await sims.jobs()
        if job["claimed_by"] == hotkey
        and job["announced_ns"] is not None
        and job["announced_ns"] >= start_ns
        and job["claim_received_ns"] is not None
    ]


async def main(args: argparse.Namespace) -> None:
    print_machine()
    print(
        f"claim latency: {args.jobs} jobs per phase, one every {args.interval_ms:g} ms, "
        f"first {args.warmup} of each phase dropped",
        flush=True,
    )
    phases: list[tuple[str, Claimer]] = [
        ("baseline", baseline_claimer),
        ("engine headless", engine_claimer),
    ]
    if not args.no_tui:
        phases.append(("engine + TUI (pty)", tui_claimer()))
        for interval in args.switch_interval:
            name = f"engine + TUI, switch interval {interval * 1000:g} ms"
            phases.append((name, tui_claimer(interval)))
    if not args.no_attach:
        phases.append(("engine headless (own process)", process_claimer(0)))
        phases.append(("engine headless + 2 protocol readers", process_claimer(0, readers=2)))
        phases.append(("engine headless + 2 attached consoles", process_claimer(2)))
    phases.append(("baseline (again)", baseline_claimer))
    samples: dict[str, list[float]] = {}
    async with sim_processes(seed=args.seed) as sims:
        for index, (name, claimer) in enumerate(phases):
            latencies = await run_phase(
                sims,
                claimer,
                HOTKEYS[index % len(HOTKEYS)],
                args.jobs + args.warmup,
                args.interval_ms,
            )
            samples[name] = latencies[args.warmup :]
            worst = ", ".join(f"{value:.1f}" for value in sorted(samples[name])[-5:])
            print(f"  {name}: {len(samples[name])} samples; worst 5 (ms): {worst}", flush=True)
    floor = samples["baseline"] + samples["baseline (again)"]
    base = median(floor)
    rows = [Row("baseline recv→POST (ms)", base, percentile(floor, 99), base)]
    for name in samples:
        if name.startswith("baseline"):
            continue
        values = samples[name]
        rows.append(
            Row(
                f"{name} (ms)",
                median(values),
                percentile(values, 99),
                base,
                "median ≤1.25x, p99 ≤10 ms",
            )
        )
    print_table("Claim latency: new_job written → claim received", rows)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300, help="samples per phase")
    parser.add_argument("--interval-ms", type=float, default=40.0, help="spacing of the jobs")
    parser.add_argument("--warmup", type=int, default=5, help="samples dropped per phase")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-tui", action="store_true", help="skip the engine + TUI phase")
    parser.add_argument(
        "--no-attach", action="store_true", help="skip the engine-process phases (attach)"
    )
    parser.add_argument(
        "--switch-interval",
        type=float,
        nargs="*",
        default=[],
        help="also run the engine + TUI phase with these sys.setswitchinterval values (s)",
    )
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
