"""Crash-restart: SIGKILL the headless engine at random moments, many times, then check that
the platform holds exactly one result per job the engine claimed (none lost, none duplicated),
that no job VM is left and that the challenge CVMs were adopted rather than multiplied.

The engine runs as `python -m validator_tui run --headless` (a real process, a real SIGKILL);
both simulators run in this process so the check can read them directly.

    .venv/bin/python bench/crash_cycles.py --cycles 50
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import random
import signal
import tempfile
import time
from collections import Counter
from pathlib import Path

import benchlib  # noqa: F401  (puts the repository root on sys.path)

from tests.support.crash import start_engine
from validator_tui.config import ValidatorConfig
from validator_tui.config_io import write_config
from validator_tui.demo import DemoEnvironment

ENGINE = {"poll_interval_s": 0.5, "vm_poll_interval_s": 0.05, "job_timeout_s": 30.0}


async def settle(env: DemoEnvironment, hotkey: str, timeout: float) -> bool:
    """Wait until every job is answered, cancelled or still unclaimed-and-not-pending."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = env.platform.jobs()
        results = env.platform.results()
        busy = [j for j in jobs if j["status"] in ("pending", "claimed")]
        unanswered = [j for j in jobs if j["claimed_by"] == hotkey and j["id"] not in results]
        job_vms = [vm for vm in env.vmm.vms() if "-job-" in vm["name"]]
        if not busy and not unanswered and not job_vms:
            return True
        await asyncio.sleep(0.1)
    return False


async def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="validator-tui-crash-") as tmp:
        workdir = Path(tmp)
        env = DemoEnvironment(
            seed=args.seed,
            jobs_per_minute=args.jobs_per_minute,
            boot_seconds=0.3,
            engine=ENGINE,
            state_dir=str(workdir / "state"),
            evaluator_latency_s=0.2,
        )
        async with env:
            logging.getLogger("uvicorn.error").disabled = True  # client-disconnect tracebacks
            config: ValidatorConfig = env.config  # type: ignore[assignment]
            config_path = write_config(config, workdir / "config.toml")
            log_path = workdir / "engine.log"
            started = time.monotonic()
            up_times = []
            for cycle in range(args.cycles):
                process = await start_engine(config_path, log_path)
                up = rng.uniform(0.2, args.max_up)
                up_times.append(up)
                await asyncio.sleep(up)
                process.send_signal(signal.SIGKILL)
                await process.wait()
                if (cycle + 1) % 10 == 0:
                    print(f"  {cycle + 1} kills, {len(env.platform.results())} results so far")
            env.platform.set_job_rate(0)
            final = await start_engine(config_path, log_path)
            settled = await settle(env, config.validator_hotkey, args.settle_timeout)
            final.send_signal(signal.SIGTERM)
            exit_code = await asyncio.wait_for(final.wait(), 60)
            elapsed = time.monotonic() - started
            log = log_path.read_text(errors="replace")
            report(env, config.validator_hotkey, args, elapsed, up_times, settled, exit_code, log)
            return 0 if settled and exit_code == 0 and not problems(env, config) else 1


def problems(env: DemoEnvironment, config: ValidatorConfig) -> list[str]:
    """Broken invariants: results per claimed job, results for unclaimed jobs, leftover VMs."""
    found = []
    results = env.platform.results()
    claimed = {j["id"] for j in env.platform.jobs() if j["claimed_by"] == config.validator_hotkey}
    for job_id in claimed:
        count = len(results.get(job_id, []))
        status = env.platform.job(job_id)["status"]
        if count != 1 and not (count == 0 and status == "cancelled"):
            found.append(f"job {job_id}: {count} results")
    found += [f"result for a job we never claimed: {j}" for j in set(results) - claimed]
    live = [vm for vm in env.vmm.vms() if vm["status"] != "removing"]
    found += [f"job VM left: {vm['name']}" for vm in live if "-job-" in vm["name"]]
    if len([vm for vm in live if "-ch-" in vm["name"]]) != 3:
        found.append(f"expected 3 challenge CVMs, found {[vm['name'] for vm in live]}")
    return found


def report(
    env: DemoEnvironment,
    hotkey: str,
    args: argparse.Namespace,
    elapsed: float,
    up_times: list[float],
    settled: bool,
    exit_code: int,
    log: str,
) -> None:
    results = env.platform.results()
    claimed = [j for j in env.platform.jobs() if j["claimed_by"] == hotkey]
    kinds: Counter[str] = Counter()
    for job in claimed:
        bodies = results.get(job["id"], [])
        if not bodies:
            kinds["no result (cancelled)" if job["status"] == "cancelled" else "no result"] += 1
        elif len(bodies) > 1:
            kinds["duplicated"] += 1
        elif bodies[0]["error"] == "validator restarted":
            kinds["error: validator restarted"] += 1
        elif bodies[0]["error"]:
            kinds["error: other"] += 1
        else:
            kinds["scored"] += 1
    challenge_creates = log.count("created CVM")
    print(f"\ncycles: {args.cycles} SIGKILLs, up {min(up_times):.2f}-{max(up_times):.2f} s")
    print(f"wall time: {elapsed:.1f} s; settled: {settled}; final SIGTERM exit code {exit_code}")
    print(f"jobs created: {len(env.platform.jobs())}, claimed by the engine: {len(claimed)}")
    print(f"results: {sum(len(b) for b in results.values())} for {len(results)} jobs")
    print(f"outcomes: {dict(sorted(kinds.items()))}")
    print(f"orphan job VMs removed at start-up: {log.count('removed orphaned job VM')}")
    print(f"results resent after a restart: {log.count('unsent results')} restarts had some")
    print(f"challenge CVMs created over all runs: {challenge_creates} (3 = always adopted)")
    found = problems(env, env.config)  # type: ignore[arg-type]
    print("invariant: " + ("OK" if not found and settled else "FAILED"))
    for line in found[:30]:
        print(f"  {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description="SIGKILL/restart cycles of the headless engine")
    parser.add_argument("--cycles", type=int, default=50)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--jobs-per-minute", type=float, default=600.0)
    parser.add_argument("--max-up", type=float, default=3.0, help="longest life before a kill")
    parser.add_argument("--settle-timeout", type=float, default=120.0)
    args = parser.parse_args()
    print(
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}"
    )
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
