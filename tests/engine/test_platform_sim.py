"""The Platform API simulator over real loopback HTTP (raw httpx, no client of ours)."""

from __future__ import annotations

import asyncio
import hashlib
import json

import httpx
import pytest
import pytest_asyncio
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.identities import ALICE, BOB
from validator_tui.sim import platform_state, platform_ws
from validator_tui.sim.platform import PlatformSimulator

RESULT = {"score": 0.5, "metrics": {}, "logs": [], "execution_time_ms": 7, "error": None}


@pytest_asyncio.fixture
async def http(platform_sim: PlatformSimulator):
    async with httpx.AsyncClient(
        base_url=platform_sim.url, headers={"X-Validator-Hotkey": ALICE}
    ) as c:
        yield c


async def test_challenges_have_reference_shape(platform_sim, http) -> None:
    response = await http.get("/challenges/active")
    assert response.status_code == 200
    challenges = response.json()["challenges"]
    assert len(challenges) == 3
    for ch in challenges:
        assert set(ch) == {
            "id", "name", "status", "github_repo", "github_commit", "compose_hash",
            "mechanism_id", "emission_share",
        }  # fmt: skip
        assert ch["status"] == "active"
        assert len(ch["github_commit"]) == 40
        int(ch["github_commit"], 16)
        assert ch["github_repo"] == f"{platform_sim.url}/repos/{ch['name']}"


async def test_compose_served_at_commit_matches_hash(platform_sim, http) -> None:
    ch = (await http.get("/challenges/active")).json()["challenges"][0]
    response = await http.get(f"{ch['github_repo']}/raw/{ch['github_commit']}/app-compose.json")
    assert response.status_code == 200
    assert hashlib.sha256(response.content).hexdigest() == ch["compose_hash"]
    assert response.content == platform_sim.compose_bytes(ch["id"])
    compose = json.loads(response.content)
    assert compose["manifest_version"] == 2
    assert compose["runner"] == "docker-compose"
    assert compose["kms_enabled"] is False and compose["gateway_enabled"] is False
    assert compose["public_logs"] is True
    assert "8080" in compose["docker_compose_file"]
    assert response.content == json.dumps(compose, indent=4).encode()
    missing = await http.get(f"{ch['github_repo']}/raw/{'0' * 40}/app-compose.json")
    assert missing.status_code == 404


async def test_update_keeps_old_commit_and_bad_hash_mismatches(platform_sim, http) -> None:
    old = platform_sim.challenges()[0]
    new = platform_sim.update_challenge(old["id"], bad_hash=True)
    assert new["github_commit"] != old["github_commit"]
    assert new["compose_hash"] != old["compose_hash"]
    old_bytes = await http.get(f"{old['github_repo']}/raw/{old['github_commit']}/app-compose.json")
    assert hashlib.sha256(old_bytes.content).hexdigest() == old["compose_hash"]
    new_bytes = await http.get(f"{new['github_repo']}/raw/{new['github_commit']}/app-compose.json")
    assert new_bytes.status_code == 200
    assert hashlib.sha256(new_bytes.content).hexdigest() != new["compose_hash"]
    good = platform_sim.update_challenge(old["id"])
    assert hashlib.sha256(platform_sim.compose_bytes(old["id"])).hexdigest() == good["compose_hash"]


async def test_seeded_simulators_are_identical() -> None:
    first, second = PlatformSimulator(seed=7), PlatformSimulator(seed=7)
    assert first.challenges() == second.challenges()
    assert first.add_jobs(3) == second.add_jobs(3)
    assert first.challenges() != PlatformSimulator(seed=8).challenges()
    ch = first.challenges()[0]["id"]
    assert first.compose_bytes(ch) == second.compose_bytes(ch)


async def test_every_rest_route_requires_hotkey(platform_sim) -> None:
    job = platform_sim.add_job()
    ch = job["challenge_id"]
    async with httpx.AsyncClient(base_url=platform_sim.url) as bare:
        for method, path in [
            ("GET", "/challenges/active"),
            ("GET", "/jobs/pending"),
            ("POST", f"/jobs/{job['id']}/claim"),
            ("POST", f"/jobs/{job['id']}/results"),
            ("POST", f"/challenges/{ch}/orm/query"),
        ]:
            response = await bare.request(method, path)
            assert response.status_code == 401, path
            assert "X-Validator-Hotkey" in response.json()["error"]
    assert platform_sim.job(job["id"])["status"] == "pending"


