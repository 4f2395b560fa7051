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

from benchlib import Row, median, percentile, print_machine, print_table

from validator_tui.engine.store import Store, StoredState

MB = 1e6
SLOW_MS = 5.0


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
            took.append((time.perf_counter() - before) * 1000)
            largest = max(largest, wal.stat().st_size)
            pause = started + len(took) / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        end, database = wal.stat().st_size / MB, store.path.stat().st_size / MB
        store.close()
    slow = [t for t in took if t > SLOW_MS]
    print_table(
        f"{len(took)} jobs at {rate:g}/s for {seconds:g} s",
        [
            Row("largest log file MB", largest / MB),
            Row("log file at the end MB", end),
            Row("database at the end MB", database),
            Row("two commits ms (median, p99)", median(took), percentile(took, 99)),
            Row("worst two commits ms", max(took)),
            Row(f"pairs of commits over {SLOW_MS:g} ms", len(slow)),
            Row(f"ms in pairs over {SLOW_MS:g} ms", sum(slow)),
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="jobs per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    print_machine()
    run(args.rate, args.seconds)


if __name__ == "__main__":
    main()
