"""Pending flood: 20,000 listed pending entries whose claims answer 404 (another validator's
leftovers) with real jobs announced among them, one every `--every-s` seconds.

Both simulators run in their own processes; the engine runs headless in its own process
(`validator-tui run --headless`). Once the engine has claimed every leftover once (each
answered 404; or after `--first-pass-s`), real jobs are announced for `--window-s` seconds;
the bench prints, over that window:

- announcement → claim: the simulator writes `new_job` on the WebSocket → it receives the
  claim (both stamped inside the platform simulator process); a job not claimed by the end
  of the window (plus 10 s) counts as unclaimed,
- the engine's CPU (its process, % of one core) and its RSS at the end,
- the claims that answered 404 during the window (re-tries of leftovers).

`--engine-src DIR` runs the engine from another checkout (e.g. `git archive main` unpacked)
against the same simulators: the baseline of a before/after comparison.

    .venv/bin/python bench/pending_flood.py --entries 20000 --window-s 60
    .venv/bin/python bench/pending_flood.py --engine-src /tmp/base
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from benchlib import (
    Row,
    SimProcesses,
    bench_config,
    cli_argv,
    cpu_seconds,
    median,
    percentile,
    print_machine,
    print_table,
    rss_mb,
    sim_processes,
    write_bench_config,
)

from validator_tui.control.paths import find_socket


async def wait_for_stat(sims: SimProcesses, key: str, at_least: int, timeout: float) -> bool:
    """Wait until the platform simulator's counter `key` reaches `at_least` (True) or for
    `timeout` seconds (False)."""
    deadline = time.monotonic() + timeout
    while (await sims.stats()).get(key, 0) < at_least:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)
    return True


def without_setting(path: Path, key: str) -> None:
    """Drop `key` (at its default value) from the config at `path`: an engine from before the
    setting existed refuses a config that names it."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(x for x in lines if not x.startswith(f"{key} =")), encoding="utf-8")


async def run(args: argparse.Namespace) -> None:
    print_machine()
    async with sim_processes(seed=7, pending_limit=args.entries + 1000) as sims:
        await sims.add_unclaimable(args.entries)
        with tempfile.TemporaryDirectory(prefix="bench-flood-") as tmp:
            config = bench_config(
                sims.platform_url, sims.vmm_url, Path(tmp) / "state", cpu_cores=6 + 2 * 8
            )
            path = write_bench_config(config, Path(tmp))
            env = dict(os.environ)
            cwd = None
            if args.engine_src:
                cwd = args.engine_src
                env["PYTHONPATH"] = args.engine_src
                without_setting(path, "lost_claim_backoff_s")
            engine = await asyncio.create_subprocess_exec(
                *cli_argv("run", "--headless", "--config", str(path)),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                cwd=cwd,
                env=env,
            )
            try:
                deadline = time.monotonic() + 60
                while not find_socket(config.state_path).exists():
                    if time.monotonic() > deadline:
                        raise RuntimeError("the engine did not start")
                    await asyncio.sleep(0.1)
                # The first claim of every entry is the engine's to make: measure after it (or
                # after --first-pass-s, whichever comes first).
                started = time.monotonic()
                done = await wait_for_stat(
                    sims, "claims_not_found", args.entries, args.first_pass_s
                )
                took = f"{time.monotonic() - started:.1f} s" if done else "not made"
                print(f"first claim of every entry (404 each): {took}")
                await measure(args, sims, engine.pid)
            finally:
                engine.terminate()
                await asyncio.wait_for(engine.wait(), 60)


async def measure(args: argparse.Namespace, sims: SimProcesses, pid: int) -> None:
    """Announce real jobs for the window; print latencies, CPU, RSS and 404 re-tries."""
    before = {job["id"] for job in await sims.jobs()}
    lost_before = (await sims.stats()).get("claims_not_found", 0)
    cpu_before, started = cpu_seconds(pid), time.monotonic()
    while time.monotonic() - started < args.window_s:
        await sims.add_jobs(1)
        await asyncio.sleep(args.every_s)
    cpu = (cpu_seconds(pid) - cpu_before) / (time.monotonic() - started) * 100
    lost = (await sims.stats()).get("claims_not_found", 0) - lost_before
    rss = rss_mb(pid)
    settle_until = time.monotonic() + 10
    while True:
        real = [job for job in await sims.jobs() if job["id"] not in before]
        claimed = [job for job in real if job["claim_received_ns"] is not None]
        if len(claimed) == len(real) or time.monotonic() > settle_until:
            break
        await asyncio.sleep(0.5)
    latencies = [
        (job["claim_received_ns"] - job["announced_ns"]) / 1e6
        for job in claimed
        if job["announced_ns"] is not None
    ]
    source = args.engine_src or "this checkout"
    print(f"engine from {source}: {len(claimed)}/{len(real)} announced jobs claimed")
    rows = [
        Row(
            "announce -> claim (ms)",
            median(latencies) if latencies else None,
            percentile(latencies, 99) if latencies else None,
            target="<= 1000",
        ),
        Row("engine CPU (% of a core)", cpu, target="<= 30"),
        Row("engine RSS at the end (MB)", rss),
        Row("404 claims in the window", float(lost)),
        Row("announced jobs unclaimed", float(len(real) - len(claimed)), target="0"),
    ]
    print_table(f"pending flood: {args.entries} unclaimable entries, {args.window_s:g} s", rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--window-s", type=float, default=60.0)
    parser.add_argument("--every-s", type=float, default=2.0)
    parser.add_argument("--first-pass-s", type=float, default=120.0)
    parser.add_argument("--engine-src", default="", help="run the engine from this checkout")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
