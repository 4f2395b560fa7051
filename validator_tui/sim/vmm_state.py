"""The simulated VMM's VMs and the pRPC methods acting on them (spec §2-§4).

Each VM's evaluator port is reserved (bound) when the VM is created or started, served once
boot progress reaches `done`, and released when the process stops, crashes or is removed.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from validator_tui.models.vmm import StatusRequest
from validator_tui.sim.evaluator import EvaluatorServer, bind_port
from validator_tui.sim.vmm_logs import rfc3339_now
from validator_tui.sim.vmm_validate import (
    SimVmmError,
    app_id_for,
    check_compose,
    check_name,
    check_resources,
    echo_configuration,
    normalise_ports,
    parse_config,
    sha256_hex,
)
from validator_tui.sim.vmm_vm import BOOT_STAGES, STALL_STAGE, BootPlan, SimVm

VERSION = "0.6.0"
_IMAGE_VERSIONS = ("0.5.2", "0.5.8")
#: The simulated GPUs: NVIDIA H100s (vendor 10de) on PCI slots like a real 8-GPU host's.
GPU_PRODUCT = "10de:2330"
GPU_DESCRIPTION = "3D controller: NVIDIA Corporation GH100 [H100 SXM5 80GB] (simulated)"


def gpu_slots(count: int) -> list[str]:
    """PCI slots of `count` simulated GPUs: `18:00.0`, `2a:00.0`, …"""
    return [f"{0x18 + 0x12 * index:02x}:00.0" for index in range(count)]


Handler = Callable[[dict[str, Any]], Awaitable[Any]]


def _image_metadata(version: str) -> dict[str, Any]:
    return {
        "cmdline": "console=ttyS0 init=/init panic=1 net.ifnames=0 biosdevname=0",
        "kernel": "bzImage",
        "initrd": "initramfs.cpio.gz",
        "rootfs": "rootfs.img.verity",
        "bios": "ovmf.fd",
        "version": version,
        "is_dev": False,
        "shared_ro": True,
    }


IMAGES = {f"dstack-{version}": _image_metadata(version) for version in _IMAGE_VERSIONS}


class BootRules:
    """Boot plans for VMs created from now on: a default plus name-matched overrides."""

    def __init__(self, seconds: float) -> None:
        self.default = BootPlan(seconds)
        self._rules: list[tuple[str, BootPlan]] = []

    def set(self, *, seconds: float | None, never: bool, name_contains: str) -> None:
        """Without `name_contains` replace the default (and drop overrides); else add one."""
        plan = BootPlan(self.default.seconds if seconds is None else seconds, never)
        if name_contains:
            self._rules.append((name_contains, plan))
        else:
            self.default = plan
            self._rules.clear()

    def plan_for(self, name: str) -> BootPlan:
        """The newest matching override, else the default."""
        for needle, plan in reversed(self._rules):
            if needle in name:
                return plan
        return self.default


class VmmState:
    """All VMs of one simulator plus the knobs tests turn."""

    def __init__(
        self,
        *,
        boot_seconds: float,
        port_mapping_enabled: bool,
        max_vms: int,
        max_vcpu: int,
        max_memory_mb: int,
        removing_seconds: float,
        shutdown_seconds: float,
        seed: int,
        gpus: int = 0,
    ) -> None:
        self.gpu_slots = gpu_slots(gpus)
        self.port_mapping_enabled = port_mapping_enabled
        self.max_vms = max_vms
        self.max_vcpu = max_vcpu
        self.max_memory_mb = max_memory_mb
        self.removing_seconds = removing_seconds
        self.shutdown_seconds = shutdown_seconds
        self.boot = BootRules(boot_seconds)
        self.evaluator_latency_s = 0.0
        self.health_latency_s = 0.0
        self.vms: dict[str, SimVm] = {}
        self.stats: Counter[str] = Counter()
        self._seed = seed
        self._names_seen: Counter[str] = Counter()
        self._created = 0
        self._cleanups: set[asyncio.Task[None]] = set()
        self.methods: dict[str, Handler] = {
            "CreateVm": self.create_vm,
            "StartVm": self.start_vm,
            "StopVm": self.stop_vm,
            "ShutdownVm": self.shutdown_vm,
            "RemoveVm": self.remove_vm,
            "GetInfo": self.get_info,
            "Status": self.status,
            "GetMeta": self.get_meta,
            "Version": self.version,
            "ListImages": self.list_images,
            "ListGpus": self.list_gpus,
            "GetComposeHash": self.get_compose_hash,
        }

    # ---- lifecycle -------------------------------------------------------------------------

    def _vm(self, body: dict[str, Any], action: str) -> SimVm:
        vm = self.vms.get(str(body.get("id", "")))
        if vm is None:
            raise SimVmmError(f"Failed to {action} VM: VM not found")
        return vm

    def _reserve_ports(self, vm: SimVm) -> None:
        """Bind every TCP host port of `vm` now, or fail the way QEMU's hostfwd does."""
        for host_port, vm_port in vm.tcp_ports:
            try:
                vm.sockets.append(bind_port(host_port))
            except OSError as exc:
                self._release(vm)
                rule = f"tcp:127.0.0.1:{host_port}-:{vm_port}"
                raise SimVmmError(
                    f"Failed to start VM {vm.id}: Could not set up host forwarding rule "
                    f"'{rule}': {exc.strerror or exc}"
                ) from exc

    def _release(self, vm: SimVm) -> None:
        """Stop serving and free the VM's ports, hung evaluator connections included."""
        for server in vm.evaluators:
            server.close()
        for sock in vm.sockets:
            sock.close()
        vm.evaluators.clear()
        vm.sockets.clear()

    def _check_gpus_free(self, vm: SimVm) -> None:
        """Refuse to start `vm` with a GPU that is not this host's or that a running VM holds
        (QEMU cannot open a VFIO device another VM has open)."""
        for slot in vm.gpu_slots:
            if slot not in self.gpu_slots:
                raise SimVmmError(f"Failed to start VM: GPU {slot} is not a GPU of this host")
            holder = next(
                (
                    o
                    for o in self.vms.values()
                    if o is not vm and o.holds_gpus and slot in o.gpu_slots
                ),
                None,
            )
            if holder is not None:
                raise SimVmmError(
                    f"Failed to start VM: vfio {slot}: device or resource busy (GPU {slot} is "
                    f"already attached to VM {holder.id})"
                )

    async def _launch(self, vm: SimVm) -> None:
        """Start the fake process and the boot (finished inline when it takes no time)."""
        if vm.process_running:
            self._kill(vm, "restart")
        self._check_gpus_free(vm)
        self._reserve_ports(vm)
        vm.generation += 1
        vm.started = True
        vm.process_running = True
        vm.started_at = time.monotonic()
        vm.boot_error = ""
        vm.shutdown_progress = ""
        vm.serial.write(f"===== boot @ {rfc3339_now()} =====")
        vm.logs["stdout"].write(f"qemu-system-x86_64: VM {vm.id} started (simulated)")
        vm.set_progress("booting")
        if vm.plan.seconds <= 0 and not vm.plan.never:
            for stage in BOOT_STAGES[:-1]:
                vm.set_progress(stage)
            await self._boot_done(vm, vm.generation)
        else:
            vm.task = asyncio.create_task(self._boot(vm, vm.generation))

    async def _boot(self, vm: SimVm, generation: int) -> None:
        step = vm.plan.seconds / len(BOOT_STAGES)
        for stage in BOOT_STAGES[:-1]:
            await asyncio.sleep(step)
            vm.set_progress(stage)
            if vm.plan.never and stage == STALL_STAGE:
                await asyncio.get_running_loop().create_future()
        await asyncio.sleep(step)
        await self._boot_done(vm, generation)

    async def _boot_done(self, vm: SimVm, generation: int) -> None:
        """Serve the evaluator on the reserved ports, then report `done`."""
        sockets, vm.sockets = vm.sockets, []
        servers = [
            EvaluatorServer(
                sock,
                log=vm.console,
                latency_s=lambda: self.evaluator_latency_s,
                health_latency_s=lambda: self.health_latency_s,
                count=self.count,
            )
            for sock in sockets
        ]
        # Every server is in the VM's list before the first await: a VM killed meanwhile
        # closes them all.
        vm.evaluators.extend(servers)
        for server in servers:
            await server.start()
        if vm.generation != generation or not vm.process_running:
            self._release(vm)
            return
        if vm.instance_id is None:
            vm.instance_id = self._vm_rng(vm.id).getrandbits(160).to_bytes(20, "big").hex()
        vm.set_progress("done")

    def count(self, what: str) -> None:
        """Count one request served for a VM (its evaluator's `/health`, `/evaluate`)."""
        self.stats[what] += 1

    def _vm_rng(self, key: str) -> random.Random:
        """Randomness for one VM, from (seed, key, how often key was seen): VM ids do not
        depend on the order in which concurrent CreateVm calls arrive."""
        self._names_seen[key] += 1
        return random.Random(f"dstack-vmm-{self._seed}-{key}-{self._names_seen[key]}")

    def _kill(self, vm: SimVm, why: str) -> None:
        """End the fake process (cancelling its boot/shutdown task) and free its ports."""
        vm.generation += 1
        if vm.task is not None and vm.task is not asyncio.current_task():
            vm.task.cancel()
        vm.task = None
        self._release(vm)
        if vm.process_running:
            vm.process_running = False
            vm.stopped_at = time.monotonic()
            vm.logs["stdout"].write(f"qemu-system-x86_64: terminated ({why})")
            vm.event("vmm.process.exited", why)

    def crash(self, vm_id: str, boot_error: str = "") -> None:
        """Make a VM's process die on its own (status `exited`), with an optional boot error."""
        vm = self.vms.get(vm_id)
        if vm is None or vm.removing:
            raise KeyError(vm_id)
        if boot_error:
            vm.boot_error = boot_error
            vm.event("boot.error", boot_error)
            vm.console(f"dstack-util: boot error: {boot_error}")
        self._kill(vm, "crashed")

    def forget_all(self) -> int:
        """A VMM restart that lost its state: every VM is killed and forgotten (its ports
        freed, its log streams ended). Returns how many VMs there were."""
        count = len(self.vms)
        for vm in list(self.vms.values()):
            self._kill(vm, "VMM restarted")
            for log in vm.logs.values():
                log.close()
        self.vms.clear()
        self.stats["restarts"] += 1
        return count

    def close(self) -> None:
        """Kill every VM and end every log stream (the simulator is going away)."""
        for task in self._cleanups:
            task.cancel()
        for vm in self.vms.values():
            self._kill(vm, "simulator stopped")
            for log in vm.logs.values():
                log.close()

    # ---- pRPC methods ----------------------------------------------------------------------

    async def create_vm(self, body: dict[str, Any]) -> dict[str, Any]:
        config = parse_config(body, self.gpu_slots)
        check_name(config.name)
        ports = normalise_ports(config, self.port_mapping_enabled)
        check_resources(config)
        self._check_port_conflicts(ports)
        if sum(not vm.removing for vm in self.vms.values()) >= self.max_vms:
            raise SimVmmError(f"Failed to load VM: Too many VMs (max_cvm_number={self.max_vms})")
        image = IMAGES.get(config.image)
        if image is None:
            raise SimVmmError(f"Failed to load VM: Failed to load image: {config.image} not found")
        check_compose(config.compose_file)
        app_id = app_id_for(config)
        rng = self._vm_rng(config.name)
        vm_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        mac = "02:" + ":".join(f"{rng.getrandbits(8):02x}" for _ in range(5))
        self._created += 1
        vm = SimVm(
            id=vm_id,
            name=config.name,
            app_id=app_id,
            image_version=image["version"],
            configuration=echo_configuration(config, ports, app_id),
            created=self._created,
            plan=self.boot.plan_for(config.name),
            mac=mac,
        )
        if not config.stopped:
            await self._launch(vm)
        self.vms[vm_id] = vm
        self.stats["vms_created"] += 1
        return {"id": vm_id}

    def _check_port_conflicts(self, ports: list[dict[str, Any]]) -> None:
        used = {
            (port["protocol"], port["host_port"]): vm
            for vm in self.vms.values()
            if not vm.removing
            for port in vm.configuration["ports"]
        }
        for port in ports:
            other = used.get((port["protocol"], port["host_port"]))
            if other is not None:
                raise SimVmmError(
                    f"Port conflict: {port['protocol']}:{port['host_port']} "
                    f"is already mapped by VM {other.id}"
                )

    async def start_vm(self, body: dict[str, Any]) -> None:
        vm = self._vm(body, "start")
        if vm.removing:
            raise SimVmmError(f"Failed to start VM: VM {vm.id} is being removed")
        if vm.started and vm.process_running:
            return
        await self._launch(vm)

    async def stop_vm(self, body: dict[str, Any]) -> None:
        vm = self._vm(body, "stop")
        vm.started = False
        self._kill(vm, "killed")

    async def shutdown_vm(self, body: dict[str, Any]) -> None:
        vm = self._vm(body, "shutdown")
        if not vm.process_running or vm.removing:
            raise SimVmmError(f"Failed to shutdown VM: guest agent unreachable: VM {vm.id}")
        if not vm.started:
            return
        vm.started = False
        vm.shutdown_progress = "powering off"
        vm.event("shutdown.progress", "powering off")
        vm.console("dstack-util: shutdown progress: powering off")
        if vm.task is not None:
            vm.task.cancel()
        for server in vm.evaluators:
            server.close()
        vm.evaluators.clear()
        vm.task = asyncio.create_task(self._power_off(vm))

    async def _power_off(self, vm: SimVm) -> None:
        await asyncio.sleep(self.shutdown_seconds)
        self._kill(vm, "powered off")

    async def remove_vm(self, body: dict[str, Any]) -> None:
        vm = self._vm(body, "remove")
        if vm.removing:
            return
        vm.removing = True
        self._kill(vm, "removed")
        if self.removing_seconds <= 0:
            self._forget(vm)
            return
        task = asyncio.create_task(self._remove_later(vm))
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    async def _remove_later(self, vm: SimVm) -> None:
        await asyncio.sleep(self.removing_seconds)
        self._forget(vm)

    def _forget(self, vm: SimVm) -> None:
        self.vms.pop(vm.id, None)
        for log in vm.logs.values():
            log.close()
        self.stats["vms_removed"] += 1

    async def get_info(self, body: dict[str, Any]) -> dict[str, Any]:
        vm = self.vms.get(str(body.get("id", "")))
        if vm is None:
            return {"found": False, "info": None}
        return {"found": True, "info": vm.info(brief=False)}

    async def status(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            request = StatusRequest.model_validate(body)
        except ValueError as exc:
            raise SimVmmError(f"Failed to decode request: {exc}") from exc
        wanted = set(request.ids)
        keyword = request.keyword
        selected = [
            vm
            for vm in sorted(self.vms.values(), key=lambda vm: vm.created)
            if (not wanted or vm.id in wanted)
            and (
                not keyword
                or any(
                    keyword in text
                    for text in (vm.name, vm.id, vm.app_id, vm.configuration["image"])
                )
            )
        ]
        total = len(selected)
        if request.page > 0 and request.page_size > 0:
            start = (request.page - 1) * request.page_size
            selected = selected[start : start + request.page_size]
        return {
            "vms": [vm.info(brief=request.brief) for vm in selected],
            "port_mapping_enabled": self.port_mapping_enabled,
            "total": total,
        }

    async def get_meta(self, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "kms": {"url": "", "urls": []},
            "gateway": {"url": "", "base_domain": "", "port": 0, "agent_port": 0, "urls": []},
            "resources": {
                "max_cvm_number": self.max_vms,
                "max_allocable_vcpu": self.max_vcpu,
                "max_allocable_memory_in_mb": self.max_memory_mb,
            },
            "networking": {
                "supported_modes": ["user"],
                "default_mode": "user",
                "default_bridge": "",
            },
        }

    async def version(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"version": VERSION, "rev": "simulated"}

    async def list_images(self, body: dict[str, Any]) -> dict[str, Any]:
        images = [
            {
                "name": name,
                "description": json.dumps(meta),
                "version": meta["version"],
                "is_dev": meta["is_dev"],
            }
            for name, meta in IMAGES.items()
        ]
        return {"images": images}

    async def list_gpus(self, body: dict[str, Any]) -> dict[str, Any]:
        held = {slot for vm in self.vms.values() if vm.holds_gpus for slot in vm.gpu_slots}
        gpus = [
            {
                "slot": slot,
                "product_id": GPU_PRODUCT,
                "description": GPU_DESCRIPTION,
                "is_free": slot not in held,
            }
            for slot in self.gpu_slots
        ]
        return {"gpus": gpus, "allow_attach_all": False}

    async def get_compose_hash(self, body: dict[str, Any]) -> dict[str, Any]:
        config = parse_config(body, self.gpu_slots)
        check_name(config.name)
        check_compose(config.compose_file)
        return {"hash": sha256_hex(config.compose_file)}

    # ---- inspection ------------------------------------------------------------------------

    def summary(self) -> list[dict[str, Any]]:
        """Every VM in creation order: id, name, status, boot_progress, host_ports, created."""
        return [
            {
                "id": vm.id,
                "name": vm.name,
                "status": vm.status,
                "boot_progress": vm.boot_progress,
                "host_ports": [port["host_port"] for port in vm.configuration["ports"]],
                "created": vm.created,
            }
            for vm in sorted(self.vms.values(), key=lambda vm: vm.created)
        ]
