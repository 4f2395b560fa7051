"""Hostile text from every untrusted source (evaluator logs, miner hotkeys, challenge names,
WebSocket frames, server error bodies) never reaches the headless log output, the engine's
event log or a result uninterpreted, and stays bounded."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.support.engine import FAST, job_vms, running, wait_for
from tests.support.hostile import HOSTILE, MEGABYTE, captured_logs, check_log_output, inert
from tests.support.identities import ALICE
from validator_tui.clients.errors import ApiError, VmmError
from validator_tui.clients.platform import PlatformClient
from validator_tui.clients.vmm import MAX_LOG_LINE_BYTES, VmmClient
from validator_tui.demo import DemoEnvironment
from validator_tui.engine.validator import Validator
from validator_tui.sanitize import clean_line, clean_lines
from validator_tui.sim.server import start_server


def check_engine_state(validator: Validator) -> None:
    for event in validator.state.events:
        assert inert(event.message, 500), event
    for job in validator.state.jobs.values():
        assert inert(job.miner_hotkey, 100) and inert(job.submission_id, 200)
        assert inert(job.error or "")
        assert len(job.logs) <= 400
        assert all(inert(line, 1100) for line in job.logs)
        assert all(inert(entry.text, 2000) for entry in job.timeline)
    for challenge in validator.state.challenges.values():
        assert inert(challenge.reason)


async def test_hostile_evaluator_miner_and_platform_text_is_inert():
    async with DemoEnvironment(seed=41, jobs_per_minute=0, boot_seconds=0, engine=FAST) as env:
        with captured_logs() as (text, jsonl):
            async with running(env.config) as validator:
                ansi = env.platform.add_job(code="#sim:ansi #sim:logs=300", miner_hotkey=HOSTILE)
                failing = env.platform.add_job(code="#sim:status=500", miner_hotkey=MEGABYTE)
                env.platform.inject_fault(
                    status=503, count=2, path_prefix="/jobs/pending", body=HOSTILE + MEGABYTE
                )
                env.platform.inject_fault(
                    status=503, path_prefix="/jobs/", method="POST", body="[" * 100_000
                )
                env.platform.send_raw_ws(json.dumps({"type": HOSTILE, "job_id": HOSTILE}))
                env.platform.send_raw_ws(HOSTILE)
                env.platform.send_raw_ws('{"type": "new_job", "job_id": ' + "[" * 50_000)
                await wait_for(
                    lambda: {ansi["id"], failing["id"]} <= set(env.platform.results()),
                    15,
                    "both results",
                )
                await wait_for(lambda: not job_vms(env), 5, "job VMs removed")
                result = env.platform.results()[ansi["id"]]
                assert len(result) == 1 and result[0]["error"] is None
                logs = result[0]["logs"]
                assert any("test 300/300 ok" in line for line in logs)
                assert len(logs) <= 400 and all(inert(line, 1100) for line in logs)
                assert not any("pwned" in line or "cm0gLXJmIH4" in line for line in logs)
                assert len(env.platform.results()[failing["id"]]) == 1
                assert (
                    "[link=https://evil.example]" in validator.state.jobs[ansi["id"]].miner_hotkey
                )
                check_engine_state(validator)
                assert validator.state.header.platform.status == "connected"
        check_log_output(text, jsonl)


async def test_hostile_challenge_name_is_inert():
    async with DemoEnvironment(seed=42, jobs_per_minute=0, boot_seconds=0, engine=FAST) as env:
        with captured_logs() as (text, jsonl):
            async with running(env.config) as validator:
                hostile = env.platform.add_challenge(name=HOSTILE)
                await validator.jobs.check_challenge_updates()
                await wait_for(lambda: hostile["id"] in validator.state.challenges, 5)
                record = validator.state.challenges[hostile["id"]]
                await wait_for(lambda: record.state.value == "failed", 5, "challenge failed")
                assert "not a usable URL" in record.reason
                check_engine_state(validator)
        check_log_output(text, jsonl)


@pytest.fixture
async def hostile_server():
    """Answers every request with an error status and hostile raw bytes (invalid UTF-8)."""
    body = (HOSTILE.encode() + b"\xff\xfe\xc3\x28\xed\xa0\x80" + b"B" * (1 << 20)) * 2

    async def answer(request):
        status = 400 if request.url.path.startswith("/prpc/") else 503
        return Response(body, status_code=status, media_type="application/json")

    routes = [Route("/{path:path}", answer, methods=["GET", "POST"])]
    server = await start_server(Starlette(routes=routes), "127.0.0.1", 0)
    yield server.url
    await server.stop()


async def test_error_bodies_with_raw_bytes_become_short_safe_messages(hostile_server):
    async with PlatformClient(hostile_server, ALICE, timeout=5.0) as platform:
        with pytest.raises(ApiError) as raised:
            await platform.claim_job("job-1")
    assert inert(str(raised.value), 700) and raised.value.status == 503
    async with VmmClient(hostile_server, "secret-token") as vmm:
        with pytest.raises(VmmError) as vmm_raised:
            await vmm.remove_vm("vm-1")
    assert inert(str(vmm_raised.value), 700)


@settings(max_examples=300, deadline=None)
@given(
    data=st.text() | st.binary(),
    limit=st.integers(min_value=1, max_value=300),
)
def test_clean_line_output_is_always_inert_and_bounded(data, limit):
    assert inert(clean_line(data, limit), limit)


@settings(max_examples=100, deadline=None)
@given(lines=st.lists(st.text(max_size=50), max_size=50), keep=st.integers(1, 20))
def test_clean_lines_keeps_a_bounded_tail(lines, keep):
    cleaned = clean_lines(lines, keep, 80)
    assert len(cleaned) <= keep + 1
    assert all(inert(line, 80) for line in cleaned)


def test_clean_line_strips_every_hostile_sequence():
    cleaned = clean_line(HOSTILE + "tail")
    assert inert(cleaned)
    assert "evil" not in cleaned.replace("[link=https://evil.example]", "")
    assert cleaned.endswith("tail")


async def test_vm_log_stream_with_an_endless_line_stays_bounded():
    async def body():
        yield b"first\n"
        for _ in range(80):  # 5 MB without a newline
            yield b"A" * 65536
        yield b"\x1b]52;c;cm0gLXJmIH4=\x07tail of the long line\n" + HOSTILE.encode() + b"\n"
        yield b"last\xff\n"

    async def logs(request):
        return StreamingResponse(body(), media_type="text/plain")

    server = await start_server(Starlette(routes=[Route("/logs", logs)]))
    try:
        async with VmmClient(server.url) as vmm:
            lines = [line async for line in vmm.logs("vm-1", follow=True)]
    finally:
        await server.stop()
    assert lines[0] == "first" and lines[-1] == "last\ufffd"
    assert len(lines[1]) == MAX_LOG_LINE_BYTES and "tail of the long line" not in "".join(lines)
    assert max(len(line) for line in lines) == MAX_LOG_LINE_BYTES and len(lines) == 5
    assert all(inert(clean_line(line)) for line in lines)
    assert "pwned" not in clean_line(lines[2])
