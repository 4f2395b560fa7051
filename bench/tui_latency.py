"""TUI responsiveness: key press → the frame that shows its effect, while the engine is busy.

`validator-tui run --config …` runs in a pseudo-terminal (real rendering to a real terminal
device); both simulators run in their own processes and the platform simulator generates
`--jobs-per-second` jobs, so the engine's change feed carries about 19 state changes per
job (≈500 changes/s at the default 27 jobs/s; see BENCHMARKS.md). Each sample types a key
and times the arrival of the first output bytes showing its effect (a press whose effect
does not show within 5 s is counted as missed, and `esc` resets the screen). The output feeds
a terminal emulator (pyte): the effect counts as shown when the emulated screen shows it (the
console sends only the cells that changed, so the bytes of a text need not be contiguous):

- `?` opens the help screen (marker: a line of the key table), `?` closes it;
- `/` opens the job filter (marker: its placeholder), `enter` (empty) closes it.

    .venv/bin/python bench/tui_latency.py --samples 100
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
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
    write_bench_config,
)

MISS_AFTER_S = 5.0
KEYS: tuple[tuple[str, bytes, str, bytes], ...] = (
    ("? → help screen", b"?", "claim the selected pending job", b"?"),
    ("/ → filter input", b"/", "enter keeps it", b"\r"),
)


async def main(args: argparse.Namespace) -> None:
    print_machine()
    print(
        f"TUI latency: {args.samples} key presses while {args.jobs_per_second:g} jobs/s flow",
        flush=True,
    )
    rng = random.Random(args.seed)
    samples: dict[str, list[float]] = {name: [] for name, *_ in KEYS}
    missed = 0
    async with sim_processes(seed=args.seed) as sims:
        with tempfile.TemporaryDirectory(prefix="bench-tui-") as state:
            config = bench_config(sims.platform_url, sims.vmm_url, state, hotkey=HOTKEYS[2])
            path = write_bench_config(config, Path(state))
            argv = cli_argv("run", "--config", str(path), switch_interval=args.switch_interval)
            program = PtyProgram(argv, emulate=True)
            try:
                await sims.wait_claimer_ready(HOTKEYS[2])
                await sims.set_rate(args.jobs_per_second * 60)
                await asyncio.sleep(args.settle_s)
                for index in range(args.samples):
                    name, key, marker, close = KEYS[index % len(KEYS)]
                    for _ in range(50):
                        if not program.shows(marker):
                            break
                        await asyncio.sleep(0.1)
                    program.mark()
                    sent = program.send(key)
                    try:
                        shown = await program.wait_shown(marker, timeout=MISS_AFTER_S)
                    except RuntimeError:
                        if args.debug:
                            print("\n".join(program.screen.display), flush=True)
                        missed += 1
                        program.send(b"\x1b")
                        await asyncio.sleep(1.0)
                        continue
                    samples[name].append(1000 * (shown - sent))
                    await asyncio.sleep(0.15)
                    program.send(close)
                    await asyncio.sleep(rng.uniform(0.3, 0.6))
                completed = await sims.results_accepted()
                await sims.set_rate(0)
            finally:
                await program.stop()
    print(f"  results accepted during the run: {completed}", flush=True)
    print(f"  key presses whose effect never showed within {MISS_AFTER_S:g} s: {missed}")
    every = [value for values in samples.values() for value in values]
    rows = [
        Row(f"{name} (ms)", median(values), percentile(values, 99), target="")
        for name, values in samples.items()
    ]
    rows.append(Row("all keys (ms)", median(every), percentile(every, 99)))
    rows.append(Row("all keys p95 (ms)", percentile(every, 95), target="p95 ≤100 ms"))
    print_table("TUI latency: key press → frame showing it", rows)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100, help="key presses")
    parser.add_argument("--jobs-per-second", type=float, default=27.0, help="job stream")
    parser.add_argument("--settle-s", type=float, default=3.0, help="load before sampling")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--debug", action="store_true", help="print the screen of a miss")
    parser.add_argument(
        "--switch-interval", type=float, help="sys.setswitchinterval for the console process"
    )
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
