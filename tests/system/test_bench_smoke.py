"""Each bench script runs with tiny parameters and prints its result table (no timing asserts:
the numbers live in BENCHMARKS.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TABLE_HEADER = "| metric"

SCRIPTS = {
    "claim_latency.py": ["--jobs", "3", "--warmup", "0", "--interval-ms", "20"],
    "metrics_scrape.py": ["--jobs", "3", "--warmup", "0", "--interval-ms", "20"],
    "hosts.py": [
        *("--jobs", "5", "--warmup", "2", "--backlog", "5", "--rounds", "1"),
        *("--pending", "20", "--passes", "2"),
    ],
    "pending_flood.py": ["--entries", "50", "--window-s", "1", "--every-s", "0.5"],
    "throughput.py": ["--jobs", "5", "--warmup", "2", "--backlog", "5"],
    "tui_latency.py": ["--samples", "2", "--settle-s", "0.2", "--jobs-per-second", "5"],
    "idle_cpu.py": ["--seconds", "0.2", "--windows", "1", "--settle-s", "0"],
    "memory.py": ["--jobs", "10", "--first", "5", "--every", "5", "--backlog", "5"],
    "startup.py": ["--runs", "1"],
    "attach.py": ["--jobs", "50", "--runs", "1"],
    "terminal_bytes.py": ["--sizes", "80x24", "--rates", "0", "--warmup-s", "3", "--seconds", "1"],
    "wal_size.py": ["--rate", "50", "--seconds", "0.5"],
}
#: The first cells of each script's result table (most print metric/median/p99/…).
HEADERS = {"terminal_bytes.py": "| size"}
#: Rows a script's tables must have (by the start of their metric names).
ROWS = {
    "hosts.py": (
        *(
            f"| {pool}: {metric}"
            for pool in ("1 host", "3 hosts, 3x the room", "1 host, 3x the room (180 vCPU)")
            for metric in (
                "jobs/s",
                "engine CPU ms/job",
                "simulators CPU ms/job",
                "VMM requests/job",
            )
        ),
        "| 3 hosts, same room (20 vCPU each): jobs/s",
        "| 3 hosts against 1 host, both 3x the room: engine CPU ms/job",
        *(
            f"| {policy}, {hosts}: place job + capacity check {stat}µs"
            for policy in ("spread", "pack")
            for hosts in ("1 host", "3 hosts", "8 hosts")
            for stat in ("", "p95 ")
        ),
        "| 8 hosts: job arrives, all hosts full (on_new_job) µs",
        "| 1 host: pass over 20 pending, none fits ms",
        "| 3 hosts: pass over 20 pending, one slot freed ms",
        "| 8 hosts: pass over 20 pending, every reason changes ms",
    ),
}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_bench_script_runs_and_prints_its_table(script: str) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *SCRIPTS[script]],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "machine: " in result.stdout
    assert HEADERS.get(script, TABLE_HEADER) in result.stdout
    for row in ROWS.get(script, ()):
        assert row in result.stdout, f"{row!r} missing from:\n{result.stdout[-3000:]}"
