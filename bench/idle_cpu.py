"""Idle cost: CPU used by `validator-tui run` (engine + TUI in a pseudo-terminal) while it is
connected to both simulators and nothing happens; the headless engine for comparison.

The simulators run in their own processes (not counted). After the validator has claimed
three warm-up jobs and `--settle-s` has passed, CPU time is read from /proc over
`--seconds`, in `--windows` equal windows (median and worst window reported).

    .venv/bin/python bench/idle_cpu.py --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from benchlib import (
    HOTKEYS,
    PtyProgram,
    Row,
    bench_config,
    cli_argv,
    cpu_seconds,
    median,
    print_machine,
    print_table,
    sim_processes,
    write_bench_config,
)


async def idle_percent(args: argparse.Namespace, headless: bool, hotkey: str) -> list[float]:
    """% of one core used by the validator process in each window."""
    async with sim_processes() as sims:
        with tempfile.TemporaryDirectory(prefix="bench-idle-") as state:
            config = bench_config(
                sims.platform_url,
                sims.vmm_url,
                state,
                hotkey=hotkey,
                engine={"poll_interval_s": 5.0, "challenge_check_interval_s": 60.0},
            )
            path = write_bench_config(config, Path(state))
            argv = cli_argv("run", "--config", str(path), *(["--headless"] if headless else []))
            program = PtyProgram(argv)
            drain = asyncio.create_task(program.drain(1e9))
            try:
                await sims.wait_claimer_ready(hotkey)
                await asyncio.sleep(args.settle_s)
                window = args.seconds / args.windows
                percents = []
                for _ in range(args.windows):
                    before = cpu_seconds(program.pid)
                    await asyncio.sleep(window)
                    percents.append(100 * (cpu_seconds(program.pid) - before) / window)
                return percents
            finally:
                drain.cancel()
                await program.stop()


async def main(args: argparse.Namespace) -> None:
    print_machine()
    print(f"idle CPU: {args.seconds:g} s in {args.windows} windows after settling", flush=True)
    rows = []
    if not args.no_tui:
        tui = await idle_percent(args, headless=False, hotkey=HOTKEYS[0])
        rows.append(Row("engine + TUI idle (% of a core)", median(tui), max(tui), target="≤1%"))
    headless = await idle_percent(args, headless=True, hotkey=HOTKEYS[1])
    rows.append(
        Row("engine headless idle (% of a core)", median(headless), max(headless), target="≤0.2%")
    )
    print_table("Idle CPU (p99 column: worst window)", rows)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="measured time per mode")
    parser.add_argument("--windows", type=int, default=6, help="measurement windows")
    parser.add_argument("--settle-s", type=float, default=5.0, help="wait before measuring")
    parser.add_argument("--no-tui", action="store_true", help="measure the headless engine only")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
