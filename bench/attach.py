"""Attach: `validator-tui attach` until its first full frame, with 10,000 jobs in the engine's
history, against the same with an empty history (the baseline, measured in the same run).

The engine runs in this process on its own thread (`InProcessEngine`: engine + control
socket), both simulators in their own processes. Its history is filled with finished job
records shaped like real ones (score, metrics, a short timeline; the latest 200 with their
logs, as the engine keeps them) and a full event log. The console runs in a pseudo-terminal
(160x48); its first full frame is the first output showing the newest job of the history at
the top of the job feed (with an empty history: the feed's title, `Jobs (0)`), stamped as it
arrives. Also measured in-process: connect →
snapshot applied by a `SocketEngine` (no rendering), and the snapshot's size (every unfinished
job, the latest 500 finished ones and the latest 100 events, what the console shows; older
records are fetched when asked for).

    .venv/bin/python bench/attach.py --jobs 10000 --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from benchlib import (
    HOTKEYS,
    PtyProgram,
    Row,
    bench_config,
    cli_argv,
    median,
    percentile,
    print_machine,
    print_table,
    sim_processes,
)

from validator_tui.control import frames
from validator_tui.control.client import SocketEngine
from validator_tui.control.inprocess import InProcessEngine
from validator_tui.control.interface import EngineMode
from validator_tui.control.server import SNAPSHOT_FINISHED_JOBS, snapshot_of
from validator_tui.engine.state import EngineState
from validator_tui.engine.validator import Validator
from validator_tui.shared.records import JobRecord, JobState, TimelineEntry


def fill_history(state: EngineState, count: int) -> None:
    """`count` finished jobs and a full event log, as a long-running engine holds them."""
    now = time.time()
    for number in range(count):
        at = now - (count - number)
        job = JobRecord(
            id=f"{number:08x}-5b2c-4f5e-9a77-{number:012x}",
            challenge_id=f"challenge-{number % 3}",
            submission_id=f"submission-{number:06d}",
            miner_hotkey="5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty",
            state=JobState.COMPLETED if number % 10 else JobState.FAILED,
            created_at=at - 3,
            claimed_at=at - 2.9,
            finished_at=at,
            vm_id=f"{number:08x}-0000-4000-8000-000000000000",
            score=(number % 1000) / 1000,
            metrics={"accuracy": 0.5, "tests_passed": 17},
            error=None if number % 10 else "evaluator answered HTTP 500",
            execution_time_ms=2900,
            logs=[f"[evaluator] step {step}: ok" for step in range(12)],
            result_status="accepted",
            timeline=[
                TimelineEntry(at - 2.9, "claimed"),
                TimelineEntry(at - 2.5, "VM created"),
                TimelineEntry(at - 1.0, "evaluating"),
                TimelineEntry(at, "result accepted"),
            ],
        )
        state.put_job(job)
    for number in range(2000):
        state.event("info", "job", f"job {number:08x} completed, score 0.5", job_id=str(number))


async def hosted_engine(config_dir: Path, sims, jobs: int, hotkey: str) -> InProcessEngine:
    config = bench_config(
        sims.platform_url, sims.vmm_url, config_dir, hotkey=hotkey, engine={"auto_claim": False}
    )
    engine = InProcessEngine(Validator(config), mode=EngineMode.HEADLESS)
    engine.start()
    await engine.wait_started()

    async def fill() -> None:
        fill_history(engine.validator.state, jobs)

    await engine.call(fill)
    return engine


async def snapshot_bytes(engine: InProcessEngine) -> int:
    async def measure() -> int:
        delta = snapshot_of(engine.validator.state)
        return sum(len(frame) for frame in frames.state_frames(delta, snapshot=True))

    return await engine.call(measure)


async def time_connect(state_dir: Path, jobs: int) -> float:
    """Seconds from connecting to the whole snapshot applied (no rendering)."""
    started = time.monotonic()
    client = SocketEngine(state_dir)
    await client.connect(timeout=30)
    elapsed = time.monotonic() - started
    assert len(client.replica.jobs) == min(jobs, SNAPSHOT_FINISHED_JOBS), len(client.replica.jobs)
    await client.close()
    return elapsed


async def time_first_frame(state_dir: Path, jobs: int) -> float:
    """Seconds from starting `validator-tui attach` to a frame showing the whole history."""
    program = PtyProgram(cli_argv("attach", "--state-dir", str(state_dir)))
    try:
        marker = f"{jobs - 1:08x}" if jobs else "Jobs (0)"
        shown = await program.wait_for(marker.encode(), 0, timeout=60)
        return shown - program.started
    finally:
        await program.stop()


async def measure(sims, jobs: int, runs: int, hotkey: str) -> tuple[list[float], list[float], int]:
    with tempfile.TemporaryDirectory(prefix="bench-attach-") as directory:
        engine = await hosted_engine(Path(directory), sims, jobs, hotkey)
        try:
            state_dir = Path(engine.info.state_dir)
            size = await snapshot_bytes(engine)
            await time_first_frame(state_dir, jobs)  # warm-up (page cache)
            frames_s = [await time_first_frame(state_dir, jobs) for _ in range(runs)]
            connects = [await time_connect(state_dir, jobs) for _ in range(runs)]
        finally:
            engine.request_stop()
            await engine.wait_stopped()
    return frames_s, connects, size


async def main(args: argparse.Namespace) -> None:
    print_machine()
    print(f"attach: {args.runs} runs each after one warm-up run, {args.jobs} jobs", flush=True)
    async with sim_processes(seed=args.seed) as sims:
        base_frames, base_connects, base_size = await measure(sims, 0, args.runs, HOTKEYS[0])
        frames_s, connects, size = await measure(sims, args.jobs, args.runs, HOTKEYS[1])
    print(f"  snapshot: {size / 1e6:.2f} MB with {args.jobs} jobs, {base_size} B empty")
    rows = [
        Row(
            "attach → first frame, empty history (s)",
            median(base_frames),
            percentile(base_frames, 99),
        ),
        Row(
            f"attach → first full frame, {args.jobs} jobs (s)",
            median(frames_s),
            percentile(frames_s, 99),
            median(base_frames),
            "≤1.0 s",
        ),
        Row(
            "connect → snapshot applied, empty (s)",
            median(base_connects),
            percentile(base_connects, 99),
        ),
        Row(
            f"connect → snapshot applied, {args.jobs} jobs (s)",
            median(connects),
            percentile(connects, 99),
            median(base_connects),
        ),
    ]
    print_table("Attach", rows)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10000, help="jobs in the engine's history")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
