"""Start-up: `validator-tui --help` until it exits, and `validator-tui demo` until its first
painted frame.

`--help` runs as a plain subprocess. `demo` runs in a pseudo-terminal (160x48); the first
painted frame is the first output containing the job feed's title ("Jobs"), stamped as it
arrives. Each is run `--runs` times; the first run of each is a warm-up (page cache).

    .venv/bin/python bench/startup.py --runs 10
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import time

from benchlib import (
    REPO,
    PtyProgram,
    Row,
    cli_argv,
    median,
    percentile,
    print_machine,
    print_table,
)

FIRST_FRAME_MARKER = b"Jobs"


def time_help() -> float:
    """Seconds for `validator-tui --help` to print and exit."""
    started = time.monotonic()
    subprocess.run(cli_argv("--help"), cwd=REPO, check=True, capture_output=True)
    return time.monotonic() - started


async def time_demo_first_frame() -> float:
    """Seconds from starting `validator-tui demo` to its first painted frame."""
    program = PtyProgram(cli_argv("demo", "--jobs-per-minute", "0"))
    try:
        shown = await program.wait_for(FIRST_FRAME_MARKER, 0, timeout=30)
        return shown - program.started
    finally:
        await program.stop()


async def main(args: argparse.Namespace) -> None:
    print_machine()
    print(f"startup: {args.runs} runs each after one warm-up run", flush=True)
    time_help()
    helps = [time_help() for _ in range(args.runs)]
    await time_demo_first_frame()
    demos = [await time_demo_first_frame() for _ in range(args.runs)]
    rows = [
        Row("validator-tui --help (s)", median(helps), percentile(helps, 99), target="≤0.3 s"),
        Row("demo → first frame (s)", median(demos), percentile(demos, 99), target="≤1.0 s"),
    ]
    print_table("Start-up", rows)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs of each")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
