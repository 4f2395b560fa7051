"""Chaos: N jobs through the real engine while the simulators misbehave (see
tests/support/chaos.py for the faults and the invariant).

    .venv/bin/python bench/chaos.py --jobs 2000 --fault-rate 0.2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import time

import benchlib  # noqa: F401  (puts the repository root on sys.path)

from tests.support.chaos import run_chaos


def main() -> int:
    parser = argparse.ArgumentParser(description="chaos run of the engine against the sims")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs-per-second", type=float, default=50.0)
    args = parser.parse_args()
    print(
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}"
    )
    report = asyncio.run(
        run_chaos(
            args.jobs,
            fault_rate=args.fault_rate,
            seed=args.seed,
            jobs_per_second=args.jobs_per_second,
            settle_timeout=max(60.0, args.jobs / 20),
        )
    )
    print(f"jobs: {report.jobs} in {report.seconds:.1f} s, fault rate {args.fault_rate:g}")
    print(f"faults injected ({sum(report.faults.values())}): {dict(sorted(report.faults.items()))}")
    print(f"outcomes: {dict(sorted(report.outcomes.items()))}")
    print(f"engine (events counted from the bounded event log): {dict(report.engine)}")
    print("invariant: " + ("OK" if not report.problems else "FAILED"))
    for problem in report.problems[:30]:
        print(f"  {problem}")
    return 1 if report.problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
