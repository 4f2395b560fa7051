"""The simulators on free loopback ports (a Platform API, and one dstack VMM per host) plus a
config pointing at them: the demo and the tests use this to run the real engine end to end.
With several hosts the config uses `[[hosts]]` (`h1`, `h2`, …), each with its own port range;
some of them may be reached over a unix socket, as dstack's VMM listens by default."""

from __future__ import annotations

import os
import random
import shutil
import socket
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from validator_tui.config import (
    EngineSettings,
    HostConfig,
    HostPorts,
    ResourceLimits,
    ValidatorConfig,
    VmSpec,
)
from validator_tui.engine.validator import Validator
from validator_tui.sim.platform import PlatformSimulator
from validator_tui.sim.vmm import VmmSimulator

DEMO_HOTKEY = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"


#: The default band of the demos' host ports.
DEMO_PORTS = (20000, 32000)


def demo_port_band() -> tuple[int, int]:
    """The band demos take host ports from: `$VALIDATOR_TUI_DEMO_PORTS` ("LOW-HIGH"), so demos
    running side by side (parallel test workers, several operators) can be kept apart."""
    low, _, high = os.environ.get("VALIDATOR_TUI_DEMO_PORTS", "").partition("-")
    if low.isdigit() and high.isdigit() and 1024 <= int(low) < int(high) <= 65535:
        return int(low), int(high)
    return DEMO_PORTS


def find_free_port_range(size: int, avoid: list[tuple[int, int]] | None = None) -> tuple[int, int]:
    """A run of `size` consecutive loopback ports that are free now, within the demo port band
    (and outside the ranges in `avoid`)."""
    low, high = demo_port_band()
    for _ in range(200):
        start = random.randrange(low, max(low + 1, high - size))
        end = start + size - 1
        if any(start <= b and a <= end for a, b in avoid or []):
            continue
        if all(_port_free(p) for p in range(start, start + size)):
            return start, end
    raise RuntimeError(f"no run of {size} free loopback ports found")


