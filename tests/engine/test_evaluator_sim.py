"""Per-VM evaluator servers of the VMM simulator, and the `#sim:` directives (real sockets)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import socket
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio

from tests.support.vmm_fixtures import free_port
from validator_tui.clients.errors import VmmError
from validator_tui.clients.vmm import VmmClient
from validator_tui.models.vmm import PortMapping, VmConfiguration
from validator_tui.sim.directives import Directives, parse_directives, score_token
from validator_tui.sim.scoring import score_for_code
from validator_tui.sim.vmm import VmmSimulator

COMPOSE = json.dumps({"manifest_version": 2, "name": "evaluator", "runner": "docker-compose"})


def config(name: str, host_port: int) -> VmConfiguration:
    return VmConfiguration(
        name=name,
        image="dstack-0.5.8",
        compose_file=COMPOSE,
        vcpu=1,
        memory=512,
        disk_size=5,
        ports=[PortMapping(host_port=host_port, vm_port=8080)],
    )


@contextlib.contextmanager
def occupied_port() -> Iterator[int]:
    """A loopback port held by a listening socket for the duration of the `with`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield int(sock.getsockname()[1])


def job(code: str, job_id: str = "job-1") -> dict[str, str]:
    return {
        "job_id": job_id,
        "challenge_id": "ch-1",
        "submission_id": "sub-1",
        "miner_hotkey": "5Grwva",
        "code": code,
    }


@pytest_asyncio.fixture
async def evaluator(vmm_client: VmmClient) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    """(vm id, an httpx client based at the VM's evaluator)."""
    port = free_port()
    vm_id = await vmm_client.create_vm(config("vt-job-eval", port))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
        yield vm_id, http


# ---- directives (pure) ---------------------------------------------------------------------


def test_parse_directives() -> None:
    assert parse_directives("print('hello')") == Directives()
    code = "x = 1  #sim:sleep=0.5\n#sim:logs=7 #sim:ansi\n#sim:status=503 #sim:score=nan"
    assert parse_directives(code) == Directives(
        sleep_s=0.5, log_lines=7, ansi=True, status=503, score_token="NaN"
    )
    assert parse_directives("#sim:hang #sim:crash") == Directives(hang=True, crash=True)
    assert parse_directives("#sim:sleep=-1 #sim:status=42 #sim:logs=x #sim:bogus") == Directives()
    assert parse_directives("#sim:logs=1 #sim:logs=2").log_lines == 2
    assert parse_directives("#sim:trickle=20") == Directives(trickle_bytes_per_s=20)
    assert parse_directives("#sim:trickle=0 #sim:trickle=x") == Directives()


@pytest.mark.parametrize(
    ("text", "token"),
    [
        ("nan", "NaN"),
        ("inf", "Infinity"),
        ("-inf", "-Infinity"),
        ("1.7", "1.7"),
        ("-1", "-1"),
        ("0.25", "0.25"),
        ('"x"', '"x"'),
        ("x", '"x"'),
        ("1_0", '"1_0"'),
    ],
)
def test_score_tokens(text: str, token: str) -> None:
    assert score_token(text) == token


# ---- the evaluator server ------------------------------------------------------------------


async def test_health_and_deterministic_score(
    evaluator: tuple[str, httpx.AsyncClient], vmm_client: VmmClient
) -> None:
    vm_id, http = evaluator
    health = await http.get("/health")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    code = "def solve():\n    return 42\n"
    for _ in range(2):
        answer = await http.post("/evaluate", json=job(code))
        assert answer.status_code == 200
        body = answer.json()
        assert body["score"] == score_for_code(code)
        assert body["metrics"]["tests_total"] == 10
        assert body["metrics"]["tests_passed"] == int(score_for_code(code) * 10)
        assert body["metrics"]["latency_ms"] >= 0
        assert len(body["logs"]) == 3
    lines = [line async for line in vmm_client.logs(vm_id, lines=3)]
    assert lines[0].endswith("health check: ok")
    assert f"evaluate job=job-1 score={score_for_code(code)} in " in lines[-1]


async def test_bad_requests(evaluator: tuple[str, httpx.AsyncClient]) -> None:
    _, http = evaluator
    assert (await http.post("/evaluate", content=b"{oops")).status_code == 400
    assert (await http.post("/evaluate", json={"job_id": "j"})).status_code == 400
    assert (await http.get("/evaluate")).status_code == 405
    assert (await http.get("/nope")).status_code == 404
    assert (await http.get("/health")).status_code == 200


@pytest.mark.parametrize(
    ("directive", "expected"),
    [("#sim:score=1.7", 1.7), ("#sim:score=-1", -1), ('#sim:score="x"', "x")],
)
async def test_score_directive(
    evaluator: tuple[str, httpx.AsyncClient], directive: str, expected: object
) -> None:
    _, http = evaluator
    answer = await http.post("/evaluate", json=job(f"code {directive}"))
    assert answer.json()["score"] == expected


