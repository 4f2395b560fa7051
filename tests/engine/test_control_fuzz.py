"""Bad consoles cost the engine nothing: garbage, truncated, oversized and wrong-version frames,
a console that never reads, and hundreds of connect/disconnect cycles, against a real engine
that keeps claiming throughout."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

from tests.support.control import Raw, hosted, open_fds, sleeper, unix_socket_fds
from tests.support.engine import FAST, wait_for
from validator_tui.control import frames
from validator_tui.demo import DemoEnvironment
from validator_tui.shared.records import JobRecord, JobState


def env_for(tmp_path: Path, **overrides) -> DemoEnvironment:
    options = {
        "seed": 41,
        "jobs_per_minute": 0,
        "boot_seconds": 0,
        "engine": FAST,
        "state_dir": str(tmp_path / "state"),
    }
    return DemoEnvironment(**(options | overrides))


def corpus(seed: int = 5, count: int = 300) -> list[bytes]:
    """Hand-picked bad frames, then random ones: bytes, truncated JSON, wrong shapes."""
    rng = random.Random(seed)
    valid = frames.encode(frames.CommandFrame(id=9, command=frames.Claim(job_id="j"))).rstrip(b"\n")
    lines = [
        b"nonsense",
        b"{",
        b"[]",
        b"null",
        b'"hello"',
        b"\xff\xfe\x00garbage",
        b'{"type":"command"}',
        b'{"type":"command","id":-1,"command":{"command":"claim","job_id":"j"}}',
        b'{"type":"command","id":1,"command":{"command":"nuke"}}',
        b'{"type":"logs_open","id":1,"vm_id":"v","lines":999999}',
        b'{"type":"hello","protocol":1}',
        b'{"type":"state","snapshot":true,"final":true,"version":1}',
        valid[: len(valid) // 2],
    ]
    while len(lines) < count:
        kind = rng.randrange(3)
        if kind == 0:
            lines.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))))
        elif kind == 1:
            lines.append(valid[: rng.randrange(1, len(valid))])
        else:
            shape = {"type": rng.choice(["command", "logs_open", "x", 3]), "id": rng.random()}
            lines.append(json.dumps(shape).encode())
    return [line.replace(b"\n", b" ") for line in lines]


async def test_garbage_and_truncated_frames_get_error_frames_and_the_connection_lives_on(
    tmp_path,
):
    async with env_for(tmp_path) as env, hosted(env.config) as host:
        raw = await Raw.open(host)
        try:
            await raw.hello()
            for line in corpus(count=20):
                await raw.send(line)
                error = await raw.until(frames.ErrorFrame)
                assert error.code in {"malformed", "protocol"} and not error.fatal
            command = frames.CommandFrame(id=77, command=frames.SetAutoClaim(enabled=False))
            await raw.send(frames.encode(command))
            answer = await raw.until(frames.OutcomeFrame)
            assert answer.id == 77 and answer.outcome.ok
        finally:
            raw.close()


async def test_a_stream_of_bad_frames_closes_the_connection_not_the_engine(tmp_path):
    async with env_for(tmp_path, auto_claim=True) as env, hosted(env.config) as host:
        raw = await Raw.open(host)
        await raw.hello()
        for line in corpus():
            raw.writer.write(line + b"\n")
        await raw.writer.drain()
        assert await raw.ended(), "the engine should give up on this console"
        raw.close()
        jobs = env.platform.add_jobs(3)
        await wait_for(
            lambda: all(job["id"] in env.platform.results() for job in jobs), 15, "claims go on"
        )
        messages = [e.message for e in host.validator.state.events if e.kind == "control"]
        assert any("disconnected" in m for m in messages)


async def test_wrong_version_and_missing_hello_are_clear_fatal_errors(tmp_path):
    async with env_for(tmp_path) as env, hosted(env.config) as host:
        raw = await Raw.open(host)
        await raw.send(b'{"type":"hello","protocol":99}')
        error = await raw.frame()
        assert isinstance(error, frames.ErrorFrame) and error.fatal and error.code == "version"
        assert f"protocol {frames.PROTOCOL_VERSION}, the console 99" in error.message
        assert "same validator-tui version" in error.message
        assert await raw.ended()
        raw.close()
        raw = await Raw.open(host)
        await raw.send(frames.encode(frames.CommandFrame(id=1, command=frames.StopValidator())))
        error = await raw.frame()
        assert isinstance(error, frames.ErrorFrame) and error.code == "protocol" and error.fatal
        assert await raw.ended()
        raw.close()
        assert not host.validator._stop.is_set(), "the engine must not have stopped"


async def test_an_oversized_frame_is_refused_and_the_connection_closed(tmp_path):
    async with env_for(tmp_path) as env, hosted(env.config) as host:
        raw = await Raw.open(host)
        await raw.hello()
        oversized = b'{"type":"logs_close","id":1,"pad":"' + b"x" * (2 << 20) + b'"}\n'
        raw.writer.write(oversized)
        error = await raw.until(frames.ErrorFrame)
        assert error.code == "too_large" and error.fatal
        assert await raw.ended()
        raw.close()
        again = await Raw.open(host)
        await again.hello()
        again.close()


async def test_a_console_that_never_reads_is_cut_off_and_claims_go_on(tmp_path):
    async with env_for(tmp_path, auto_claim=False) as env:
        async with hosted(env.config, queue_bytes=64 * 1024, stall=2.0) as host:
            state = host.validator.state
            for number in range(500):  # a snapshot (~1 MB) larger than the socket buffers
                logs = ["x" * 200] * 20
                state.put_job(JobRecord(f"old-{number}", "c", state=JobState.COMPLETED, logs=logs))
            jobs = env.platform.add_jobs(1)
            quiet = await sleeper(host)
            await wait_for(lambda: host.server.session_count == 1, 10, "the sleeper connected")
            await wait_for(lambda: host.server.session_count == 0, 30, "the sleeper cut off")
            cut = [e.message for e in state.events if "cut off" in e.message]
            assert len(cut) == 1 and cut[0].startswith("console #1 (pid ")
            assert "did not take its snapshot within 2s" in cut[0]
            claimed = await host.validator.commands.claim(jobs[0]["id"])
            assert claimed.ok, claimed.message
            await wait_for(lambda: jobs[0]["id"] in env.platform.results(), 15, "its result")
            quiet.close()


async def test_a_console_that_stops_reading_the_feed_is_cut_off_at_its_queue_limit(tmp_path):
    async with env_for(tmp_path, auto_claim=True) as env:
        async with hosted(env.config, queue_bytes=64 * 1024) as host:
            state = host.validator.state
            quiet = await sleeper(host, read_snapshot=True)
            env.platform.set_job_rate(1200)
            await wait_for(lambda: host.server.session_count == 0, 60, "the reader cut off")
            cut = [e.message for e in state.events if "cut off" in e.message]
            assert len(cut) == 1 and "it stopped reading (65536 bytes queued)" in cut[0]
            before = state.header.counters.completed
            await wait_for(lambda: state.header.counters.completed > before + 5, 20, "claims")
            env.platform.set_job_rate(0)
            quiet.close()


async def test_200_connect_disconnect_cycles_leave_descriptors_and_tasks_as_they_were(tmp_path):
    async with env_for(tmp_path, auto_claim=True) as env, hosted(env.config) as host:
        for _ in range(3):  # warm up: first-connection allocations are not leaks
            raw = await Raw.open(host)
            await raw.hello()
            raw.close()
        await wait_for(lambda: host.server.session_count == 0, 10, "warm-up sessions gone")
        await asyncio.sleep(0.2)
        fds, sockets = open_fds(), unix_socket_fds()
        tasks = len(asyncio.all_tasks())
        for cycle in range(200):
            raw = await Raw.open(host)
            if cycle % 4 == 0:
                raw.close()  # gone before saying hello
                continue
            await raw.hello(read_only=cycle % 3 == 0)
            if cycle % 4 == 2:
                await raw.until(frames.StateFrame)
                await raw.send(b"garbage")
            if cycle % 4 == 3:
                raw.writer.write_eof()
            raw.close()
        await wait_for(lambda: host.server.session_count == 0, 20, "every session gone")
        await wait_for(lambda: unix_socket_fds() == sockets, 10, "unix sockets back")
        await wait_for(lambda: len(asyncio.all_tasks()) == tasks, 10, "tasks back")
        assert len(open_fds() ^ fds) <= 4, "only the HTTP pools may have moved"
        jobs = env.platform.add_jobs(3)
        await wait_for(
            lambda: all(job["id"] in env.platform.results() for job in jobs), 15, "claims go on"
        )
