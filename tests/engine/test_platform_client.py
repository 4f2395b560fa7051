"""PlatformClient against the Platform API simulator over real loopback sockets."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable

import httpx
import pytest

from tests.support.identities import ALICE, BOB
from validator_tui.clients.errors import (
    ApiError,
    ClaimLost,
    DecodeError,
    NetworkError,
    QueryRefused,
)
from validator_tui.clients.platform import PlatformClient, SubmitOutcome, WsState
from validator_tui.models.platform import (
    ChallengeUpdatedMessage,
    JobCancelledMessage,
    JobResults,
    NewJobMessage,
    UnknownMessage,
    WsMessage,
)
from validator_tui.sim.platform import PlatformSimulator
from validator_tui.sim.server import bind_socket

RESULTS = JobResults(score=0.75, metrics={"accuracy": 0.75}, logs=["ok"], execution_time_ms=42)
BODY = RESULTS.to_json_bytes()


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until `check()` is true (polling the loop), failing after `timeout`."""
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.005)


async def test_get_challenges(platform_sim, platform_client) -> None:
    challenges = await platform_client.get_challenges()
    assert [c.id for c in challenges] == [c["id"] for c in platform_sim.challenges()]
    assert all(len(c.github_commit) == 40 and c.status == "active" for c in challenges)


async def test_get_pending_jobs(platform_sim, platform_client) -> None:
    made = platform_sim.add_jobs(3)
    jobs = await platform_client.get_pending_jobs()
    assert [(j.id, j.challenge_id, j.submission_id) for j in jobs] == [
        (m["id"], m["challenge_id"], m["submission_id"]) for m in made
    ]


async def test_claim_ok_then_lost(platform_sim, platform_client) -> None:
    job = platform_sim.add_job()
    claim = await platform_client.claim_job(job["id"])
    assert (claim.id, claim.challenge_id, claim.status) == (
        job["id"],
        job["challenge_id"],
        "claimed",
    )
    assert platform_sim.job(job["id"])["claimed_by"] == ALICE
    with pytest.raises(ClaimLost) as lost:
        await platform_client.claim_job(job["id"])
    assert (lost.value.job_id, lost.value.status) == (job["id"], 409)


async def test_claim_lost_unknown_and_cancelled(platform_sim, platform_client) -> None:
    with pytest.raises(ClaimLost) as unknown:
        await platform_client.claim_job("no/such job")
    assert unknown.value.status == 404
    job = platform_sim.add_job()
    platform_sim.cancel_job(job["id"])
    with pytest.raises(ClaimLost) as cancelled:
        await platform_client.claim_job(job["id"])
    assert cancelled.value.status == 410


async def test_claim_5xx_empty_body_is_lost_and_not_retried(platform_sim, platform_client) -> None:
    job = platform_sim.add_job()
    platform_sim.inject_fault(status=500, body="", path_prefix="/jobs/", method="POST", count=2)
    with pytest.raises(ClaimLost) as lost:
        await platform_client.claim_job(job["id"])
    assert lost.value.status == 500
    assert platform_sim.stats["POST /jobs/{job_id}/claim"] == 1


async def test_claim_5xx_with_body_is_api_error(platform_sim, platform_client) -> None:
    job = platform_sim.add_job()
    platform_sim.inject_fault(status=503, body='{"error":"maintenance"}', method="POST")
    with pytest.raises(ApiError) as error:
        await platform_client.claim_job(job["id"])
    assert (error.value.status, error.value.detail) == (503, "maintenance")
    assert platform_sim.stats["POST /jobs/{job_id}/claim"] == 1


async def test_submit_accepted_then_duplicate(platform_sim, platform_client) -> None:
    job = platform_sim.add_job()
    await platform_client.claim_job(job["id"])
    assert await platform_client.submit_results(job["id"], BODY) == SubmitOutcome.ACCEPTED
    assert await platform_client.submit_results(job["id"], BODY) == SubmitOutcome.DUPLICATE
    assert platform_sim.results() == {job["id"]: [RESULTS.model_dump(mode="json")]}


async def test_submit_retried_through_503s(platform_sim, platform_client) -> None:
    job = platform_sim.add_job()
    await platform_client.claim_job(job["id"])
    platform_sim.inject_fault(status=503, count=3, path_prefix=f"/jobs/{job['id']}/results")
    assert await platform_client.submit_results(job["id"], BODY) == SubmitOutcome.ACCEPTED
    assert platform_sim.stats["POST /jobs/{job_id}/results"] == 4
    assert len(platform_sim.results()[job["id"]]) == 1