async def test_pending_oldest_first_and_limited(http) -> None:
    sim = PlatformSimulator(seed=3, pending_limit=5)
    url = await sim.start()
    try:
        jobs = sim.add_jobs(8)
        async with httpx.AsyncClient(base_url=url, headers={"X-Validator-Hotkey": BOB}) as c:
            await c.post(f"/jobs/{jobs[0]['id']}/claim")
            listed = (await c.get("/jobs/pending")).json()["jobs"]
        assert [j["id"] for j in listed] == [j["id"] for j in jobs[1:6]]
        assert set(listed[0]) == {
            "id", "challenge_id", "submission_id", "miner_hotkey", "status", "created_at",
        }  # fmt: skip
        assert all(j["status"] == "pending" for j in listed)
    finally:
        await sim.stop()


async def test_claim_statuses(platform_sim, http) -> None:
    job, other, cancelled = platform_sim.add_jobs(3)
    ok = await http.post(f"/jobs/{job['id']}/claim")
    assert ok.status_code == 200
    assert ok.json() == {
        "id": job["id"],
        "challenge_id": job["challenge_id"],
        "submission_id": job["submission_id"],
        "status": "claimed",
    }
    again = await http.post(f"/jobs/{job['id']}/claim")
    assert again.status_code == 409 and again.json() == {"error": "job already claimed"}
    assert (await http.post("/jobs/nope/claim")).status_code == 404
    platform_sim.cancel_job(cancelled["id"])
    assert (await http.post(f"/jobs/{cancelled['id']}/claim")).status_code == 410
    record = platform_sim.job(job["id"])
    assert record["status"] == "claimed" and record["claimed_by"] == ALICE
    assert record["claim_received_ns"] is not None
    assert platform_sim.job(other["id"])["claim_received_ns"] is None
    assert platform_sim.stats["claims_ok"] == 1 and platform_sim.stats["claims_conflict"] == 2


async def test_result_statuses(platform_sim, http) -> None:
    mine, theirs, cancelled = platform_sim.add_jobs(3)
    for job in (mine, cancelled):
        await http.post(f"/jobs/{job['id']}/claim")
    await http.post(f"/jobs/{theirs['id']}/claim", headers={"X-Validator-Hotkey": BOB})
    body = json.dumps(RESULT)
    headers = {"Content-Type": "application/json"}
    bad = await http.post(f"/jobs/{mine['id']}/results", content=b'{"score": "x"}', headers=headers)
    assert bad.status_code == 422 and "score" in bad.json()["error"]
    first = await http.post(f"/jobs/{mine['id']}/results", content=body, headers=headers)
    assert first.status_code == 204 and first.content == b""
    second = await http.post(f"/jobs/{mine['id']}/results", content=body, headers=headers)
    assert second.status_code == 409
    foreign = await http.post(f"/jobs/{theirs['id']}/results", content=body, headers=headers)
    assert foreign.status_code == 403
    platform_sim.cancel_job(cancelled["id"])
    gone = await http.post(f"/jobs/{cancelled['id']}/results", content=body, headers=headers)
    assert gone.status_code == 410
    assert (await http.post("/jobs/nope/results", content=body, headers=headers)).status_code == 404
    assert platform_sim.results() == {mine["id"]: [RESULT]}
    assert platform_sim.job(mine["id"])["status"] == "completed"
    assert platform_sim.stats["results_accepted"] == 1
    assert platform_sim.stats["results_rejected"] == 5


