"""dstack's own `vmm-cli.py` against the VMM simulator, over TCP and over a unix socket:
`lsvm`, `info`, `lsgpu`, `logs`, `stop`, `remove` work as on a real VMM.

The script is dstack's (Dstack-TEE/dstack, `dstack/vmm/src/vmm-cli.py`), not ours: the test
runs it only when `$DSTACK_VMM_CLI` names it, and is skipped otherwise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

VMM_CLI = os.environ.get("DSTACK_VMM_CLI", "")
pytestmark = pytest.mark.skipif(
    not (VMM_CLI and Path(VMM_CLI).is_file()),
    reason="set $DSTACK_VMM_CLI to dstack's vmm-cli.py to check it against the simulator",
)
COMPOSE = json.dumps({"manifest_version": 2, "name": "evaluator", "runner": "docker-compose"})


def serve(*args: str) -> tuple[subprocess.Popen[str], str]:
    """`validator-tui sim vmm ARGS` with 2 fake GPUs; the process and its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "validator_tui", "sim", "vmm", "--gpus", "2", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


@pytest.fixture
def simulators(tmp_path: Path) -> Iterator[list[str]]:
    sock = Path("/tmp") / f"vt-cli-{os.getpid()}.sock"
    started = [serve("--boot-seconds", "0"), serve("--boot-seconds", "0", "--unix", str(sock))]
    try:
        yield [url for _, url in started]
    finally:
        for process, _ in started:
            process.terminate()
            process.wait(10)


def client(url: str) -> httpx.Client:
    if url.startswith("unix:"):
        transport = httpx.HTTPTransport(uds=url.removeprefix("unix:"))
        return httpx.Client(transport=transport, base_url="http://localhost", timeout=10)
    return httpx.Client(base_url=url, timeout=10)


def vmm_cli(url: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, VMM_CLI, "--url", url, *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_vmm_cli_lists_inspects_stops_and_removes_on_each_simulator(simulators):
    for url in simulators:
        with client(url) as http:
            body = {
                "name": "vt-5grwvaef-job-cli",
                "image": "dstack-0.5.2",
                "compose_file": COMPOSE,
                "vcpu": 1,
                "memory": 512,
                "disk_size": 1,
                "gpus": {"attach_mode": "listed", "gpus": [{"slot": "18:00.0"}]},
            }
            vm_id = http.post("/prpc/CreateVm?json", json=body).json()["id"]
        listing = vmm_cli(url, "lsvm", "-v")
        assert vm_id in listing and "vt-5grwvaef-job-cli" in listing and "running" in listing
        assert "18:00.0" in listing
        info = vmm_cli(url, "info", vm_id)
        assert "Status:        running" in info and "GPUs:          18:00.0" in info
        gpus = vmm_cli(url, "lsgpu")
        assert [line.split("│")[4].strip() for line in gpus.splitlines() if ":00.0" in line] == [
            "No",
            "Yes",
        ]
        assert "boot progress: done" in vmm_cli(url, "logs", vm_id, "-n", "5")
        assert "Forcefully stopped" in vmm_cli(url, "stop", "-f", vm_id)
        assert "stopped" in vmm_cli(url, "lsvm")
        assert "No" not in vmm_cli(url, "lsgpu").split("Available", 1)[1]
        assert "Removed VM" in vmm_cli(url, "remove", vm_id)
        deadline = time.monotonic() + 10
        while vm_id in vmm_cli(url, "lsvm"):
            assert time.monotonic() < deadline, "the removed VM stays listed"
            time.sleep(0.1)
