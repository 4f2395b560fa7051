"""VmmClient against the dstack VMM simulator (and a few odd servers), over real sockets."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.vmm_fixtures import free_port
from validator_tui.clients.errors import ApiError, DecodeError, NetworkError, VmmError
from validator_tui.clients.vmm import VmmClient
from validator_tui.models.vmm import GpuConfig, PortMapping, VmConfiguration
from validator_tui.sim.server import serving, start_server
from validator_tui.sim.vmm import VmmSimulator

COMPOSE = json.dumps({"manifest_version": 2, "name": "evaluator", "runner": "docker-compose"})


def make_config(name: str = "vt-5Grwva-job-1", **changes: object) -> VmConfiguration:
    base: dict[str, object] = {
        "name": name,
        "image": "dstack-0.5.8",
        "compose_file": COMPOSE,
        "vcpu": 1,
        "memory": 1024,
        "disk_size": 10,
    }
    return VmConfiguration.model_validate(base | changes)


def test_request_dump_omits_unset_optionals() -> None:
    body = make_config().to_request()
    assert "gpus" not in body
    assert "app_id" not in body
    assert "simulated_tee" not in body
    assert body["name"] == "vt-5Grwva-job-1"
    assert body["memory"] == 1024
    assert body["ports"] == []
    with_gpus = make_config(gpus=GpuConfig(attach_mode="listed")).to_request()
    assert with_gpus["gpus"] == {"attach_mode": "listed", "gpus": []}


async def test_create_get_info_and_lifecycle(vmm_client: VmmClient) -> None:
    port = free_port()
    config = make_config(ports=[PortMapping(host_port=port, vm_port=8080)])
    vm_id = await vmm_client.create_vm(config)
    info = await vmm_client.get_info(vm_id)
    assert info is not None
    assert info.id == vm_id
    assert info.is_ready
    assert info.instance_id
    assert info.configuration is not None
    assert info.configuration.ports[0].host_port == port
    assert info.configuration.gpus == GpuConfig(attach_mode="listed", gpus=[])

    await vmm_client.stop_vm(vm_id)
    await vmm_client.stop_vm(vm_id)
    stopped = await vmm_client.get_info(vm_id)
    assert stopped is not None and stopped.status == "stopped" and stopped.has_failed

    await vmm_client.start_vm(vm_id)
    await vmm_client.start_vm(vm_id)
    started = await vmm_client.get_info(vm_id)
    assert started is not None and started.is_ready

    await vmm_client.shutdown_vm(vm_id)
    stopping = await vmm_client.get_info(vm_id)
    assert stopping is not None and stopping.status == "stopping"

    await vmm_client.remove_vm(vm_id)
    removing = await vmm_client.get_info(vm_id)
    assert removing is not None and removing.status == "removing"


async def test_get_info_unknown_is_none(vmm_client: VmmClient) -> None:
    assert await vmm_client.get_info("no-such-vm") is None


async def test_status_meta_version_images(vmm_client: VmmClient) -> None:
    first = await vmm_client.create_vm(make_config("alpha"))
    second = await vmm_client.create_vm(make_config("beta"))
    everything = await vmm_client.status()
    assert [vm.id for vm in everything.vms] == [first, second]
    assert everything.total == 2
    assert everything.port_mapping_enabled
    assert all(vm.configuration is None for vm in everything.vms)
    full = await vmm_client.status(ids=[second], brief=False)
    assert [vm.name for vm in full.vms] == ["beta"]
    assert full.vms[0].configuration is not None
    paged = await vmm_client.status(keyword="a", page=2, page_size=1)
    assert paged.total == 2
    assert [vm.name for vm in paged.vms] == ["beta"]

    meta = await vmm_client.get_meta()
    assert meta.resources.max_cvm_number == 1000
    assert (await vmm_client.version()).version == "0.6.0"
    names = [image.name for image in await vmm_client.list_images()]
    assert names == ["dstack-0.5.2", "dstack-0.5.8"]


async def test_dstack_errors_become_vmm_error(vmm_client: VmmClient) -> None:
    with pytest.raises(VmmError, match=r"^Invalid name: bad/name$"):
        await vmm_client.create_vm(make_config("bad/name"))
    with pytest.raises(VmmError, match=r"^Failed to remove VM: VM not found$"):
        await vmm_client.remove_vm("missing")
    with pytest.raises(VmmError, match=r"^Failed to start VM: VM not found$"):
        await vmm_client.start_vm("missing")


async def test_error_text_is_sanitised(vmm_sim: VmmSimulator, vmm_client: VmmClient) -> None:
    vmm_sim.fail_next("Version", error="boom\x1b]0;title\x07\x1b[2J\nsecond line")
    with pytest.raises(VmmError) as caught:
        await vmm_client.version()
    assert str(caught.value) == "boom second line"
    assert (await vmm_client.version()).version == "0.6.0"


async def test_unix_socket_url(tmp_path: object) -> None:
    sim = VmmSimulator()
    path = f"{tmp_path}/vmm.sock"
    url = await sim.start_unix(path)
    assert url == f"unix:{path}"
    try:
        async with VmmClient(url, timeout=2) as client:
            vm_id = await client.create_vm(make_config())
            info = await client.get_info(vm_id)
            assert info is not None and info.status == "running"
            lines = [line async for line in client.logs(vm_id, lines=1)]
            assert lines and lines[-1].endswith("boot progress: done")
    finally:
        await sim.stop()


async def test_auth_bearer_token() -> None:
    sim = VmmSimulator(token="s3cret-token")
    url = await sim.start()
    try:
        async with VmmClient(url, timeout=2) as anonymous:
            with pytest.raises(VmmError, match="unauthorized: check dstack_vmm_token"):
                await anonymous.version()
        async with VmmClient(url, "wrong", timeout=2) as wrong:
            with pytest.raises(VmmError, match="unauthorized"):
                await wrong.version()
        client = VmmClient(url, "s3cret-token", timeout=2)
        assert "s3cret-token" not in repr(client)
        async with client:
            assert (await client.version()).version == "0.6.0"
    finally:
        await sim.stop()


async def test_logs_tail_follow_and_unknown(vmm_sim: VmmSimulator, vmm_client: VmmClient) -> None:
    port = free_port()
    vm_id = await vmm_client.create_vm(make_config(ports=[PortMapping(host_port=port, vm_port=80)]))
    tail = [line async for line in vmm_client.logs(vm_id, lines=2)]
    assert len(tail) == 2
    assert tail[-1].endswith("[  OK  ] dstack-util: boot progress: done")
    assert "\x1b" not in "".join(tail)
    raw = [line async for line in vmm_client.logs(vm_id, lines=1, ansi=True)]
    assert "\x1b[0;32m" in raw[0]

    stream = vmm_client.logs(vm_id, follow=True, lines=0)
    first = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.05)
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"http://127.0.0.1:{port}/health")).status_code == 200
    assert (await asyncio.wait_for(first, 5)).endswith("health check: ok")
    await stream.aclose()

    with pytest.raises(VmmError, match=r"^VM not found$"):
        async for _ in vmm_client.logs("missing"):
            pass


async def test_logs_follow_skips_heartbeats() -> None:
    sim = VmmSimulator(log_heartbeat_s=0.02, removing_seconds=0.2)
    url = await sim.start()
    try:
        async with VmmClient(url, timeout=2) as client:
            vm_id = await client.create_vm(make_config())
            received: list[str] = []

            async def consume() -> None:
                async for line in client.logs(vm_id, follow=True, lines=1):
                    received.append(line)

            reader = asyncio.create_task(consume())
            await asyncio.sleep(0.1)
            await client.remove_vm(vm_id)
            await asyncio.wait_for(reader, 5)
            assert len(received) == 1
            assert received[0].endswith("boot progress: done")
    finally:
        await sim.stop()


async def test_connection_refused_is_network_error() -> None:
    async with VmmClient(f"http://127.0.0.1:{free_port()}", timeout=2) as client:
        with pytest.raises(NetworkError):
            await client.version()


async def test_other_statuses_and_bad_bodies() -> None:
    async def prpc(request: Request) -> Response:
        method = request.path_params["method"]
        if method == "Version":
            return Response("upstream down", 502)
        if method == "GetMeta":
            return Response("not json", 200)
        if method == "GetInfo":
            return Response(json.dumps({"found": True, "info": {"status": 1}}), 200)
        return Response(b"", 200)

    async def slow(request: Request) -> Response:
        await asyncio.sleep(5)
        return Response("null")

    app = Starlette(
        routes=[
            Route("/prpc/Status", slow, methods=["POST"]),
            Route("/prpc/{method}", prpc, methods=["POST"]),
        ]
    )
    async with serving(app) as url, VmmClient(url, timeout=0.3) as client:
        with pytest.raises(ApiError) as caught:
            await client.version()
        assert caught.value.status == 502
        assert "upstream down" in str(caught.value)
        with pytest.raises(DecodeError):
            await client.get_meta()
        with pytest.raises(DecodeError):
            await client.get_info("x")
        with pytest.raises(NetworkError, match="timed out"):
            await client.status()


async def test_plain_dstack_style_requests_work(vmm_sim: VmmSimulator) -> None:
    """A tool written for real dstack (plain POST /prpc/<Method>?json) works unchanged."""
    async with httpx.AsyncClient(base_url=vmm_sim.url) as http:
        created = await http.post("/prpc/CreateVm?json", json=make_config().to_request())
        assert created.status_code == 200
        vm_id = created.json()["id"]
        answer = await http.post("/prpc/GetInfo?json", json={"id": vm_id})
        assert answer.headers["content-type"] == "application/json"
        assert answer.json()["found"] is True
        assert answer.json()["info"]["status"] == "running"
        assert (await http.post("/prpc/StopVm?json", json={"id": vm_id})).text == "null"


async def test_vmm_client_refuses_deeply_nested_answers():
    nested = "[" * 100_000

    async def answer(request):
        status = 200 if request.url.path.endswith("GetInfo") else 400
        return Response(nested, status_code=status, media_type="application/json")

    server = await start_server(Starlette(routes=[Route("/prpc/{m}", answer, methods=["POST"])]))
    try:
        async with VmmClient(server.url) as client:
            with pytest.raises(DecodeError):
                await client.get_info("vm-1")
            with pytest.raises(VmmError):
                await client.remove_vm("vm-1")
    finally:
        await server.stop()
