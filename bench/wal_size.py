"""The state database's write-ahead log under commits that never pause.

Commits like a flood of lost claims (the claim intent, then the `lost` row: two commits per
job) at `--rate` jobs per second for `--seconds`, on a Store with its checkpoint thread, and
prints the largest log file seen, the log and database at the end, and the time each pair of
commits took (median, p99, worst: what the engine's event loop waited).

    .venv/bin/python bench/wal_size.py --rate 200 --seconds 20
    .venv/bin/python bench/wal_size.py --rate 1000 --seconds 20
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchlib import median, percentile, print_machine

from validator_tui.engine.store import Store, StoredState

MB = 1e6


def run(rate: float, seconds: float) -> None:
    """Commit at `rate` jobs/s for `seconds` and print the numbers."""
    with tempfile.TemporaryDirectory() as directory:
        store = Store(Path(directory) / "state.sqlite3")
        wal = Path(f"{store.path}-wal")
        took: list[float] = []
        largest = 0
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            job_id = f"job-{len(took):08d}"
            before = time.perf_counter()
            store.begin_claim(job_id, "challenge-1")
            store.upsert_job(job_id, "challenge-1", StoredState.LOST)
            took.append(time.perf_counter() - before)
            largest = max(largest, wal.stat().st_size)
            pause = started + len(took) / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        print(f"jobs {len(took)} at {rate:g}/s for {seconds:g} s")
        print(f"largest log file {largest / MB:.2f} MB")
        end, database = wal.stat().st_size / MB, store.path.stat().st_size / MB
        print(f"log at the end {end:.2f} MB, database {database:.2f} MB")
        ms = [t * 1000 for t in took]
        p99 = percentile(ms, 99)
        print(f"two commits: median {median(ms):.3f} ms, p99 {p99:.3f} ms, worst {max(ms):.1f} ms")
        slow = sum(t > 5 for t in ms)
        print(f"pairs over 5 ms: {slow} ({sum(t for t in ms if t > 5):.0f} ms in all)")
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="jobs per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    print_machine()
    run(args.rate, args.seconds)


if __name__ == "__main__":
    main()
