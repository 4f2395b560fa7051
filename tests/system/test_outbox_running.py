"""`validator-tui outbox list|retry|discard` while an engine runs on the state dir: through its
control socket (the store is the engine's while it runs)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.sim_thread import SimThread
from validator_tui.config_io import write_config
from validator_tui.control import ChallengeState
from validator_tui.control.client import SocketEngine
from validator_tui.control.paths import find_socket


def outbox(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "validator_tui", "outbox", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def make_dead_letters(state: Path, jobs: list[str]) -> None:
    """Claim `jobs` through the control socket and wait until both results are dead letters."""
    client = SocketEngine(state)
    await client.connect()
    try:
        for _ in range(300):
            challenges = client.replica.challenges.values()
            active = all(c.state is ChallengeState.ACTIVE for c in challenges) and challenges
            if active and all(job in client.replica.jobs for job in jobs):
                break
            await asyncio.sleep(0.1)
        for job in jobs:
            claimed = await client.claim(job)
            assert claimed.ok, claimed.message
        for _ in range(200):
            if client.replica.header.counters.dead_letters == len(jobs):
                return
            await asyncio.sleep(0.1)
        raise AssertionError("the results did not become dead letters")
    finally:
        await client.close()


def test_outbox_commands_go_through_the_running_engine(tmp_path):
    sims = SimThread(tmp_path)
    engine = None
    try:
        config = write_config(sims.env.config, tmp_path / "validator.toml")
        state = sims.env.config.state_path
        jobs = [job["id"] for job in sims.call(sims.env.platform.add_jobs, 2)]
        for job in jobs:
            sims.call(
                lambda job=job: sims.env.platform.inject_fault(
                    status=400, path_prefix=f"/jobs/{job}/results", body='{"error": "refused"}'
                )
            )
        log = tmp_path / "engine.log"
        with log.open("wb") as sink:
            engine = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "validator_tui",
                    "run",
                    "--headless",
                    "--config",
                    str(config),
                ],
                stdout=sink,
                stderr=sink,
                env=os.environ | {"PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + 30
        while not find_socket(state).exists():
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.1)
        asyncio.run(make_dead_letters(state, jobs))

        listed = outbox(config, "list")
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.splitlines()
        assert lines[0] == "2 dead letters, 0 unsent, 2 entries"
        assert all(any(line.startswith(job) and " dead " in line for line in lines) for job in jobs)

        retried = outbox(config, "retry", jobs[0])
        assert retried.returncode == 0, retried.stderr
        deadline = time.monotonic() + 20
        while jobs[0] not in sims.call(sims.env.platform.results):
            assert time.monotonic() < deadline, "the retried result was not sent at once"
            time.sleep(0.1)
        discarded = outbox(config, "discard", jobs[1], "--yes")
        assert discarded.returncode == 0, discarded.stderr
        again = outbox(config, "discard", jobs[1], "--yes")
        assert again.returncode == 1
        listed = outbox(config, "list")
        assert listed.stdout.splitlines()[0] == "0 dead letters, 0 unsent, 2 entries"
        text = log.read_text()
        assert f"send the dead letter of job {jobs[0]} again -> done" in text
        assert f"discard the dead letter of job {jobs[1]} -> done" in text
        assert "outbox #" in text
        engine.send_signal(signal.SIGTERM)
        assert engine.wait(30) == 0
    finally:
        if engine is not None and engine.poll() is None:
            engine.kill()
        sims.close()