def host_name(index: int) -> str:
    """The name of the demo's host number `index` (from 0): `h1`, `h2`, …"""
    return f"h{index + 1}"


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class DemoEnvironment:
    """Platform API + dstack VMM simulators on loopback and a `ValidatorConfig` for them."""

    def __init__(
        self,
        *,
        seed: int = 0,
        jobs_per_minute: float = 30.0,
        boot_seconds: float = 2.0,
        challenges: int = 3,
        state_dir: str | None = None,
        hotkey: str = DEMO_HOTKEY,
        auto_claim: bool = True,
        resource_limits: ResourceLimits | None = None,
        engine: dict[str, Any] | None = None,
        port_pool: int = 200,
        evaluator_latency_s: float = 0.0,
        hosts: int = 1,
        unix_hosts: int = 0,
        gpus: int = 0,
        pending_limit: int = 100,
    ) -> None:
        if not 1 <= hosts <= 16 or not 0 <= unix_hosts <= hosts:
            raise ValueError("hosts must be 1..16 and unix_hosts at most hosts")
        self.platform = PlatformSimulator(
            seed=seed, challenges=challenges, pending_limit=pending_limit
        )
        #: One VMM simulator per host (their seeds differ, so do their VM ids), `gpus` each.
        self.vmms = [
            VmmSimulator(boot_seconds=boot_seconds, seed=seed + 1000 * index, gpus=gpus)
            for index in range(hosts)
        ]
        self.vmm = self.vmms[0]
        self._unix_hosts = unix_hosts
        self._socket_dir: str | None = None
        self._evaluator_latency_s = evaluator_latency_s
        self._jobs_per_minute = jobs_per_minute
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._state_dir = state_dir
        self._hotkey = hotkey
        self._auto_claim = auto_claim
        self._limits = resource_limits or ResourceLimits(
            cpu_cores=32, memory_mb=65536, disk_mb=2_000_000, gpu_count=0
        )
        self._engine = engine or {}
        self._port_pool = port_pool
        #: The host-port ranges handed to validators so far: each validator's are its own (the
        #: ports are free when a range is picked, but another validator's VMs may take them).
        self._port_ranges: list[tuple[int, int]] = []
        self.config: ValidatorConfig | None = None

    async def __aenter__(self) -> DemoEnvironment:
        await self.platform.start()
        tcp_hosts = len(self.vmms) - self._unix_hosts
        for index, vmm in enumerate(self.vmms):
            if index < tcp_hosts:
                await vmm.start()
            else:
                if self._socket_dir is None:
                    # Short, whatever the state dir: a unix socket path has ~100 bytes at most.
                    self._socket_dir = tempfile.mkdtemp(prefix="vt-vmm-")
                await vmm.start_unix(f"{self._socket_dir}/{host_name(index)}.sock")
            vmm.set_evaluator(latency_s=self._evaluator_latency_s)
        if self._state_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="validator-tui-demo-")
            self._state_dir = self._tmp.name
        self.config = self.make_config(self._hotkey, self._state_dir)
        self.platform.set_job_rate(self._jobs_per_minute)
        return self

    def host_names(self) -> list[str]:
        """The hosts' names as the config gives them (`default` for one host)."""
        if len(self.vmms) == 1:
            return ["default"]
        return [host_name(index) for index in range(len(self.vmms))]

    def outage_hints(self) -> list[str]:
        """How to take a simulated host down and bring it back (its simulator's control API),
        one line per host; none with a single host."""
        if len(self.vmms) == 1:
            return []
        lines = []
        for name, vmm in zip(self.host_names(), self.vmms, strict=True):
            if vmm.url.startswith("unix:"):
                target = f"--unix-socket {vmm.url.removeprefix('unix:')} http://localhost"
            else:
                target = vmm.url
            lines.append(
                f"fail host {name} for 60 s (its CVMs move after the grace period): curl -X "
                f"POST {target}/_sim/outage -d '{{\"seconds\": 60}}'"
            )
        return lines

    def host_of(self, name: str) -> VmmSimulator:
        """The VMM simulator of the host named `name` (`h1`, `h2`, …)."""
        return self.vmms[int(name.removeprefix("h")) - 1]

    def make_config(self, hotkey: str, state_dir: str | Path) -> ValidatorConfig:
        """A config for one validator (own hotkey, state dir and host-port range(s))."""
        ranges: list[tuple[int, int]] = []
        for _ in self.vmms:
            # Not from the seed: two demos of one seed on a machine would pick the same ports.
            taken = self._port_ranges + ranges
            ranges.append(find_free_port_range(self._port_pool, avoid=taken))
        self._port_ranges.extend(ranges)
        start, end = ranges[0]
        engine = {
            "auto_claim": self._auto_claim,
            "poll_interval_s": 2.0,
            "challenge_check_interval_s": 10.0,
            "boot_timeout_s": 30.0,
            "job_timeout_s": 60.0,
            "vm_poll_interval_s": 0.25,
            "request_timeout_s": 5.0,
            "ws_backoff_cap_s": 5.0,
            # A simulated host outage shows its failover within seconds, not half a minute.
            "host_down_grace_s": 10.0,
        } | self._engine
        common: dict[str, Any] = {
            "validator_hotkey": hotkey,
            "platform_api_url": self.platform.url,
            "state_dir": str(state_dir),
            "engine": EngineSettings(**engine),
            "job_vm": VmSpec(vcpu=2, memory_mb=2048, disk_gb=10),
            "challenge_vm": VmSpec(vcpu=2, memory_mb=2048, disk_gb=20),
        }
        if len(self.vmms) == 1:
            return ValidatorConfig(
                **common,
                dstack_vmm_url=self.vmm.url,
                resource_limits=self._limits,
                host_ports=HostPorts(start=start, end=end),
            )
        hosts = [
            HostConfig(
                name=host_name(index),
                url=vmm.url,
                resource_limits=self._limits,
                host_ports=HostPorts(start=first, end=last),
            )
            for index, (vmm, (first, last)) in enumerate(zip(self.vmms, ranges, strict=True))
        ]
        return ValidatorConfig(**common, hosts=hosts)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.platform.stop()
        for vmm in self.vmms:
            await vmm.stop()
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
        if self._tmp is not None:
            self._tmp.cleanup()


def build_validator(config: ValidatorConfig, *, read_only: bool = False) -> Validator:
    """The engine for `config` (not started: `await validator.run()`)."""
    return Validator(config, read_only=read_only)
