"""The engine outlives its console: real processes, real terminals.

One engine per state dir; an SSH drop (SIGHUP, or a terminal that only answers EIO) closes the
console and the engine finishes its jobs; SIGTERM/SIGINT stop the console's engine the graceful
way; attached consoles come and go. The simulators run on a thread of the test process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.sim_thread import SimThread
from tests.support.terminal import PtyProcess, cli
from validator_tui.config_io import write_config
from validator_tui.control.client import SocketEngine
from validator_tui.control.paths import find_socket
from validator_tui.shared.records import JobState

ALT_SCREEN_OFF = b"\x1b[?1049l"
CURSOR_ON = b"\x1b[?25h"
#: What the engine logs once its terminal has gone and it runs on without a console.
KEEPS_RUNNING = "the console closed, the validator keeps running"
STOPPED_BY_SIGNAL = "stop signal: stopping the validator the graceful way"


def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def sims(tmp_path: Path) -> Iterator[SimThread]:
    sims = SimThread(
        tmp_path,
        auto_claim=True,
        engine={"poll_interval_s": 0.5, "vm_poll_interval_s": 0.05},
    )
    try:
        yield sims
    finally:
        sims.close()


def config_file(sims: SimThread, tmp_path: Path) -> Path:
    return write_config(sims.env.config, tmp_path / "validator.toml")


def state_dir(sims: SimThread) -> Path:
    return sims.env.config.state_path


def set_evaluator(sims: SimThread, latency: float) -> None:
    sims.call(lambda: sims.env.vmm.set_evaluator(latency_s=latency))


def add_jobs(sims: SimThread, count: int) -> list[str]:
    return [job["id"] for job in sims.call(sims.env.platform.add_jobs, count)]


def results(sims: SimThread) -> dict[str, list[dict[str, Any]]]:
    return sims.call(sims.env.platform.results)


def running_job_vms(sims: SimThread) -> list[dict[str, Any]]:
    vms = sims.call(sims.env.vmm.vms)
    return [vm for vm in vms if "-job-" in vm["name"] and vm["status"] != "removing"]


def engine_up(sims: SimThread) -> bool:
    return find_socket(state_dir(sims)).exists()


def spawn_headless(config: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as sink:
        return subprocess.Popen(
            cli("run", "--headless", "--config", str(config), *args),
            stdout=sink,
            stderr=sink,
            env=os.environ | {"PYTHONUNBUFFERED": "1"},
        )


def replica_jobs(state: Path) -> dict[str, JobState]:
    """The jobs as a freshly attached console sees them."""

    async def look() -> dict[str, JobState]:
        client = SocketEngine(state, read_only=True)
        await client.connect()
        try:
            return {job.id: job.state for job in client.replica.jobs.values()}
        finally:
            await client.close()

    return asyncio.run(look())


# -- one engine per state dir -----------------------------------------------------------------


def test_a_second_engine_on_a_locked_state_dir_exits_1_at_once_touching_nothing(tmp_path):
    sims = SimThread(tmp_path / "a", auto_claim=True)
    decoy = SimThread(tmp_path / "b")
    first = None
    try:
        config = config_file(sims, tmp_path)
        first = spawn_headless(config, tmp_path / "first.log")
        until(lambda: engine_up(sims), 30, "the first engine's socket")
        elsewhere = decoy.env.config.model_copy(update={"state_dir": str(state_dir(sims))})
        decoy_config = write_config(elsewhere, tmp_path / "decoy.toml")
        state = state_dir(sims)
        for argv in (
            cli("run", "--headless", "--config", str(decoy_config)),
            cli("run", "--config", str(decoy_config)),
            cli("demo", "--headless", "--state-dir", str(state)),
        ):
            second = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            assert second.returncode == 1, second.stderr
            (line,) = second.stderr.strip().splitlines()
            assert f"state dir {state}" in line
            assert f"pid {first.pid}, mode headless" in line
            assert f"validator-tui attach --state-dir {state}" in line
        assert len(decoy.call(lambda: decoy.env.platform.requests)) == 0
        assert sum(decoy.call(lambda: dict(decoy.env.vmm.stats)).values()) == 0
        first.kill()
        first.wait(10)
        started = time.monotonic()
        third = spawn_headless(config, tmp_path / "third.log")
        until(
            lambda: engine_up(sims) and b"listening" in (tmp_path / "third.log").read_bytes(),
            30,
            "the next engine",
        )
        assert time.monotonic() - started < 10
        (job,) = add_jobs(sims, 1)
        until(lambda: job in results(sims), 30, "the next engine to claim")
        third.send_signal(signal.SIGTERM)
        assert third.wait(30) == 0
    finally:
        if first is not None and first.poll() is None:
            first.kill()
        sims.close()
        decoy.close()


# -- an SSH drop --------------------------------------------------------------------------------


@pytest.mark.parametrize("controlling", [True, False], ids=["sighup", "eio-only"])
def test_a_lost_terminal_closes_the_console_and_the_engine_finishes_its_jobs(
    sims, tmp_path, controlling
):
    set_evaluator(sims, 4.0)  # under the demo config's 5 s request timeout
    config = config_file(sims, tmp_path)
    console = PtyProcess(cli("run", "--config", str(config)), controlling=controlling)
    try:
        console.wait_for(b"Challenge CVMs", 60)
        jobs = add_jobs(sims, 6)
        until(lambda: len(running_job_vms(sims)) >= 3, 60, "jobs running")
        assert not any(job in results(sims) for job in jobs)
        console.hang_up()
        log_path = state_dir(sims) / "validator.log"
        until(lambda: KEEPS_RUNNING in log_path.read_text(), 30, "the hang-up noticed")
        assert console.process.poll() is None, "the engine must outlive its terminal"
        until(lambda: all(job in results(sims) for job in jobs), 60, "every result")
        answered = results(sims)
        for job in jobs:
            assert len(answered[job]) == 1, answered[job]
            assert answered[job][0]["error"] is None, answered[job]
        seen = replica_jobs(state_dir(sims))
        assert all(seen[job] is JobState.COMPLETED for job in jobs), seen
        fds = {os.readlink(f"/proc/{console.pid}/fd/{fd}") for fd in (0, 1, 2)}
        assert fds == {"/dev/null"}
        assert f"the terminal went away: {KEEPS_RUNNING}" in log_path.read_text()
        console.process.send_signal(signal.SIGTERM)
        assert console.process.wait(60) == 0
        assert STOPPED_BY_SIGNAL in log_path.read_text(), "alive until the signal"
        assert running_job_vms(sims) == []
    finally:
        console.close()


def test_a_demo_in_a_temporary_state_dir_stops_with_its_terminal(tmp_path):
    """Nobody can be looking at such a demo any more and it keeps nothing: it stops (exit 0,
    its simulators with it) instead of running headless for ever. With --state-dir it is
    left running like `run` (the next test)."""
    demo = PtyProcess(cli("demo", "--jobs-per-minute", "60", "--boot-seconds", "0"))
    try:
        demo.wait_for(b"Challenge CVMs", 60)
        time.sleep(2.0)
        demo.hang_up()
        assert demo.process.wait(60) == 0
    finally:
        demo.close()


def test_a_demo_with_a_state_dir_outlives_its_terminal(tmp_path):
    state = tmp_path / "demo-state"
    demo = PtyProcess(cli("demo", "--state-dir", str(state), "--boot-seconds", "0"))
    try:
        demo.wait_for(b"Challenge CVMs", 60)
        demo.hang_up()
        until(lambda: KEEPS_RUNNING in (state / "validator.log").read_text(), 30, "the hang-up")
        assert demo.process.poll() is None, "a demo with a state dir outlives its terminal"
        demo.process.send_signal(signal.SIGTERM)
        assert demo.process.wait(60) == 0
        assert STOPPED_BY_SIGNAL in (state / "validator.log").read_text(), "alive until the signal"
    finally:
        demo.close()


def test_detaching_leaves_the_engine_running_in_the_process_like_a_hangup(sims, tmp_path):
    set_evaluator(sims, 2.0)
    config = config_file(sims, tmp_path)
    detaching = [sys.executable, "-m", "tests.support.detaching_console", "--config", str(config)]
    console = PtyProcess(detaching)
    try:
        console.wait_for(b"Challenge CVMs", 60)
        jobs = add_jobs(sims, 3)
        until(lambda: len(running_job_vms(sims)) >= 1, 60, "jobs running")
        console.send(b"q")
        console.wait_for(b"detached: the validator keeps running in this process", 30)
        output = console.output()
        assert ALT_SCREEN_OFF in output[output.rindex(b"\x1b[?1049h") :]
        until(lambda: all(job in results(sims) for job in jobs), 60, "every result")
        assert all(results(sims)[job][0]["error"] is None for job in jobs)
        assert console.process.poll() is None
        fds = {os.readlink(f"/proc/{console.pid}/fd/{fd}") for fd in (0, 1, 2)}
        assert fds == {"/dev/null"}
        seen = replica_jobs(state_dir(sims))
        assert all(seen[job] is JobState.COMPLETED for job in jobs)
        console.hang_up()  # closing the terminal afterwards changes nothing
        (late,) = add_jobs(sims, 1)
        until(lambda: late in results(sims), 30, "a job after the terminal closed")
        console.process.send_signal(signal.SIGTERM)
        assert console.process.wait(60) == 0
    finally:
        console.close()


# -- SIGTERM and SIGINT in the console ----------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_a_stop_signal_stops_the_console_and_its_engine_the_graceful_way(sims, tmp_path, sig):
    set_evaluator(sims, 60.0)
    config = config_file(sims, tmp_path)
    console = PtyProcess(cli("run", "--config", str(config)))
    try:
        console.wait_for(b"Challenge CVMs", 60)
        jobs = add_jobs(sims, 10)
        until(lambda: len(running_job_vms(sims)) == 10, 60, "10 jobs running")
        console.process.send_signal(sig)
        assert console.process.wait(60) == 0
        answered = results(sims)
        assert {job: len(answered.get(job, [])) for job in jobs} == dict.fromkeys(jobs, 1)
        assert {answered[job][0]["error"] for job in jobs} == {"validator shutting down"}
        assert running_job_vms(sims) == []
        until(lambda: ALT_SCREEN_OFF in console.output(), 5, "the terminal restored")
        output = console.output()
        tail = output[output.rindex(ALT_SCREEN_OFF) :]
        assert CURSOR_ON in tail
        assert b"never awaited" not in output and b"Traceback" not in output
    finally:
        console.close()


# -- attached consoles --------------------------------------------------------------------------


def test_attached_consoles_come_and_go_and_the_engine_runs_on(sims, tmp_path):
    set_evaluator(sims, 0.2)
    config = config_file(sims, tmp_path)
    log = tmp_path / "engine.log"
    engine = spawn_headless(config, log)
    consoles: list[PtyProcess] = []
    try:
        until(lambda: engine_up(sims), 30, "the engine's socket")
        operator = PtyProcess(cli("attach", "--config", str(config)))
        viewer = PtyProcess(cli("attach", "--state-dir", str(state_dir(sims)), "--read-only"))
        consoles += [operator, viewer]
        operator.wait_for(b"Challenge CVMs", 60)
        viewer.wait_for(b"READ-ONLY", 60)
        jobs = add_jobs(sims, 4)
        until(lambda: all(job in results(sims) for job in jobs), 30, "4 results")
        for console in (operator, viewer):
            console.wait_for(jobs[0][:8].encode(), 30)
        operator.process.send_signal(signal.SIGKILL)
        operator.process.wait(10)
        assert engine.poll() is None
        more = add_jobs(sims, 4)
        until(lambda: all(job in results(sims) for job in more), 30, "4 more results")
        until(lambda: b"disconnected" in log.read_bytes(), 10, "the engine to notice")
        viewer.send(b"q")
        assert viewer.process.wait(30) == 0
        assert ALT_SCREEN_OFF in viewer.output()
        assert engine.poll() is None, "q in an attached console never stops the engine"
        engine.send_signal(signal.SIGTERM)
        assert engine.wait(30) == 0
    finally:
        for console in consoles:
            console.close()
        if engine.poll() is None:
            engine.kill()


def test_attach_without_an_engine_says_so_and_how_to_start_one(tmp_path):
    done = subprocess.run(
        cli("attach", "--state-dir", str(tmp_path / "nothing")),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert f"no validator engine is running on state dir {tmp_path / 'nothing'}" in done.stderr
    assert "validator-tui run" in done.stderr


def test_an_attached_console_sees_a_killed_engine_go_and_its_successor_come(sims, tmp_path):
    config = config_file(sims, tmp_path)
    log = tmp_path / "engine.log"
    engine = spawn_headless(config, log)

    async def follow() -> list[str]:
        until(lambda: engine_up(sims), 30, "the engine's socket")
        client = SocketEngine(state_dir(sims), reconnect_cap=0.3)
        await client.connect()
        seen = [client.link.status.value]
        first = client.info.pid
        engine.kill()
        engine.wait(10)
        for _ in range(100):
            await asyncio.sleep(0.05)
            if client.link.status.value != seen[-1]:
                seen.append(client.link.status.value)
            if seen[-1] == "gone":
                break
        successor = spawn_headless(config, log)
        try:
            for _ in range(600):
                await asyncio.sleep(0.05)
                if client.link.status.value == "connected" and client.info.pid != first:
                    break
            seen.append(client.link.status.value)
            assert client.info.pid == successor.pid
            (job,) = add_jobs(sims, 1)
            for _ in range(300):
                await asyncio.sleep(0.05)
                if job in client.replica.jobs:
                    break
            assert job in client.replica.jobs
            await client.close()
        finally:
            successor.send_signal(signal.SIGTERM)
            assert successor.wait(30) == 0
        return seen

    try:
        assert asyncio.run(follow()) == ["connected", "reconnecting", "gone", "connected"]
    finally:
        if engine.poll() is None:
            engine.kill()


def test_stopping_from_an_attached_console_closes_the_embedded_one_cleanly(sims, tmp_path):
    config = config_file(sims, tmp_path)
    console = PtyProcess(cli("run", "--config", str(config)))
    try:
        console.wait_for(b"Challenge CVMs", 60)

        async def stop() -> str:
            client = SocketEngine(state_dir(sims), client="remote")
            await client.connect()
            try:
                outcome = await client.stop_validator()
                assert outcome.ok, outcome.message
                return client.origin
            finally:
                await client.close()

        origin = asyncio.run(stop())
        assert console.process.wait(60) == 0
        output = console.output()
        assert ALT_SCREEN_OFF in output[output.rindex(b"\x1b[?1049h") :]
        assert b"Traceback" not in output and b"EngineStopped" not in output
        log = (state_dir(sims) / "validator.log").read_text()
        assert f"{origin}: stop the validator -> done" in log
    finally:
        console.close()