async def test_orm_runs_real_sql_read_only(platform_sim, http) -> None:
    job = platform_sim.add_job(code="print('hi')  #sim:hang")
    assert job["code"] == "print('hi')  #sim:hang"
    path = f"/challenges/{job['challenge_id']}/orm/query"
    rows = await http.post(
        path,
        json={"query": "SELECT * FROM submissions WHERE id = ?", "params": [job["submission_id"]]},
    )
    assert rows.status_code == 200
    assert rows.json()["rows"] == [
        {
            "id": job["submission_id"],
            "miner_hotkey": job["miner_hotkey"],
            "code": "print('hi')  #sim:hang",
            "created_at": job["created_at"],
        }
    ]
    agents = (await http.post(path, json={"query": "SELECT status FROM agents"})).json()["rows"]
    assert {row["status"] for row in agents} == {"validated", "pending"}
    for sql in [
        "DELETE FROM agents",
        "UPDATE agents SET status = 'x'",
        "PRAGMA query_only = OFF",
        "SELECT 1; DELETE FROM agents",
        "CREATE TABLE t (x)",
        "SELEKT 1",
    ]:
        refused = await http.post(path, json={"query": sql, "params": []})
        assert refused.status_code == 400, sql
        assert refused.json()["error"]
    still = (await http.post(path, json={"query": "SELECT count(*) AS n FROM agents"})).json()
    assert still["rows"] == [{"n": 4}]
    endless = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT x FROM n"
    big = await http.post(path, json={"query": endless})
    assert big.status_code == 400  # recursion is not a plain read: refused by the authorizer
    many = await http.post(
        path, json={"query": "SELECT a.id FROM agents a, agents b, agents c, agents d, agents e"}
    )
    assert len(many.json()["rows"]) == 1000
    unknown = await http.post("/challenges/nope/orm/query", json={"query": "SELECT 1"})
    assert unknown.status_code == 404


async def test_faults_apply_to_rest_not_control(platform_sim, http) -> None:
    platform_sim.inject_fault(status=503, count=2, path_prefix="/jobs", method="GET", body="busy")
    assert (await http.get("/challenges/active")).status_code == 200
    assert (await http.post("/_sim/jobs", json={"count": 1})).status_code == 200
    first = await http.get("/jobs/pending")
    assert (first.status_code, first.text) == (503, "busy")
    assert (await http.get("/jobs/pending")).status_code == 503
    assert (await http.get("/jobs/pending")).status_code == 200
    platform_sim.inject_fault(status=200, body="not json")
    odd = await http.get("/challenges/active")
    assert (odd.status_code, odd.text) == (200, "not json")


async def test_control_api(platform_sim, http) -> None:
    made = (await http.post("/_sim/challenges", json={"name": "extra"})).json()
    assert made["name"] == "extra"
    jobs = (await http.post("/_sim/jobs", json={"count": 2, "challenge_id": made["id"]})).json()
    assert [j["challenge_id"] for j in jobs["jobs"]] == [made["id"]] * 2
    assert (await http.post(f"/_sim/jobs/{jobs['jobs'][0]['id']}/cancel")).json() == {"ok": True}
    listed = (await http.get("/_sim/jobs")).json()["jobs"]
    assert [j["status"] for j in listed] == ["cancelled", "pending"]
    updated = (await http.post(f"/_sim/challenges/{made['id']}/update", json={})).json()
    assert updated["github_commit"] != made["github_commit"]
    assert (await http.delete(f"/_sim/challenges/{made['id']}")).status_code == 200
    active = (await http.get("/challenges/active")).json()["challenges"]
    assert made["id"] not in {c["id"] for c in active}
    assert (await http.delete("/_sim/challenges/nope")).status_code == 404
    assert (await http.post("/_sim/jobs", json={"count": 0})).status_code == 400
    fault = {"status": 500, "count": 1, "path_prefix": "/challenges", "method": "GET"}
    assert (await http.post("/_sim/faults", json=fault)).status_code == 200
    assert (await http.get("/challenges/active")).status_code == 500
    assert (await http.post("/_sim/ws/drop")).json() == {"dropped": 0}
    assert (await http.post("/_sim/rate", json={"jobs_per_minute": 0})).status_code == 200
    assert (await http.get("/_sim/results")).json() == {"results": {}}
    stats = (await http.get("/_sim/stats")).json()["stats"]
    assert stats["GET /challenges/active"] == 2


async def test_job_generator(platform_sim) -> None:
    platform_sim.set_job_rate(6000.0)
    for _ in range(200):
        if len(platform_sim.jobs()) >= 3:
            break
        await asyncio.sleep(0.01)
    platform_sim.set_job_rate(0)
    assert len(platform_sim.jobs()) >= 3


