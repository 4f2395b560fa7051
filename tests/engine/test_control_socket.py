"""The control socket end to end: a real engine (against the simulators) serving consoles over
a real Unix socket; the console side is the `SocketEngine` the attached console uses."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import tempfile
from collections import Counter
from pathlib import Path

from tests.support.control import hosted
from tests.support.engine import FAST, wait_for
from validator_tui.control.client import SocketEngine
from validator_tui.control.interface import LinkStatus
from validator_tui.demo import DemoEnvironment
from validator_tui.shared.records import JobRecord, JobState


def env_for(tmp_path: Path, **overrides) -> DemoEnvironment:
    options = {
        "seed": 31,
        "jobs_per_minute": 0,
        "boot_seconds": 0,
        "auto_claim": False,
        "engine": FAST,
        "state_dir": str(tmp_path / "state"),
    }
    return DemoEnvironment(**(options | overrides))


async def attached(host, **options) -> SocketEngine:
    client = SocketEngine(Path(host.info.state_dir), **options)
    await client.connect()
    return client


async def test_a_console_gets_the_snapshot_then_follows_the_feed(tmp_path):
    async with env_for(tmp_path, auto_claim=True, evaluator_latency_s=0.2) as env:
        env.platform.add_jobs(5)
        async with hosted(env.config) as host:
            state = host.validator.state
            client = await attached(host)
            try:
                assert client.info.pid == os.getpid()
                assert client.info.state_dir == host.info.state_dir
                assert client.link.status is LinkStatus.CONNECTED
                env.platform.add_jobs(10)
                await wait_for(lambda: state.header.counters.completed == 15, 20, "15 done")

                def same() -> bool:
                    mine = {j.id: j.state for j in client.replica.jobs.values()}
                    return mine == {j.id: j.state for j in state.jobs.values()}

                await wait_for(same, 5, "the replica to match the engine")
                seen = await client.changes_since(0, 0)
                assert seen.full and seen.header.counters.completed == 15
                assert {c.id for c in seen.challenges} == set(state.challenges)
                assert any("challenge CVM active" in e.message for e in seen.events)
            finally:
                await client.close()


async def test_commands_through_the_socket_are_done_and_logged_with_their_console(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="validator_tui.operator")
    async with env_for(tmp_path, evaluator_latency_s=30) as env:
        jobs = env.platform.add_jobs(3)
        async with hosted(env.config) as host:
            state = host.validator.state
            await wait_for(lambda: len(state.jobs) == 3, 10, "3 pending jobs")
            client = await attached(host)
            try:
                first, second, third = (job["id"] for job in jobs)
                claimed = await client.claim(first)
                assert claimed.ok, claimed.message
                assert env.platform.job(first)["claimed_by"] == env.config.validator_hotkey
                await wait_for(lambda: state.jobs[first].state is JobState.RUNNING, 10, "running")
                cancelled = await client.cancel(first)
                assert cancelled.ok, cancelled.message
                await wait_for(lambda: first in env.platform.results(), 10, "cancel result")
                assert env.platform.results()[first][0]["error"] == "cancelled by operator"
                challenge = next(iter(state.challenges))
                old_vm = state.challenges[challenge].vm_id
                rebuilt = await client.rebuild(challenge)
                assert rebuilt.ok, rebuilt.message
                await wait_for(
                    lambda: state.challenges[challenge].vm_id not in (None, old_vm), 15, "rebuilt"
                )
                refused = await client.claim("no-such-job")
                assert not refused.ok
                auto = await client.set_auto_claim(True)
                assert auto.ok and state.header.auto_claim
                hotkey = env.config.validator_hotkey
                await wait_for(
                    lambda: all(
                        env.platform.job(j)["claimed_by"] == hotkey for j in (second, third)
                    ),
                    10,
                    "auto-claimed",
                )
            finally:
                await client.close()
            origin = client.origin
            assert origin.startswith("attach #1 (pid ")
            lines = [e.message for e in state.events if e.kind == "operator"]
            assert f"{origin}: claim job {first} -> done: claimed job {first}" in lines
            assert any(line.startswith(f"{origin}: cancel job {first} -> done") for line in lines)
            assert any(line.startswith(f"{origin}: rebuild the CVM") for line in lines)
            assert any(
                line.startswith(f"{origin}: claim job no-such-job -> refused") for line in lines
            )
            logged = [r.getMessage() for r in caplog.records if r.name == "validator_tui.operator"]
            assert f"{origin}: claim job {first} -> done: claimed job {first}" in logged


async def test_a_read_only_console_is_refused_by_the_engine_itself(tmp_path):
    async with env_for(tmp_path) as env:
        (job,) = env.platform.add_jobs(1)
        async with hosted(env.config) as host:
            await wait_for(lambda: job["id"] in host.validator.state.jobs, 10, "the job")
            viewer = await attached(host, read_only=True)
            try:
                assert viewer.read_only and "read-only" in viewer.origin
                for outcome in (
                    await viewer.claim(job["id"]),
                    await viewer.set_auto_claim(True),
                    await viewer.stop_validator(),
                ):
                    assert not outcome.ok
                    assert "read-only console" in outcome.message
                assert env.platform.job(job["id"])["claimed_by"] is None
                assert not host.validator.state.header.auto_claim
                await asyncio.sleep(0.3)
                assert host.validator.state.jobs[job["id"]].state is JobState.PENDING
                again = await attached(host)  # the engine did not stop
                assert again.link.status is LinkStatus.CONNECTED
                await again.close()
            finally:
                await viewer.close()


async def test_two_consoles_see_the_same_state_and_their_commands_are_serialised(tmp_path):
    async with env_for(tmp_path, evaluator_latency_s=0.5) as env:
        jobs = [job["id"] for job in env.platform.add_jobs(8)]
        async with hosted(env.config) as host:
            state = host.validator.state
            await wait_for(lambda: len(state.jobs) == 8, 10, "8 pending jobs")
            one, two = await attached(host), await attached(host, client="second")
            try:
                outcomes = await asyncio.gather(
                    *(one.claim(job) for job in jobs[:4]), *(two.claim(job) for job in jobs[4:])
                )
                assert all(outcome.ok for outcome in outcomes), outcomes
                await wait_for(lambda: state.header.counters.completed == 8, 20, "8 done")

                def agree() -> bool:
                    views = [{j.id: j.state for j in c.replica.jobs.values()} for c in (one, two)]
                    return views[0] == views[1] == {j.id: j.state for j in state.jobs.values()}

                await wait_for(agree, 5, "both consoles to agree with the engine")
                origins = Counter(
                    e.message.split(":")[0] for e in state.events if e.kind == "operator"
                )
                assert origins == {one.origin: 4, two.origin: 4}
                assert two.origin.startswith("second #2")
            finally:
                await one.close()
                await two.close()


async def test_vm_logs_stream_over_the_socket(tmp_path):
    async with env_for(tmp_path) as env, hosted(env.config) as host:
        client = await attached(host)
        try:
            vm_id = next(iter(host.validator.state.challenges.values())).vm_id
            lines = [line async for line in client.vm_logs(vm_id, lines=5, follow=False)]
            assert len(lines) == 5 and all(isinstance(line, str) for line in lines)
            missing = client.vm_logs("no-such-vm", lines=5, follow=False)
            try:
                got = [line async for line in missing]
            except RuntimeError as exc:
                assert "no-such-vm" in str(exc) or "not found" in str(exc).lower()
            else:
                assert got == []
        finally:
            await client.close()


async def test_socket_is_0600_in_a_0700_state_dir_and_removed_at_stop(tmp_path):
    async with env_for(tmp_path) as env:
        async with hosted(env.config) as host:
            path = host.server.path
            assert path == Path(host.info.state_dir) / "control.sock"
            mode = os.stat(path).st_mode
            assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
            assert stat.S_IMODE(os.stat(host.info.state_dir).st_mode) == 0o700
        assert not path.exists()


async def test_a_long_state_dir_gets_its_socket_in_the_runtime_dir_with_a_link(
    tmp_path, monkeypatch
):
    runtime = Path(tempfile.mkdtemp(prefix="vt-", dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    deep = tmp_path / ("a-rather-long-directory-name-" * 3) / "state"
    async with env_for(tmp_path, state_dir=str(deep)) as env:
        async with hosted(env.config) as host:
            path = host.server.path
            assert path.parent == runtime / "validator-tui"
            assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
            link = deep / "control.sock"
            assert link.is_symlink() and Path(os.readlink(link)) == path
            client = await attached(host)
            assert client.link.status is LinkStatus.CONNECTED
            await client.close()
        assert not path.exists() and not link.is_symlink()
    os.rmdir(runtime / "validator-tui")
    os.rmdir(runtime)


async def test_the_console_follows_the_engine_away_and_back(tmp_path):
    async with env_for(tmp_path) as env:
        async with hosted(env.config) as host:
            client = SocketEngine(Path(host.info.state_dir), reconnect_cap=0.3)
            await client.connect()
            first = client.info
            done = await client.stop_validator()
            assert done.ok and "stopping" in done.message
            await wait_for(lambda: client.link.status is LinkStatus.GONE, 30, "engine gone")
        assert "stopped" in client.link.detail
        refused = await client.claim("anything")
        assert not refused.ok and "not connected" in refused.message
        (job,) = env.platform.add_jobs(1)
        async with hosted(env.config) as second:
            await wait_for(lambda: client.link.status is LinkStatus.CONNECTED, 10, "reattached")
            assert client.info.started_at == second.info.started_at != first.started_at
            await wait_for(lambda: job["id"] in client.replica.jobs, 10, "the new engine's job")
            notes = [e.message for e in (await client.changes_since(0, 0)).events]
            assert any(note.startswith("connection to the engine closed") for note in notes)
            assert sum(note.startswith("attached to the engine") for note in notes) == 2
            await client.close()


async def test_the_snapshot_carries_what_a_console_shows_and_older_jobs_on_request(tmp_path):
    async with env_for(tmp_path) as env:
        pending = [job["id"] for job in env.platform.add_jobs(3)]
        async with hosted(env.config) as host:
            state = host.validator.state
            await wait_for(lambda: set(pending) <= set(state.jobs), 10, "3 pending jobs")
            for number in range(800):
                finished = JobRecord(f"old-{number:04d}", "c", state=JobState.COMPLETED)
                finished.finished_at = 1_000_000.0 + number
                state.put_job(finished)
            for number in range(700):
                state.event("info", "test", f"event {number}")
            client = await attached(host)
            try:
                held = set(client.replica.jobs)
                assert set(pending) <= held
                assert {f"old-{n:04d}" for n in range(300, 800)} <= held
                assert len(held) == 3 + 500
                sent = [e.message for e in (await client.changes_since(0, 0)).events]
                from_engine = [m for m in sent if not m.startswith("attached to the engine")]
                assert len(from_engine) == 100  # the latest 100: "event 601" … "connected"
                assert from_engine[-2:] == ["event 699", f"{client.origin} connected"]
                oldest = await client.job("old-0000")
                assert oldest is not None and oldest.state is JobState.COMPLETED
                assert await client.job("never-heard-of") is None
            finally:
                await client.close()