async def test_submit_cancelled_and_forbidden(platform_sim, platform_client) -> None:
    cancelled, foreign = platform_sim.add_jobs(2)
    await platform_client.claim_job(cancelled["id"])
    platform_sim.cancel_job(cancelled["id"])
    assert await platform_client.submit_results(cancelled["id"], BODY) == SubmitOutcome.CANCELLED
    async with PlatformClient(platform_sim.url, BOB) as bob:
        await bob.claim_job(foreign["id"])
    with pytest.raises(ApiError) as error:
        await platform_client.submit_results(foreign["id"], BODY)
    assert error.value.status == 403
    assert "not claimed by this validator" in error.value.detail
    assert platform_sim.results() == {}


async def test_retry_after_replaces_backoff(platform_sim) -> None:
    platform_sim.inject_fault(
        status=429, count=2, path_prefix="/challenges/active", retry_after_s=0
    )
    # Backoff alone would wait up to 1000 s: only an honoured Retry-After: 0 lets this finish.
    async with (
        PlatformClient(platform_sim.url, ALICE, backoff_base=1000, backoff_cap=1000) as client,
        asyncio.timeout(10),
    ):
        assert len(await client.get_challenges()) == 3
    assert platform_sim.stats["GET /challenges/active"] == 3


async def test_retries_exhausted_raise_last_error(platform_sim) -> None:
    platform_sim.inject_fault(status=502, count=10, body="bad gateway")
    async with PlatformClient(
        platform_sim.url, ALICE, max_attempts=3, backoff_base=0.001, backoff_cap=0.002
    ) as client:
        with pytest.raises(ApiError) as error:
            await client.get_pending_jobs()
    assert (error.value.status, error.value.detail) == (502, "bad gateway")
    assert "GET /jobs/pending" in str(error.value)
    assert platform_sim.stats["GET /jobs/pending"] == 3


async def test_timeout_is_network_error_after_retries(platform_sim) -> None:
    # Each attempt must reach the server before it times out (a loaded machine takes a while
    # to connect), and the answer must come well after that.
    platform_sim.inject_fault(status=0, delay_s=2.0, count=2, path_prefix="/jobs/pending")
    async with PlatformClient(
        platform_sim.url, ALICE, timeout=0.4, max_attempts=2, backoff_base=0.001
    ) as client:
        with pytest.raises(NetworkError, match="timed out"):
            await client.get_pending_jobs()
    assert platform_sim.stats["GET /jobs/pending"] == 2


async def test_connection_refused_is_network_error() -> None:
    sock = bind_socket()
    port = sock.getsockname()[1]
    sock.close()
    async with PlatformClient(f"http://127.0.0.1:{port}", ALICE, max_attempts=2) as client:
        with pytest.raises(NetworkError, match="GET /challenges/active"):
            await client.get_challenges()


async def test_api_error_carries_sanitised_server_words(platform_sim, platform_client) -> None:
    platform_sim.inject_fault(
        status=400, body='{"error":"\\u001b[31mno\\u001b]0;pwned\\u0007 way\\u001b[0m"}'
    )
    with pytest.raises(ApiError) as error:
        await platform_client.get_challenges()
    assert error.value.status == 400
    assert error.value.detail == "no way"
    assert "\x1b" not in str(error.value) and "\x07" not in str(error.value)
    platform_sim.inject_fault(status=404, body="\x1b[2Jplain text")
    with pytest.raises(ApiError) as raw:
        await platform_client.get_pending_jobs()
    assert raw.value.detail == "plain text"


async def test_decode_errors(platform_sim, platform_client) -> None:
    platform_sim.inject_fault(status=200, body="not json")
    with pytest.raises(DecodeError, match=r"GET /jobs/pending: response is not valid JSON"):
        await platform_client.get_pending_jobs()
    platform_sim.inject_fault(status=200, body='{"jobs":{"id":"j"}}')
    with pytest.raises(DecodeError, match=r"GET /jobs/pending: .*at jobs: Input should be"):
        await platform_client.get_pending_jobs()
    platform_sim.inject_fault(status=200, body='{"challenge":[]}')
    with pytest.raises(DecodeError, match=r"GET /challenges/active: .*at challenges: Field"):
        await platform_client.get_challenges()
    # A bad entry is skipped (tests/engine/test_rough_platform.py), never the whole list.
    platform_sim.inject_fault(status=200, body='{"jobs":[{"challenge_id":"c"}]}')
    assert len(await platform_client.get_pending_jobs()) == 0


