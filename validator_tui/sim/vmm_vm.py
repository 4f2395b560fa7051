"""One simulated dstack VM: persisted `started` flag, fake process, boot progress, logs, info.

Status follows spec §3: `removing` overrides; otherwise started/process-running give
running / exited / stopping / stopped.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from validator_tui.sim.evaluator import EvaluatorServer
from validator_tui.sim.vmm_logs import CHANNELS, VmLog, rfc3339_now

BOOT_STAGES = (
    "init-script",
    "initializing data disk",
    "requesting app keys",
    "data disk ready",
    "setting up dstack-gateway",
    "setting up docker",
    "pre-launch",
    "starting containers",
    "done",
)
STALL_STAGE = "setting up docker"
_COLOURED_STAGES = {"setting up docker", "starting containers", "done"}
MAX_EVENTS = 20


def humantime(seconds: float) -> str:
    """A humantime-style duration at second precision, e.g. `1day 2h 3m 4s` or `0s`."""
    remaining = int(seconds)
    days, remaining = divmod(remaining, 86_400)
    hours, remaining = divmod(remaining, 3_600)
    minutes, secs = divmod(remaining, 60)
    parts = [f"{days}day" + ("s" if days > 1 else "")] if days else []
    parts += [f"{value}{unit}" for value, unit in ((hours, "h"), (minutes, "m")) if value]
    if secs or not parts:
        parts.append(f"{secs}s")
    return " ".join(parts)


@dataclass(frozen=True)
class BootPlan:
    """How a VM boots: over `seconds` through the guest stages, or stalling when `never`."""

    seconds: float
    never: bool = False


@dataclass
class SimVm:
    """State of one VM. `configuration` is the stored echo (CreateVm's request, normalised)."""

    id: str
    name: str
    app_id: str
    image_version: str
    configuration: dict[str, Any]
    created: int
    plan: BootPlan
    mac: str
    started: bool = False
    process_running: bool = False
    removing: bool = False
    boot_progress: str = ""
    boot_error: str = ""
    shutdown_progress: str = ""
    instance_id: str | None = None
    started_at: float | None = None
    stopped_at: float | None = None
    events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_EVENTS))
    logs: dict[str, VmLog] = field(default_factory=lambda: {ch: VmLog() for ch in CHANNELS})
    sockets: list[socket.socket] = field(default_factory=list)
    evaluators: list[EvaluatorServer] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    generation: int = 0

    @property
    def status(self) -> str:
        """The dstack status string."""
        if self.removing:
            return "removing"
        if self.started:
            return "running" if self.process_running else "exited"
        return "stopping" if self.process_running else "stopped"

    @property
    def gpu_slots(self) -> list[str]:
        """The GPU slots it was created with."""
        gpus = self.configuration.get("gpus") or {}
        return [str(gpu.get("slot", "")) for gpu in gpus.get("gpus", [])]

    @property
    def holds_gpus(self) -> bool:
        """Its process runs: its GPUs are attached (bus-mastering), not free."""
        return self.process_running and not self.removing

    @property
    def serial(self) -> VmLog:
        return self.logs["serial"]

    @property
    def tcp_ports(self) -> list[tuple[int, int]]:
        """(host_port, vm_port) of every TCP mapping."""
        return [
            (port["host_port"], port["vm_port"])
            for port in self.configuration["ports"]
            if port["protocol"] == "tcp"
        ]

    def event(self, name: str, body: str) -> None:
        """Record an event in the ring buffer (timestamp in ms)."""
        self.events.append({"event": name, "body": body, "timestamp": int(time.time() * 1000)})

    def set_progress(self, stage: str) -> None:
        """Move boot progress to `stage`, with an event and a serial line."""
        self.boot_progress = stage
        self.event("boot.progress", stage)
        mark = "\x1b[0;32m  OK  \x1b[0m" if stage in _COLOURED_STAGES else "  OK  "
        self.console(f"[{mark}] dstack-util: boot progress: {stage}")

    def console(self, text: str) -> None:
        """Write a timestamped line to the serial console."""
        self.serial.write(f"{rfc3339_now()} {text}")

    def info(self, *, brief: bool) -> dict[str, Any]:
        """The VmInfo JSON object (configuration null when `brief`)."""
        now = time.monotonic()
        uptime = (
            humantime(now - self.started_at)
            if self.process_running and self.started_at is not None
            else "never"
        )
        exited = (
            humantime(now - self.stopped_at)
            if not self.process_running and self.stopped_at is not None
            else "never"
        )
        configuration = None if brief else {**self.configuration, "stopped": not self.started}
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "uptime": uptime,
            "app_url": None,
            "app_id": self.app_id,
            "instance_id": self.instance_id,
            "configuration": configuration,
            "exited_at": exited,
            "boot_progress": self.boot_progress,
            "boot_error": self.boot_error,
            "shutdown_progress": self.shutdown_progress,
            "image_version": self.image_version,
            "events": list(self.events),
            "interfaces": [
                {
                    "mode": "user",
                    "backend": "slirp",
                    "mac": self.mac,
                    "bridge_name": None,
                    "netdev_id": "net0",
                }
            ],
        }
