"""The dstack VMM simulator's wire behaviour, errors and VM state machine (plain HTTP)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.support.vmm_fixtures import free_port
from validator_tui.sim.vmm import VmmSimulator
from validator_tui.sim.vmm_vm import BOOT_STAGES, humantime

COMPOSE = json.dumps({"manifest_version": 2, "name": "evaluator", "runner": "docker-compose"})


def vm_body(name: str = "vt-5Grwva-job-1", **changes: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": "dstack-0.5.8",
        "compose_file": COMPOSE,
        "vcpu": 2,
        "memory": 2048,
        "disk_size": 20,
    } | changes


@pytest_asyncio.fixture
async def http(vmm_sim: VmmSimulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=vmm_sim.url, timeout=5) as client:
        yield client


async def rpc(http: httpx.AsyncClient, method: str, body: dict[str, Any] | None = None) -> Any:
    response = await http.post(f"/prpc/{method}?json", json=body or {})
    assert response.status_code == 200, response.text
    return response.json()


async def rpc_error(http: httpx.AsyncClient, method: str, body: dict[str, Any]) -> str:
    response = await http.post(f"/prpc/{method}?json", json=body)
    assert response.status_code == 400
    return str(response.json()["error"])


async def info_of(http: httpx.AsyncClient, vm_id: str) -> dict[str, Any]:
    answer = await rpc(http, "GetInfo", {"id": vm_id})
    assert answer["found"] is True
    return dict(answer["info"])


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


# ---- wire format ---------------------------------------------------------------------------


async def test_wire_conventions(http: httpx.AsyncClient) -> None:
    empty = await http.post("/prpc/Version?json", content=b"")
    assert empty.json() == {"version": "0.6.0", "rev": "simulated"}
    assert empty.headers["x-app-version"] == "0.6.0"
    assert empty.headers["x-accel-buffering"] == "no"
    by_content_type = await http.post("/prpc/Teepod.Version", json={"ignored": 1})
    assert by_content_type.json()["version"] == "0.6.0"
    assert (await http.get("/prpc/ListGpus")).json() == {"gpus": [], "allow_attach_all": False}

    protobuf = await http.post("/prpc/Version", content=b"\x08\x01")
    assert protobuf.status_code == 400
    assert protobuf.json() == {
        "error": "protobuf encoding not supported by the simulator; use ?json"
    }
    assert await rpc_error(http, "Foo", {}) == "Service not found: Foo"
    assert await rpc_error(http, "Vmm.Version", {}) == "Service not found: Vmm.Version"


async def test_images_meta_and_compose_hash(http: httpx.AsyncClient) -> None:
    images = (await rpc(http, "ListImages"))["images"]
    assert [image["name"] for image in images] == ["dstack-0.5.2", "dstack-0.5.8"]
    assert json.loads(images[1]["description"])["version"] == "0.5.8"
    assert images[1]["version"] == "0.5.8" and images[1]["is_dev"] is False
    meta = await rpc(http, "GetMeta")
    assert meta["resources"] == {
        "max_cvm_number": 1000,
        "max_allocable_vcpu": 1024,
        "max_allocable_memory_in_mb": 4 * 1024 * 1024,
    }
    digest = hashlib.sha256(COMPOSE.encode()).hexdigest()
    assert await rpc(http, "GetComposeHash", vm_body()) == {"hash": digest}


async def test_get_query_fields_and_null_responses(http: httpx.AsyncClient) -> None:
    vm_id = (await rpc(http, "CreateVm", vm_body("one")))["id"]
    await rpc(http, "CreateVm", vm_body("two"))
    by_get = (await http.get("/prpc/GetInfo", params={"id": vm_id})).json()
    assert by_get["found"] is True and by_get["info"]["name"] == "one"
    status = (await http.get("/prpc/Status?brief=true&page=2&page_size=1")).json()
    assert status["total"] == 2
    assert [vm["name"] for vm in status["vms"]] == ["two"]
    assert status["vms"][0]["configuration"] is None
    stop = await http.post("/prpc/StopVm?json", json={"id": vm_id})
    assert stop.text == "null"
    assert stop.headers["content-type"] == "application/json"


# ---- auth ----------------------------------------------------------------------------------


async def test_auth_variants() -> None:
    sim = VmmSimulator(token="tok-123")
    await sim.start()
    try:
        async with httpx.AsyncClient(base_url=sim.url) as http:
            denied = await http.post("/prpc/Version?json")
            assert denied.status_code == 401
            assert denied.content == b""
            assert denied.headers["www-authenticate"] == 'Basic realm="dstack-vmm API"'
            assert (await http.get("/logs?id=x")).status_code == 401
            accepted = [
                {"Authorization": "Bearer tok-123"},
                {"X-Admin-Token": "tok-123"},
                {"Authorization": "Basic " + base64.b64encode(b"admin:tok-123").decode()},
                {"Authorization": "Basic " + base64.b64encode(b"tok-123:").decode()},
            ]
            for headers in accepted:
                answer = await http.post("/prpc/Version?json", headers=headers)
                assert answer.status_code == 200, headers
            assert (await http.get("/prpc/Version?token=tok-123")).status_code == 200
            assert (await http.post("/prpc/Version?json&token=tok-123")).status_code == 401
            assert (await http.get("/_sim/stats")).status_code == 200
    finally:
        await sim.stop()


# ---- CreateVm validation -------------------------------------------------------------------


async def test_create_errors_use_dstack_words(http: httpx.AsyncClient) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        (vm_body("bad/name"), "Invalid name: bad/name"),
        (vm_body(""), "Invalid name: "),
        (vm_body(gpus={}), "Invalid GPU attach mode: "),
        (vm_body(gpus={"attach_mode": "some"}), "Invalid GPU attach mode: some"),
        (vm_body(vcpu=0), "Invalid vcpu: must be greater than 0, got 0"),
        (vm_body(memory=0), "Invalid memory: must be greater than 0, got 0"),
        (vm_body(disk_size=0), "Invalid disk_size: must be greater than 0, got 0"),
        (
            vm_body(image="dstack-9.9"),
            "Failed to load VM: Failed to load image: dstack-9.9 not found",
        ),
        (
            vm_body(compose_file=json.dumps({"manifest_version": 2, "name": "x"})),
            "Failed to load VM: Failed to read compose file: missing field 'runner'",
        ),
        (
            vm_body(compose_file=json.dumps({"manifest_version": 2, "name": "x", "runner": "x"})),
            "Failed to load VM: Failed to read compose file: unknown variant 'x', expected one "
            "of 'docker-compose', 'nerdctl-compose', 'bash'",
        ),
        (
            vm_body(ports=[{"protocol": "sctp", "host_port": 1, "vm_port": 1}]),
            "Invalid protocol: sctp",
        ),
    ]
    for body, expected in cases:
        assert await rpc_error(http, "CreateVm", body) == expected
    broken = await rpc_error(http, "CreateVm", vm_body(compose_file="{not json"))
    assert broken.startswith("Failed to load VM: Failed to read compose file: ")
    assert (await rpc(http, "Status"))["total"] == 0


async def test_port_rules(http: httpx.AsyncClient) -> None:
    port = free_port()
    mapping = {"protocol": "tcp", "host_port": port, "vm_port": 8080, "host_address": ""}
    duplicate = await rpc_error(http, "CreateVm", vm_body(ports=[mapping, mapping]))
    assert duplicate == f"Duplicate host port: tcp:{port}"
    owner = (await rpc(http, "CreateVm", vm_body("owner", ports=[mapping])))["id"]
    info = await info_of(http, owner)
    assert info["configuration"]["ports"][0]["host_address"] == "127.0.0.1"
    conflict = await rpc_error(http, "CreateVm", vm_body("second", ports=[mapping]))
    assert conflict == f"Port conflict: tcp:{port} is already mapped by VM {owner}"


async def test_port_mapping_disabled() -> None:
    sim = VmmSimulator(port_mapping_enabled=False)
    await sim.start()
    try:
        async with httpx.AsyncClient(base_url=sim.url) as http:
            ports = [{"protocol": "tcp", "host_port": free_port(), "vm_port": 80}]
            assert await rpc_error(http, "CreateVm", vm_body(ports=ports)) == (
                "Port mapping is disabled"
            )
            assert (await rpc(http, "Status"))["port_mapping_enabled"] is False
    finally:
        await sim.stop()


async def test_max_vms_enforced() -> None:
    sim = VmmSimulator(max_vms=2, removing_seconds=0)
    await sim.start()
    try:
        async with httpx.AsyncClient(base_url=sim.url) as http:
            first = (await rpc(http, "CreateVm", vm_body("a")))["id"]
            await rpc(http, "CreateVm", vm_body("b"))
            error = await rpc_error(http, "CreateVm", vm_body("c"))
            assert error == "Failed to load VM: Too many VMs (max_cvm_number=2)"
            await rpc(http, "RemoveVm", {"id": first})
            assert (await rpc(http, "GetInfo", {"id": first})) == {"found": False, "info": None}
            await rpc(http, "CreateVm", vm_body("c"))
    finally:
        await sim.stop()


# ---- VmInfo and the state machine ----------------------------------------------------------


async def test_vm_info_fields(http: httpx.AsyncClient) -> None:
    vm_id = (await rpc(http, "CreateVm", vm_body()))["id"]
    info = await info_of(http, vm_id)
    assert len(vm_id) == 36 and vm_id[14] == "4"
    assert info["app_id"] == hashlib.sha256(COMPOSE.encode()).hexdigest()[:40]
    assert info["status"] == "running"
    assert info["boot_progress"] == "done"
    assert info["boot_error"] == "" and info["shutdown_progress"] == ""
    assert info["uptime"] == "0s" and info["exited_at"] == "never"
    assert info["app_url"] is None
    assert len(info["instance_id"]) == 40
    assert info["image_version"] == "0.5.8"
    assert [event["body"] for event in info["events"]] == ["booting", *BOOT_STAGES]
    assert all(event["event"] == "boot.progress" for event in info["events"])
    assert info["events"][0]["timestamp"] > 1_600_000_000_000
    assert info["interfaces"][0]["mode"] == "user"
    config = info["configuration"]
    assert config["stopped"] is False
    assert config["gpus"] == {"gpus": [], "attach_mode": "listed"}
    assert config["app_id"] == info["app_id"]
    supplied = (await rpc(http, "CreateVm", vm_body("b", app_id="0xABCDEF")))["id"]
    assert (await info_of(http, supplied))["app_id"] == "abcdef"


async def test_status_filters(http: httpx.AsyncClient) -> None:
    ids = [(await rpc(http, "CreateVm", vm_body(name)))["id"] for name in ("web-a", "db", "web-b")]
    assert [vm["id"] for vm in (await rpc(http, "Status"))["vms"]] == ids
    by_ids = await rpc(http, "Status", {"ids": [ids[2], ids[0]]})
    assert [vm["id"] for vm in by_ids["vms"]] == [ids[0], ids[2]]
    keyword = await rpc(http, "Status", {"keyword": "web", "brief": True})
    assert [vm["name"] for vm in keyword["vms"]] == ["web-a", "web-b"]
    assert keyword["vms"][0]["configuration"] is None
    assert (await rpc(http, "Status", {"keyword": "WEB"}))["total"] == 0
    assert (await rpc(http, "Status", {"keyword": "0.5.8"}))["total"] == 3
    page = await rpc(http, "Status", {"page": 1, "page_size": 2})
    assert page["total"] == 3 and len(page["vms"]) == 2
    assert (await rpc(http, "Status", {"page": 3, "page_size": 2}))["vms"] == []
    full = await rpc(http, "Status", {"ids": [ids[1]]})
    assert full["vms"][0]["configuration"]["name"] == "db"


async def test_timed_boot_goes_through_the_stages(vmm_sim: VmmSimulator) -> None:
    vmm_sim.set_boot(seconds=0.2)
    async with httpx.AsyncClient(base_url=vmm_sim.url) as http:
        vm_id = (await rpc(http, "CreateVm", vm_body()))["id"]
        first = await info_of(http, vm_id)
        assert first["status"] == "running"
        assert first["boot_progress"] in ("booting", *BOOT_STAGES[:3])
        assert first["instance_id"] is None

        async def done() -> bool:
            return (await info_of(http, vm_id))["boot_progress"] == "done"

        await wait_for(done)
        info = await info_of(http, vm_id)
        assert [event["body"] for event in info["events"]] == ["booting", *BOOT_STAGES]
        assert info["instance_id"]


async def test_boot_never_stalls_and_name_rules(vmm_sim: VmmSimulator) -> None:
    vmm_sim.set_boot(never=True, name_contains="stuck")
    async with httpx.AsyncClient(base_url=vmm_sim.url) as http:
        stuck = (await rpc(http, "CreateVm", vm_body("vt-stuck-1")))["id"]
        normal = (await rpc(http, "CreateVm", vm_body("vt-fine-1")))["id"]
        assert (await info_of(http, normal))["boot_progress"] == "done"

        async def stalled() -> bool:
            return (await info_of(http, stuck))["boot_progress"] == "setting up docker"

        await wait_for(stalled)
        await asyncio.sleep(0.05)
        assert (await info_of(http, stuck))["boot_progress"] == "setting up docker"
        assert {vm["name"]: vm["boot_progress"] for vm in vmm_sim.vms()} == {
            "vt-stuck-1": "setting up docker",
            "vt-fine-1": "done",
        }


async def test_state_machine(vmm_sim: VmmSimulator, http: httpx.AsyncClient) -> None:
    vm_id = (await rpc(http, "CreateVm", vm_body(stopped=True)))["id"]
    created = await info_of(http, vm_id)
    assert created["status"] == "stopped"
    assert created["boot_progress"] == ""
    assert created["configuration"]["stopped"] is True

    await rpc(http, "StartVm", {"id": vm_id})
    assert (await info_of(http, vm_id))["status"] == "running"
    await rpc(http, "StopVm", {"id": vm_id})
    stopped = await info_of(http, vm_id)
    assert stopped["status"] == "stopped" and stopped["uptime"] == "never"
    assert stopped["exited_at"] == "0s"
    await rpc(http, "StopVm", {"id": vm_id})
    error = await rpc_error(http, "ShutdownVm", {"id": vm_id})
    assert error == f"Failed to shutdown VM: guest agent unreachable: VM {vm_id}"

    await rpc(http, "StartVm", {"id": vm_id})
    await rpc(http, "ShutdownVm", {"id": vm_id})
    stopping = await info_of(http, vm_id)
    assert stopping["status"] == "stopping"
    assert stopping["shutdown_progress"] == "powering off"

    async def is_stopped() -> bool:
        return (await info_of(http, vm_id))["status"] == "stopped"

    await wait_for(is_stopped)

    await rpc(http, "StartVm", {"id": vm_id})
    vmm_sim.crash(vm_id, boot_error="kernel panic")
    exited = await info_of(http, vm_id)
    assert exited["status"] == "exited"
    assert exited["boot_error"] == "kernel panic"

    await rpc(http, "RemoveVm", {"id": vm_id})
    assert (await info_of(http, vm_id))["status"] == "removing"
    assert (await rpc(http, "Status", {"ids": [vm_id]}))["vms"][0]["status"] == "removing"
    await rpc(http, "RemoveVm", {"id": vm_id})

    async def gone() -> bool:
        return (await rpc(http, "GetInfo", {"id": vm_id}))["found"] is False

    await wait_for(gone)
    assert await rpc(http, "GetInfo", {"id": vm_id}) == {"found": False, "info": None}
    assert await rpc_error(http, "RemoveVm", {"id": vm_id}) == "Failed to remove VM: VM not found"
    assert await rpc_error(http, "StopVm", {"id": vm_id}) == "Failed to stop VM: VM not found"
    assert vmm_sim.stats["vms_created"] == 1 and vmm_sim.stats["vms_removed"] == 1


async def test_events_ring_holds_twenty(http: httpx.AsyncClient) -> None:
    vm_id = (await rpc(http, "CreateVm", vm_body()))["id"]
    for _ in range(3):
        await rpc(http, "StopVm", {"id": vm_id})
        await rpc(http, "StartVm", {"id": vm_id})
    events = (await info_of(http, vm_id))["events"]
    assert len(events) == 20
    assert events[-1] == {**events[-1], "event": "boot.progress", "body": "done"}


def test_humantime() -> None:
    assert humantime(0) == "0s"
    assert humantime(3723.9) == "1h 2m 3s"
    assert humantime(86_400 + 60) == "1day 1m"
    assert humantime(2 * 86_400) == "2days"


# ---- logs ----------------------------------------------------------------------------------


async def test_logs_endpoint(http: httpx.AsyncClient) -> None:
    vm_id = (await rpc(http, "CreateVm", vm_body()))["id"]
    everything = await http.get("/logs", params={"id": vm_id, "follow": "false", "ansi": "true"})
    assert everything.status_code == 200
    assert everything.headers["content-type"].startswith("text/plain")
    assert everything.headers["transfer-encoding"] == "chunked"
    lines = everything.text.splitlines()
    assert lines[0].startswith("===== boot @ ") and lines[0].endswith(" =====")
    assert len(lines) == 1 + 1 + len(BOOT_STAGES)
    assert any("\x1b[" in line for line in lines)
    plain = await http.get("/logs", params={"id": vm_id, "ansi": "false", "lines": "3"})
    assert len(plain.text.splitlines()) == 3
    assert "\x1b" not in plain.text
    stdout = await http.get("/logs", params={"id": vm_id, "ch": "stdout"})
    assert "started (simulated)" in stdout.text

    missing = await http.get("/logs", params={"id": "nope"})
    assert missing.status_code == 404 and missing.text == "VM not found"
    assert missing.headers["content-type"].startswith("text/plain")
    channel = await http.get("/logs", params={"id": vm_id, "ch": "kmsg"})
    assert channel.status_code == 400 and channel.text == "Unknown channel kmsg"


async def test_logs_follow_receives_new_lines_and_heartbeats() -> None:
    sim = VmmSimulator(log_heartbeat_s=0.05)
    await sim.start()
    try:
        async with httpx.AsyncClient(base_url=sim.url, timeout=5) as http:
            vm_id = (await rpc(http, "CreateVm", vm_body()))["id"]
            params = {"id": vm_id, "follow": "true", "ansi": "false", "lines": "0"}
            async with http.stream("GET", "/logs", params=params) as stream:
                chunks = stream.aiter_text()
                assert await asyncio.wait_for(anext(chunks), 5) == "[vmm heartbeat]\n"
                await rpc(http, "StopVm", {"id": vm_id})
                await rpc(http, "StartVm", {"id": vm_id})
                seen = ""
                while "boot progress: done" not in seen:
                    seen += await asyncio.wait_for(anext(chunks), 5)
                assert "===== boot @ " in seen
                assert "\x1b" not in seen
    finally:
        await sim.stop()


# ---- control API ---------------------------------------------------------------------------


async def test_control_api_over_http(vmm_sim: VmmSimulator, http: httpx.AsyncClient) -> None:
    assert (await http.post("/_sim/fail", json={"method": "CreateVm", "count": 2})).is_success
    assert await rpc_error(http, "CreateVm", vm_body()) == "simulated failure"
    assert await rpc_error(http, "CreateVm", vm_body()) == "simulated failure"
    vm_id = (await rpc(http, "CreateVm", vm_body("first")))["id"]

    await http.post("/_sim/boot", json={"seconds": 30, "name_contains": "slow"})
    slow_id = (await rpc(http, "CreateVm", vm_body("slow-one")))["id"]
    assert (await info_of(http, slow_id))["boot_progress"] != "done"
    await http.post("/_sim/evaluator", json={"latency_s": 0.01})
    assert (await http.post("/_sim/crash", json={"id": vm_id})).is_success
    assert (await http.post("/_sim/crash", json={"id": "nope"})).status_code == 404
    assert (await http.post("/_sim/fail", json={})).status_code == 400

    vms = (await http.get("/_sim/vms")).json()
    assert [(vm["name"], vm["status"], vm["created"]) for vm in vms] == [
        ("first", "exited", 1),
        ("slow-one", "running", 2),
    ]
    stats = (await http.get("/_sim/stats")).json()
    assert stats["CreateVm"] == 4
    assert stats["vms_created"] == 2
    assert stats["GetInfo"] == 1


@pytest.mark.parametrize("method", ["StartVm", "GetInfo"])
async def test_fail_next_in_process(vmm_sim: VmmSimulator, method: str) -> None:
    vmm_sim.fail_next(method, error="disk on fire")
    async with httpx.AsyncClient(base_url=vmm_sim.url) as http:
        assert await rpc_error(http, method, {"id": "x"}) == "disk on fire"
        assert vmm_sim.stats[method] == 1


async def test_fail_next_only_for_matching_names(vmm_sim: VmmSimulator) -> None:
    vmm_sim.fail_next("CreateVm", error="out of memory", name_contains="-job-")
    async with httpx.AsyncClient(base_url=vmm_sim.url) as http:
        created = await rpc(http, "CreateVm", vm_body("vt-5Grwva-ch-a", ports=[]))
        assert created["id"]
        assert await rpc_error(http, "CreateVm", vm_body(ports=[])) == "out of memory"
        assert (await rpc(http, "CreateVm", vm_body(ports=[])))["id"]


async def test_restart_empty_forgets_every_vm(vmm_sim: VmmSimulator) -> None:
    async with httpx.AsyncClient(base_url=vmm_sim.url) as http:
        for name in ("vt-5Grwva-ch-a", "vt-5Grwva-job-1"):
            await rpc(http, "CreateVm", vm_body(name, ports=[]))
        assert vmm_sim.restart_empty() == 2
        assert (await rpc(http, "Status", {}))["vms"] == []
        assert vmm_sim.vms() == []


async def test_outage_empty_is_a_host_reboot_on_the_same_address(vmm_sim: VmmSimulator) -> None:
    """`/_sim/outage {empty}`: refuses connections, then answers on the same URL without VMs."""
    async with httpx.AsyncClient(base_url=vmm_sim.url) as http:
        await rpc(http, "CreateVm", vm_body("vt-5Grwva-ch-a", ports=[]))
        answer = await http.post("/_sim/outage", json={"seconds": 0.3, "empty": True})
        assert answer.json() == {"ok": True, "down_for_s": 0.3}
        deadline = asyncio.get_running_loop().time() + 5
        while vmm_sim.serving and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        with pytest.raises(httpx.ConnectError):
            await http.post("/prpc/Status?json", json={})
        while not vmm_sim.serving and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        assert (await rpc(http, "Status", {}))["vms"] == []