async def test_history_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform_state, "JOB_HISTORY_LIMIT", 10)
    sim = PlatformSimulator(seed=2, challenges=1)
    finished = sim.add_jobs(6)
    for job in finished:
        sim.cancel_job(job["id"])
    pending = sim.add_jobs(10)
    ids = [job["id"] for job in sim.jobs()]
    assert len(ids) == 10
    assert ids == [job["id"] for job in pending]
    with pytest.raises(KeyError):
        sim.job(finished[0]["id"])


async def test_websocket_broadcasts_and_records_header(platform_sim) -> None:
    ws_url = platform_sim.url.replace("http://", "ws://") + f"/validators/{ALICE}/ws"
    async with connect(ws_url, additional_headers={"X-Validator-Hotkey": ALICE}) as ws:
        await asyncio.wait_for(_until(platform_sim.connected_validators), 5)
        assert platform_sim.connected_validators() == [ALICE]
        job = platform_sim.add_job()
        assert json.loads(await ws.recv()) == {
            "type": "new_job", "job_id": job["id"], "challenge_id": job["challenge_id"],
        }  # fmt: skip
        assert platform_sim.job(job["id"])["announced_ns"] is not None
        updated = platform_sim.update_challenge(job["challenge_id"])
        assert json.loads(await ws.recv()) == {
            "type": "challenge_updated",
            "challenge_id": job["challenge_id"],
            "github_commit": updated["github_commit"],
        }
        platform_sim.cancel_job(job["id"])
        assert json.loads(await ws.recv()) == {"type": "job_cancelled", "job_id": job["id"]}
        assert platform_sim.send_raw_ws("{oops") == 1
        assert await ws.recv() == "{oops"
        assert platform_sim.drop_websockets() == 1
        await ws.wait_closed()
    assert ("WS", f"/validators/{ALICE}/ws", ALICE) in platform_sim.requests
    assert platform_sim.stats["ws_frames_sent"] == 4


async def test_overflowing_websocket_is_dropped(platform_sim, monkeypatch) -> None:
    monkeypatch.setattr(platform_ws, "SEND_QUEUE_LIMIT", 2)
    ws_url = platform_sim.url.replace("http://", "ws://") + f"/validators/{BOB}/ws"
    async with connect(ws_url) as ws:
        await asyncio.wait_for(_until(lambda: platform_sim.connected_validators() == [BOB]), 5)
        sent = [platform_sim.send_raw_ws(f'{{"type":"n{i}"}}') for i in range(4)]
        assert sent == [1, 1, 0, 0]
        assert platform_sim.connected_validators() == []
        await ws.wait_closed()
        assert ws.close_code == platform_ws.CLOSE_TRY_AGAIN_LATER


async def _until(check) -> None:
    while not check():
        await asyncio.sleep(0.005)


async def test_refusing_everything_answers_every_route_and_turns_websockets_away(
    platform_sim, http
) -> None:
    job = platform_sim.add_job()
    ws_url = platform_sim.url.replace("http://", "ws://") + f"/validators/{ALICE}/ws"
    async with connect(ws_url, additional_headers={"X-Validator-Hotkey": ALICE}) as ws:
        await asyncio.wait_for(_until(platform_sim.connected_validators), 5)
        refuse = await http.post("/_sim/refuse", json={"status": 403, "seconds": 60})
        assert refuse.status_code == 200
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
    for method, path in [
        ("GET", "/challenges/active"),
        ("GET", "/jobs/pending"),
        ("POST", f"/jobs/{job['id']}/claim"),
        ("POST", f"/jobs/{job['id']}/results"),
    ]:
        response = await http.request(method, path)
        assert response.status_code == 403, path
        assert response.json() == {"error": "validator hotkey not recognised"}
    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url, additional_headers={"X-Validator-Hotkey": ALICE}):
            pass
    assert refused.value.response.status_code == 403
    assert (await http.post("/_sim/refuse", json={"status": 401})).status_code == 200
    assert (await http.post("/_sim/refuse", json={"status": 500, "seconds": 1})).status_code == 400
    assert (await http.get("/jobs/pending")).status_code == 200
    assert platform_sim.stats["refused"] == 5
    assert platform_sim.stats["POST /jobs/{job_id}/claim refused"] == 1
    assert platform_sim.job(job["id"])["status"] == "pending"