async def test_orm_query_returns_rows(platform_sim, platform_client) -> None:
    job = platform_sim.add_job(code="#sim:hang\nprint(1)")
    rows = await platform_client.execute_orm_query(
        job["challenge_id"], "SELECT code FROM submissions WHERE id = ?", [job["submission_id"]]
    )
    assert rows == [{"code": "#sim:hang\nprint(1)"}]
    agents = await platform_client.execute_orm_query(
        job["challenge_id"], "SELECT * FROM agents WHERE status = 'validated'"
    )
    assert agents and all(a["status"] == "validated" for a in agents)


async def test_orm_write_refused_before_sending(platform_sim, platform_client) -> None:
    challenge = platform_sim.challenges()[0]["id"]
    for sql in ["DELETE FROM agents", "SELECT 1; DROP TABLE agents", ""]:
        with pytest.raises(QueryRefused):
            await platform_client.execute_orm_query(challenge, sql)
    assert platform_sim.stats["POST /challenges/{challenge_id}/orm/query"] == 0


async def test_orm_server_refusals_are_api_errors(platform_sim, platform_client) -> None:
    challenge = platform_sim.challenges()[0]["id"]
    headers = {"X-Validator-Hotkey": ALICE}
    async with httpx.AsyncClient(base_url=platform_sim.url, headers=headers) as raw:
        sent = await raw.post(
            f"/challenges/{challenge}/orm/query", json={"query": "DELETE FROM agents"}
        )
    assert sent.status_code == 400 and "not authorized" in sent.json()["error"]
    with pytest.raises(ApiError) as error:
        await platform_client.execute_orm_query(challenge, "SELECT * FROM no_such_table")
    assert error.value.status == 400 and "no such table" in error.value.detail
    with pytest.raises(ApiError) as unknown:
        await platform_client.execute_orm_query("nope", "SELECT 1")
    assert unknown.value.status == 404


async def test_fetch_bytes_compose_matches_hash(platform_sim, platform_client) -> None:
    for challenge in await platform_client.get_challenges():
        url = f"{challenge.github_repo}/raw/{challenge.github_commit}/app-compose.json"
        data = await platform_client.fetch_bytes(url)
        assert hashlib.sha256(data).hexdigest() == challenge.compose_hash
    platform_sim.inject_fault(status=503, path_prefix="/repos/")
    assert await platform_client.fetch_bytes(url) == platform_sim.compose_bytes(challenge.id)
    with pytest.raises(ApiError) as error:
        await platform_client.fetch_bytes(
            f"{challenge.github_repo}/raw/{'0' * 40}/app-compose.json"
        )
    assert error.value.status == 404


async def test_hotkey_header_on_every_request(platform_sim, platform_client) -> None:
    job = platform_sim.add_job()
    challenge = (await platform_client.get_challenges())[0]
    await platform_client.get_pending_jobs()
    await platform_client.claim_job(job["id"])
    await platform_client.submit_results(job["id"], BODY)
    await platform_client.execute_orm_query(challenge.id, "SELECT 1 AS one")
    await platform_client.fetch_bytes(
        f"{challenge.github_repo}/raw/{challenge.github_commit}/app-compose.json"
    )
    assert len(platform_sim.requests) == 6
    assert {hotkey for _, _, hotkey in platform_sim.requests} == {ALICE}


class Listener:
    """Collects what connect_websocket reports."""

    def __init__(self) -> None:
        self.messages: list[WsMessage] = []
        self.states: list[WsState] = []
        self.connects = 0

    async def on_message(self, message: WsMessage) -> None:
        self.messages.append(message)

    def on_state(self, state: WsState) -> None:
        self.states.append(state)

    async def on_connect(self) -> None:
        self.connects += 1

    def statuses(self) -> list[str]:
        return [s.status for s in self.states]


