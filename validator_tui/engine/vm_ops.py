"""VM operations shared by challenge CVMs and job VMs: their configuration and their removal,
on the host that holds them."""

from __future__ import annotations

import asyncio
import json
import re
import time

from validator_tui.clients.backoff import Backoff
from validator_tui.clients.errors import ClientError, VmmError, is_transient
from validator_tui.config import VmSpec
from validator_tui.engine.context import EngineContext
from validator_tui.engine.hosts import Host
from validator_tui.engine.quota import Allocation
from validator_tui.models.vmm import GpuConfig, GpuSpec, PortMapping, VmConfiguration

REMOVE_ATTEMPTS = 3
#: How long a removal keeps trying while the VMM does not answer.
REMOVE_WITHIN_S = 10.0


def vm_configuration(
    host: Host,
    spec: VmSpec,
    name: str,
    compose: bytes,
    allocation: Allocation,
    env: dict[str, str],
) -> VmConfiguration:
    """CreateVm's request: the verified compose, `spec`'s resources, one port to the evaluator
    (from `host`'s pool), the GPU slots `allocation` holds (`gpus` omitted when none), and the
    env as `user_config` JSON (`{"env": {…}}`)."""
    ports = host.ports
    gpus = None
    if allocation.gpu_slots:
        gpus = GpuConfig(
            attach_mode="listed", gpus=[GpuSpec(slot=slot) for slot in allocation.gpu_slots]
        )
    return VmConfiguration(
        name=name,
        image=spec.image,
        compose_file=compose.decode("utf-8"),
        vcpu=spec.vcpu,
        memory=spec.memory_mb,
        disk_size=spec.disk_gb,
        ports=[
            PortMapping(
                protocol="tcp",
                host_port=allocation.port or 0,
                vm_port=ports.evaluator_port,
                host_address=ports.host_address,
            )
        ],
        user_config=json.dumps({"env": env}),
        gpus=gpus,
    )


async def find_vms_named(host: Host, name: str) -> list[str]:
    """Ids of the VMs on `host` (not being removed) whose name is exactly `name`, oldest
    first."""
    listing = await host.vmm.status(keyword=name, brief=True)
    return [vm.id for vm in listing.vms if vm.name == name and vm.status != "removing"]


async def remove_vm(
    ctx: EngineContext, host: Host, vm_id: str, *, within: float | None = None
) -> bool:
    """Remove the VM from `host`; True once it is gone (an unknown VM counts as gone).

    While the VMM does not answer (no answer, 5xx) it is retried with backoff for up to
    `within` seconds (default REMOVE_WITHIN_S; one attempt when the host is down); a refusal
    is retried REMOVE_ATTEMPTS times. On lasting failure the error is logged and False
    returned (the reconciler or the next start removes the VM).
    """
    if within is None:
        within = 0.0 if host.down else REMOVE_WITHIN_S
    deadline = time.monotonic() + within
    backoff = Backoff(0.1, 2.0)
    attempt = 0
    while True:
        attempt += 1
        try:
            await host.vmm.remove_vm(vm_id)
        except ClientError as exc:
            if "not found" in str(exc).lower():
                break
            delay = backoff.next()
            gave_up = not is_transient(exc) and attempt >= REMOVE_ATTEMPTS
            if gave_up or time.monotonic() + delay > deadline:
                ctx.log("error", "vm", f"cannot remove VM {vm_id}: {exc}", vm_id=vm_id)
                return False
            await asyncio.sleep(delay)
        else:
            break
    ctx.state.drop_vm(vm_id)
    return True


#: How long a host port another program holds is handed to no VM.
PORT_ASIDE_S = 600.0
#: QEMU's words when a VM's host port forwarding cannot be set up (dstack's VMM passes them on):
#: `Could not set up host forwarding rule 'tcp:127.0.0.1:20001-:8080'`.
_HOSTFWD_RULE = re.compile(r"Could not set up host forwarding rule '(?:tcp|udp):[^:']*:(\d+)-")


def taken_port(exc: Exception, allocation: Allocation) -> int | None:
    """The host port of `allocation` when `exc` says the VMM could not forward it (another
    program holds it); None for any other failure."""
    if not isinstance(exc, VmmError) or allocation.port is None:
        return None
    match = _HOSTFWD_RULE.search(str(exc))
    if match is None or int(match.group(1)) != allocation.port:
        return None
    return allocation.port


async def set_port_aside(ctx: EngineContext, host: Host, name: str, port: int) -> None:
    """Another program holds `port` on `host`: no VM gets it for PORT_ASIDE_S, and the VM
    named `name` that could not start with it is removed if the VMM kept it (a VM of that name
    the engine knows, such as the CVM a rebuild replaces, is left alone)."""
    host.quota.set_aside(port, PORT_ASIDE_S)
    where = f" on host {host.name}" if ctx.hosts.several else ""
    minutes = PORT_ASIDE_S / 60
    ctx.log(
        "warn",
        "quota",
        f"host port {port}{where} is in use by another program: "
        f"no VM gets it for {minutes:g} min; {name} tries another",
    )
    try:
        for vm_id in await find_vms_named(host, name):
            if vm_id not in ctx.state.vms:
                await remove_vm(ctx, host, vm_id)
    except ClientError as exc:
        ctx.log("warn", "vm", f"cannot look for {name} to remove it: {exc}")
