"""Terminal bytes: what the console costs on the wire (an SSH link), measured as a user would.

The real `validator-tui demo --jobs-per-minute N` runs in a pseudo-terminal of each given size
(`TERM=xterm-256color`); this script plays the terminal: it answers Textual's query for
synchronized output (DECRQM 2026) like a modern terminal does, so every frame Textual sends is
framed by `ESC[?2026h … ESC[?2026l` and can be counted. After `--warmup-s` (the challenge CVMs
are active by then), every byte the app writes is counted over `--seconds`.

Reported per size and job rate: bytes per second (mean over the window, and the worst
one-second slice), frames per second, and bytes per frame.

    .venv/bin/python bench/terminal_bytes.py                      # 3 sizes x idle/60/600
    .venv/bin/python bench/terminal_bytes.py --sizes 120x36 --rates 0 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass

from benchlib import PtyProgram, cli_argv, print_machine

SYNC_QUERY = b"\x1b[?2026$p"
#: "mode 2026 is reset (supported)": what kitty, WezTerm, foot, iTerm2, … answer.
SYNC_REPLY = b"\x1b[?2026;2$y"
SYNC_START = b"\x1b[?2026h"
TARGETS_120X36 = {0.0: "≤300 B/s", 60.0: "≤8,000 B/s", 600.0: "≤30,000 B/s"}


@dataclass(frozen=True)
class Measured:
    """One size and job rate: bytes and frames over the window."""

    cols: int
    rows: int
    jobs_per_minute: float
    seconds: float
    total_bytes: int
    frames: int
    worst_second: int

    @property
    def bytes_per_second(self) -> float:
        return self.total_bytes / self.seconds

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds

    @property
    def bytes_per_frame(self) -> float:
        return self.total_bytes / self.frames if self.frames else 0.0


async def measure(
    cols: int, rows: int, jobs_per_minute: float, warmup_s: float, seconds: float, press: str = ""
) -> Measured:
    """Run the demo at this size and rate; count what it writes after the warm-up (and after
    typing `press`, if given)."""
    with tempfile.TemporaryDirectory(prefix="bench-bytes-") as state:
        argv = cli_argv("demo", "--jobs-per-minute", f"{jobs_per_minute:g}", "--state-dir", state)
        program = PtyProgram(argv, cols=cols, rows=rows, replies={SYNC_QUERY: SYNC_REPLY})
        try:
            await program.drain(warmup_s)
            if program.process.poll() is not None:
                raise RuntimeError(f"the demo exited during the warm-up: {program.process.poll()}")
            if press:
                program.send(press.encode())
                await program.drain(1.0)
            program.mark()
            total = frames = worst = 0
            carry = b""
            started = time.monotonic()
            end = started + seconds
            while (now := time.monotonic()) < end:
                await asyncio.sleep(min(1.0, end - now))
                data = program.take()
                total += len(data)
                worst = max(worst, len(data))
                frames += (carry + data).count(SYNC_START)
                carry = data[-(len(SYNC_START) - 1) :]
            elapsed = time.monotonic() - started
        finally:
            await program.stop()
    return Measured(cols, rows, jobs_per_minute, elapsed, total, frames, worst)


def print_results(results: list[Measured]) -> None:
    """A Markdown table: one row per size and rate."""
    print("\n### Terminal bytes: `validator-tui demo` in a pty, after the warm-up\n")
    header = ("size", "jobs/min", "B/s", "worst 1 s (B)", "frames/s", "B/frame", "target")
    lines = [header]
    for result in results:
        target = (
            TARGETS_120X36.get(result.jobs_per_minute, "")
            if (result.cols, result.rows) == (120, 36)
            else ""
        )
        lines.append(
            (
                f"{result.cols}x{result.rows}",
                f"{result.jobs_per_minute:g}",
                f"{result.bytes_per_second:,.0f}",
                f"{result.worst_second:,}",
                f"{result.frames_per_second:.2f}",
                f"{result.bytes_per_frame:,.0f}",
                target,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for index, line in enumerate(lines):
        print("| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) + " |")
        if index == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print(flush=True)


async def main(args: argparse.Namespace) -> None:
    print_machine()
    print(
        f"terminal bytes: warm-up {args.warmup_s:g} s, window {args.seconds:g} s, "
        f"sizes {' '.join(args.sizes)}, jobs/min {' '.join(f'{r:g}' for r in args.rates)}"
        + (f", keys typed: {args.press!r}" if args.press else ""),
        flush=True,
    )
    results = []
    for size in args.sizes:
        cols, rows = (int(part) for part in size.lower().split("x"))
        for rate in args.rates:
            result = await measure(cols, rows, rate, args.warmup_s, args.seconds, args.press)
            print(
                f"  {cols}x{rows} at {rate:g} jobs/min: {result.bytes_per_second:,.0f} B/s, "
                f"{result.frames_per_second:.2f} frames/s",
                flush=True,
            )
            results.append(result)
    print_results(results)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", nargs="+", default=["80x24", "120x36", "200x50"], help="COLSxROWS"
    )
    parser.add_argument(
        "--rates", nargs="+", type=float, default=[0.0, 60.0, 600.0], help="jobs per minute"
    )
    parser.add_argument("--warmup-s", type=float, default=10.0, help="before counting")
    parser.add_argument("--seconds", type=float, default=30.0, help="counting window")
    parser.add_argument(
        "--press", default="", help="keys typed after the warm-up (e.g. t: follow the newest job)"
    )
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