async def listen(client: PlatformClient, listener: Listener) -> asyncio.Task[None]:
    task = asyncio.create_task(
        client.connect_websocket(
            listener.on_message, on_state=listener.on_state, on_connect=listener.on_connect
        )
    )
    await eventually(lambda: listener.connects == 1)
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_websocket_receives_every_message_type(platform_sim, platform_client) -> None:
    listener = Listener()
    task = await listen(platform_client, listener)
    await eventually(lambda: platform_sim.connected_validators() == [ALICE])
    job = platform_sim.add_job()
    updated = platform_sim.update_challenge(job["challenge_id"])
    platform_sim.cancel_job(job["id"])
    platform_sim.send_raw_ws('{"type":"challenges:list","challenges":[]}')
    await eventually(lambda: len(listener.messages) == 4)
    await stop(task)
    assert listener.messages[:3] == [
        NewJobMessage(type="new_job", job_id=job["id"], challenge_id=job["challenge_id"]),
        ChallengeUpdatedMessage(
            type="challenge_updated",
            challenge_id=job["challenge_id"],
            github_commit=updated["github_commit"],
        ),
        JobCancelledMessage(type="job_cancelled", job_id=job["id"]),
    ]
    assert isinstance(listener.messages[3], UnknownMessage)
    assert (platform_client.frames_received, platform_client.frames_unknown) == (4, 1)
    assert listener.statuses() == ["connecting", "connected", "closed"]
    assert ("WS", f"/validators/{ALICE}/ws", ALICE) in platform_sim.requests


async def test_websocket_reconnects_after_drop(platform_sim, platform_client) -> None:
    listener = Listener()
    task = await listen(platform_client, listener)
    await eventually(lambda: len(platform_sim.connected_validators()) == 1)
    assert platform_sim.drop_websockets() == 1
    await eventually(lambda: listener.connects == 2)
    await eventually(lambda: len(platform_sim.connected_validators()) == 1)
    job = platform_sim.add_job()
    await eventually(lambda: len(listener.messages) == 1)
    await stop(task)
    assert listener.messages[0].job_id == job["id"]  # type: ignore[union-attr]
    assert listener.statuses() == ["connecting", "connected", "reconnecting", "connected", "closed"]
    reconnecting = listener.states[2]
    assert reconnecting.retry_in is not None and 0 < reconnecting.retry_in <= 0.5
    assert reconnecting.last_error
    assert platform_sim.stats["ws_connections"] == 2


async def test_websocket_skips_malformed_frames_and_callback_errors(
    platform_sim, platform_client, caplog: pytest.LogCaptureFixture
) -> None:
    received: list[WsMessage] = []

    def callback(message: WsMessage) -> None:
        received.append(message)
        if len(received) == 1:
            raise RuntimeError("\x1b[31mboom")

    connected = asyncio.Event()

    async def on_connect() -> None:
        connected.set()

    task = asyncio.create_task(platform_client.connect_websocket(callback, on_connect=on_connect))
    await asyncio.wait_for(connected.wait(), 5)
    await eventually(lambda: len(platform_sim.connected_validators()) == 1)
    with caplog.at_level(logging.WARNING, logger="validator_tui.platform"):
        first = platform_sim.add_job()
        platform_sim.send_raw_ws("\x1b[2J{not json")
        platform_sim.send_raw_ws('{"type":"new_job"}')
        second = platform_sim.add_job()
        await eventually(lambda: len(received) == 2)
    await stop(task)
    assert [m.job_id for m in received] == [first["id"], second["id"]]  # type: ignore[union-attr]
    assert platform_client.frames_received == 4
    assert platform_client.frames_malformed == 2
    assert "boom" in caplog.text and "malformed" in caplog.text
    assert "\x1b" not in caplog.text
    assert platform_sim.stats["ws_connections"] == 1


async def test_websocket_url_derivation() -> None:
    async with PlatformClient("https://api.example/base/", ALICE) as client:
        assert client.websocket_url() == f"wss://api.example/base/validators/{ALICE}/ws"


async def test_websocket_server_down_reports_reconnecting() -> None:
    sock = bind_socket()
    port = sock.getsockname()[1]
    sock.close()
    listener = Listener()
    async with PlatformClient(f"http://127.0.0.1:{port}", ALICE, timeout=1) as client:
        task = asyncio.create_task(
            client.connect_websocket(listener.on_message, on_state=listener.on_state)
        )
        await eventually(lambda: "reconnecting" in listener.statuses())
        await stop(task)
    assert listener.statuses() == ["connecting", "reconnecting", "closed"]
    assert listener.states[1].last_error


async def test_context_manager_and_sim_fixture_seed(platform_sim: PlatformSimulator) -> None:
    async with PlatformClient(platform_sim.url, ALICE) as client:
        assert len(await client.get_challenges()) == 3
    with pytest.raises(RuntimeError):
        await client.get_challenges()