async def test_nan_score_is_the_nan_token(evaluator: tuple[str, httpx.AsyncClient]) -> None:
    _, http = evaluator
    answer = await http.post("/evaluate", json=job("#sim:score=nan"))
    assert answer.content.startswith(b'{"score":NaN,')
    assert math.isnan(json.loads(answer.content)["score"])


async def test_status_logs_and_ansi_directives(evaluator: tuple[str, httpx.AsyncClient]) -> None:
    _, http = evaluator
    failed = await http.post("/evaluate", json=job("#sim:status=503"))
    assert failed.status_code == 503
    assert failed.json() == {"error": "simulated evaluator failure (HTTP 503)"}
    many = await http.post("/evaluate", json=job("#sim:logs=25"))
    assert len(many.json()["logs"]) == 25
    hostile = (await http.post("/evaluate", json=job("#sim:ansi #sim:logs=2"))).json()["logs"]
    assert len(hostile) == 2
    assert all("\x1b[" in line and "\x1b]0;" in line for line in hostile)


async def test_sleep_and_simulator_latency(
    vmm_sim: VmmSimulator, evaluator: tuple[str, httpx.AsyncClient]
) -> None:
    _, http = evaluator
    slow = await http.post("/evaluate", json=job("#sim:sleep=0.05"))
    assert slow.json()["metrics"]["latency_ms"] >= 50
    vmm_sim.set_evaluator(latency_s=0.05)
    delayed = await http.post("/evaluate", json=job("plain"))
    assert delayed.json()["metrics"]["latency_ms"] >= 50


async def test_trickle_answers_at_once_then_sends_its_body_at_the_rate(
    evaluator: tuple[str, httpx.AsyncClient],
) -> None:
    _, http = evaluator
    async with http.stream("POST", "/evaluate", json=job("#sim:trickle=100")) as response:
        assert response.status_code == 200
        received = b""
        loop = asyncio.get_running_loop()
        started = loop.time()
        async for chunk in response.aiter_bytes():
            received += chunk
            if loop.time() - started >= 1.0:
                break
    assert received.startswith(b'{"score":0.5,"metrics":{},"logs":["')
    assert 50 <= len(received) - len(b'{"score":0.5,"metrics":{},"logs":["') <= 150


async def test_crash_closes_without_answer(evaluator: tuple[str, httpx.AsyncClient]) -> None:
    _, http = evaluator
    with pytest.raises(httpx.RemoteProtocolError):
        await http.post("/evaluate", json=job("#sim:crash"))
    assert (await http.get("/health")).status_code == 200


async def test_hang_never_answers_and_stop_cuts_it(
    evaluator: tuple[str, httpx.AsyncClient], vmm_client: VmmClient
) -> None:
    vm_id, http = evaluator
    with pytest.raises(httpx.ReadTimeout):
        await http.post("/evaluate", json=job("#sim:hang"), timeout=0.2)
    pending = asyncio.ensure_future(http.post("/evaluate", json=job("#sim:hang")))
    await asyncio.sleep(0.05)
    await vmm_client.stop_vm(vm_id)
    with pytest.raises(httpx.TransportError):
        await asyncio.wait_for(pending, 5)
    with pytest.raises(httpx.ConnectError):
        await http.get("/health")


async def test_serving_follows_the_vm_lifecycle(vmm_sim: VmmSimulator) -> None:
    vmm_sim.set_boot(seconds=0.1)
    port = free_port()
    async with (
        VmmClient(vmm_sim.url, timeout=2) as client,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2) as http,
    ):
        vm_id = await client.create_vm(config("vt-job-boot", port))
        with pytest.raises(httpx.ConnectError):
            await http.get("/health")
        while not (info := await client.get_info(vm_id)) or not info.is_ready:
            await asyncio.sleep(0.01)
        assert (await http.get("/health")).status_code == 200
        await client.stop_vm(vm_id)
        with pytest.raises(httpx.ConnectError):
            await http.get("/health")
        await client.start_vm(vm_id)
        while not (info := await client.get_info(vm_id)) or not info.is_ready:
            await asyncio.sleep(0.01)
        assert (await http.get("/health")).status_code == 200
        await client.remove_vm(vm_id)
        with pytest.raises(httpx.ConnectError):
            await http.get("/health")


async def test_host_port_in_use_fails_create(vmm_client: VmmClient) -> None:
    with occupied_port() as port:
        with pytest.raises(VmmError) as caught:
            await vmm_client.create_vm(config("vt-job-busy", port))
        message = str(caught.value)
        assert message.startswith("Failed to start VM ")
        assert f"Could not set up host forwarding rule 'tcp:127.0.0.1:{port}-:8080'" in message
    assert (await vmm_client.status()).total == 0
