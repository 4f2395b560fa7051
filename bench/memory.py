"""Memory: RSS of `validator-tui run` (engine + TUI, in a pseudo-terminal; `--headless`: the
engine alone, `run --headless`) after `--jobs` jobs have flowed through it, against its RSS
after the first `--first` jobs.

Both simulators run in their own processes (their memory is not counted); instant boots and
evaluators. A line is printed every `--every` jobs so a long run shows its trend.

    .venv/bin/python bench/memory.py --jobs 100000
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
    print_machine,
    print_table,
    rss_mb,
    sim_processes,
    write_bench_config,
)


async def main(args: argparse.Namespace) -> None:
    print_machine()
    what = "engine headless" if args.headless else "engine + TUI"
    print(f"memory: {args.jobs} jobs through {what}, RSS every {args.every}", flush=True)
    async with sim_processes() as sims:
        with tempfile.TemporaryDirectory(prefix="bench-mem-") as state:
            config = bench_config(sims.platform_url, sims.vmm_url, state, hotkey=HOTKEYS[3])
            path = write_bench_config(config, Path(state))
            headless = ["--headless"] if args.headless else []
            program = PtyProgram(cli_argv("run", "--config", str(path), *headless))
            drain = asyncio.create_task(program.drain(1e9))
            try:
                await sims.wait_claimer_ready(HOTKEYS[3])
                started = time.monotonic()
                await sims.feed(args.first, args.backlog)
                first = rss_mb(program.pid)
                print(f"  after {args.first} jobs: RSS {first:.1f} MB", flush=True)
                done = args.first
                peak = first
                while done < args.jobs:
                    step = min(args.every, args.jobs - done)
                    await sims.feed(step, args.backlog)
                    done += step
                    now = rss_mb(program.pid)
                    peak = max(peak, now)
                    rate = done / (time.monotonic() - started)
                    print(f"  after {done} jobs: RSS {now:.1f} MB ({rate:.1f} jobs/s)", flush=True)
                last = rss_mb(program.pid)
            finally:
                drain.cancel()
                await program.stop()
    rows = [
        Row(f"RSS after {args.first} jobs (MB)", first),
        Row(f"RSS after {args.jobs} jobs (MB)", last, baseline=first),
        Row("peak RSS sampled (MB)", peak, baseline=first),
        Row("growth (MB)", last - first, target="≤30 MB"),
    ]
    print_table(f"Memory: {what}", rows)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs in total")
    parser.add_argument("--first", type=int, default=1000, help="jobs before the reference")
    parser.add_argument("--every", type=int, default=5000, help="jobs between readings")
    parser.add_argument("--backlog", type=int, default=100, help="unfinished jobs offered")
    parser.add_argument("--headless", action="store_true", help="the engine alone (no TUI)")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
