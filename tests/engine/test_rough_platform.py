"""A platform as rough as production: malformed list entries, refused and oversized WebSocket
connections, floods of frames. The simulator is driven over its `/_sim/` control API on
loopback; the real PlatformClient and engine face it."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.support.engine import FAST, running, wait_for
from tests.support.identities import ALICE
from validator_tui.clients.platform import PlatformClient
from validator_tui.demo import DemoEnvironment
from validator_tui.models.platform import WsMessage
from validator_tui.shared.records import ChallengeState, JobState
from validator_tui.sim.platform import PlatformSimulator

SKIPPED = "skipped"


@pytest_asyncio.fixture
async def control(platform_sim: PlatformSimulator) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the simulator's `/_sim/` control API."""
    async with httpx.AsyncClient(base_url=platform_sim.url, timeout=5) as client:
        yield client


async def post(control: httpx.AsyncClient, path: str, body: dict[str, Any]) -> None:
    response = await control.post(path, json=body)
    assert response.status_code == 200, response.text


def lines(caplog: pytest.LogCaptureFixture, needle: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if needle in r.getMessage()]


# -- lists ---------------------------------------------------------------------------------------


async def test_a_malformed_pending_entry_is_skipped_and_logged_once(
    platform_sim: PlatformSimulator,
    platform_client: PlatformClient,
    control: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    jobs = platform_sim.add_jobs(3)
    bad = jobs[1]["id"]
    await post(
        control,
        "/_sim/entries/override",
        {"list": "jobs", "id": bad, "fields": {"created_at": "yesterday"}},
    )
    await post(control, "/_sim/entries/raw", {"list": "jobs", "entry": "not an object"})
    hostile = {"id": "evil\x1b[31m", "challenge_id": "c", "miner_hotkey": ["\x1b]0;x\x07"]}
    await post(control, "/_sim/entries/raw", {"list": "jobs", "entry": hostile})
    with caplog.at_level(logging.WARNING, logger="validator_tui.platform"):
        for _ in range(3):
            listing = await platform_client.get_pending_jobs()
            assert [job.id for job in listing] == [jobs[0]["id"], jobs[2]["id"]]
            assert listing.skipped_ids == {bad, "evil\x1b[31m"}
    logged = lines(caplog, SKIPPED)
    assert len(logged) == 3, logged
    assert f"pending job entry 1 (id '{bad}'): created_at = 'yesterday'" in logged[0]
    assert "GET /jobs/pending" in logged[0]
    assert "entry 3: <entry> = 'not an object'" in logged[1]
    assert "miner_hotkey = [" in logged[2]
    assert not any("\x1b" in line or "\x07" in line for line in logged)
    assert platform_client.entries_skipped == 9


async def test_a_malformed_challenge_entry_is_skipped_and_logged_once(
    platform_sim: PlatformSimulator,
    platform_client: PlatformClient,
    control: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, *rest = platform_sim.challenges()
    await post(
        control,
        "/_sim/entries/override",
        {"list": "challenges", "id": first["id"], "fields": {"emission_share": "a lot"}},
    )
    await post(control, "/_sim/entries/raw", {"list": "challenges", "entry": {"id": ""}})
    with caplog.at_level(logging.WARNING, logger="validator_tui.platform"):
        for _ in range(2):
            listing = await platform_client.get_challenges()
            assert [c.id for c in listing] == [c["id"] for c in rest]
            assert listing.skipped_ids == {first["id"]}
    logged = lines(caplog, SKIPPED)
    assert len(logged) == 2, logged
    assert "emission_share = 'a lot'" in logged[0] and first["id"] in logged[0]
    assert "challenge entry 3: id = ''" in logged[1]
    async with httpx.AsyncClient(base_url=platform_sim.url) as raw:
        assert (await raw.delete("/_sim/entries")).status_code == 200
    assert len(await platform_client.get_challenges()) == 3


async def test_a_bad_pending_entry_does_not_block_the_poll(tmp_path) -> None:
    """No WebSocket (every handshake refused): only the poll can find the jobs."""
    async with DemoEnvironment(
        seed=5, jobs_per_minute=0, boot_seconds=0, engine=FAST, state_dir=str(tmp_path)
    ) as env:
        env.platform.refuse_websockets(1_000_000)
        async with running(env.config) as validator:
            good = env.platform.add_jobs(2)
            bad = env.platform.add_job()
            env.platform.override_entry("jobs", bad["id"], {"created_at": "yesterday"})
            env.platform.add_raw_entry("jobs", {"id": 7})
            done = {job["id"] for job in good}
            await wait_for(lambda: done <= set(env.platform.results()), 15, "both results")
            assert bad["id"] not in env.platform.results()
            assert env.platform.job(bad["id"])["status"] == "pending"
            messages = [event.message for event in validator.state.events]
            assert not any("poll failed" in message for message in messages)
            assert env.platform.stats["ws_refused"] > 0


async def test_a_job_whose_entry_turns_unreadable_stays_listed(tmp_path) -> None:
    async with DemoEnvironment(
        seed=6, jobs_per_minute=0, boot_seconds=0, engine=FAST, state_dir=str(tmp_path),
        auto_claim=False,
    ) as env:  # fmt: skip
        async with running(env.config) as validator:
            job = env.platform.add_job()
            await validator.jobs.fetch_pending_jobs()
            assert validator.state.jobs[job["id"]].state is JobState.PENDING
            env.platform.override_entry("jobs", job["id"], {"challenge_id": None})
            listing = await validator.jobs.fetch_pending_jobs()
            assert job["id"] in listing.skipped_ids
            assert validator.state.jobs[job["id"]].state is JobState.PENDING


async def test_a_challenge_whose_entry_is_unreadable_is_not_drained(tmp_path) -> None:
    async with DemoEnvironment(
        seed=7, jobs_per_minute=0, boot_seconds=0, engine=FAST, state_dir=str(tmp_path)
    ) as env:
        async with running(env.config) as validator:
            first = env.platform.challenges()[0]["id"]
            added = env.platform.add_challenge()["id"]
            env.platform.override_entry("challenges", first, {"compose_hash": 42})
            await validator.jobs.check_challenge_updates()

            def added_is_active() -> bool:
                record = validator.state.challenges.get(added)
                return record is not None and record.state is ChallengeState.ACTIVE

            await wait_for(added_is_active, 15, "the added challenge's CVM")
            assert validator.state.challenges[first].state is ChallengeState.ACTIVE
            assert validator.challenges.is_active(first)


# -- WebSocket -----------------------------------------------------------------------------------


def ws_client(sim: PlatformSimulator) -> PlatformClient:
    return PlatformClient(sim.url, ALICE, timeout=2, ws_backoff_cap=0.05)


async def listen(client: PlatformClient, received: list[WsMessage]) -> asyncio.Task[None]:
    return asyncio.create_task(client.connect_websocket(received.append))


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_refused_handshake_is_logged_once_with_its_cause(
    platform_sim: PlatformSimulator, control: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    await post(control, "/_sim/ws/refuse", {"count": 5})
    received: list[WsMessage] = []
    async with ws_client(platform_sim) as client:
        with caplog.at_level(logging.INFO, logger="validator_tui.platform"):
            task = await listen(client, received)
            # The server counts the connection before the client has read its answer: wait for
            # the client's own line.
            await wait_for(lambda: lines(caplog, "WebSocket connected"), 10, "the client connected")
            await stop(task)
    refused = lines(caplog, "WebSocket cannot connect")
    assert len(refused) == 1, refused
    assert "403" in refused[0]
    assert len(lines(caplog, "WebSocket connected")) == 1
    assert platform_sim.stats["ws_refused"] == 5


async def test_an_oversized_frame_closes_the_connection_and_is_logged(
    platform_sim: PlatformSimulator, control: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    received: list[WsMessage] = []
    async with ws_client(platform_sim) as client:
        with caplog.at_level(logging.INFO, logger="validator_tui.platform"):
            task = await listen(client, received)
            await wait_for(lambda: platform_sim.connected_validators() == [ALICE], 10)
            frame = {"text": '{"type":"new_job"}', "size": 20_000_000}
            await post(control, "/_sim/ws/send", frame)
            await wait_for(lambda: platform_sim.stats["ws_connections"] == 2, 10, "reconnect")
            await wait_for(lambda: platform_sim.connected_validators() == [ALICE], 10)
            job = platform_sim.add_job()
            await wait_for(lambda: len(received) == 1, 10, "the next new_job")
            await stop(task)
    assert received[0].job_id == job["id"]  # type: ignore[union-attr]
    disconnects = lines(caplog, "WebSocket disconnected")
    assert len(disconnects) == 1, disconnects
    assert "1009" in disconnects[0] or "too big" in disconnects[0]


async def test_a_flood_of_malformed_frames_is_logged_with_a_count(
    platform_sim: PlatformSimulator, control: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    received: list[WsMessage] = []
    frame = json.dumps({"type": "new_job", "job_id": "\x1b[2Jj", "challenge_id": 5})
    async with PlatformClient(
        platform_sim.url, ALICE, timeout=2, repeat_log_window_s=0.2
    ) as client:
        with caplog.at_level(logging.WARNING, logger="validator_tui.platform"):
            task = await listen(client, received)
            await wait_for(lambda: platform_sim.connected_validators() == [ALICE], 10)
            await post(control, "/_sim/ws/send", {"text": frame, "count": 2000})
            await wait_for(lambda: client.frames_malformed == 2000, 20, "2,000 frames")
            await wait_for(lambda: counted(lines(caplog, "malformed")) == 2000, 5, "summary")
            await stop(task)
    logged = lines(caplog, "malformed")
    assert len(logged) < 100, len(logged)
    assert "challenge_id = 5" in logged[0]
    assert not any("\x1b" in line for line in logged)
    assert received == []


def counted(logged: list[str]) -> int:
    """How many occurrences `logged` accounts for: a summary line its count, any other one."""
    total = 0
    for line in logged:
        if "more in the last" in line:
            total += int(line.rsplit("(", 1)[1].split(" ", 1)[0].replace(",", ""))
        else:
            total += 1
    return total


async def test_a_flood_of_unknown_frames_is_one_log_line(tmp_path) -> None:
    async with DemoEnvironment(
        seed=8, jobs_per_minute=0, boot_seconds=0, engine=FAST, state_dir=str(tmp_path)
    ) as env:
        async with running(env.config) as validator:
            platform = validator.ctx.platform
            await wait_for(lambda: len(env.platform.connected_validators()) == 1, 10)
            env.platform.send_ws_frames('{"type":"x"}', count=3000)
            await wait_for(lambda: platform.frames_unknown == 3000, 20, "3,000 frames")
            job = env.platform.add_job()
            await wait_for(lambda: job["id"] in env.platform.results(), 15, "the next job")
            unknown = [e.message for e in validator.state.events if "unknown" in e.message]
    assert unknown == ["ignored a WebSocket frame of unknown type 'x'"]
