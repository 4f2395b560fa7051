"""Both simulators on free loopback ports plus a config pointing at them: the demo and the
tests use this to run the real engine end to end."""

from __future__ import annotations

import random
import socket
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from validator_tui.config import (
    EngineSettings,
    HostPorts,
    ResourceLimits,
    ValidatorConfig,
    VmSpec,
)
from validator_tui.engine.validator import Validator
from validator_tui.sim.platform import PlatformSimulator
from validator_tui.sim.vmm import VmmSimulator

DEMO_HOTKEY = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"


def find_free_port_range(size: int, rng: random.Random | None = None) -> tuple[int, int]:
    """A run of `size` consecutive loopback ports that are free now, below the ephemeral range."""
    rng = rng or random.Random()
    for _ in range(200):
        start = rng.randrange(20000, 32000 - size)
        if all(_port_free(p) for p in range(start, start + size)):
            return start, start + size - 1
    raise RuntimeError(f"no run of {size} free loopback ports found")


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
    ) -> None:
        self.platform = PlatformSimulator(seed=seed, challenges=challenges)
        self.vmm = VmmSimulator(boot_seconds=boot_seconds, seed=seed)
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
        self._rng = random.Random(seed)
        self.config: ValidatorConfig | None = None

    async def __aenter__(self) -> DemoEnvironment:
        await self.platform.start()
        await self.vmm.start()
        self.vmm.set_evaluator(latency_s=self._evaluator_latency_s)
        if self._state_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="validator-tui-demo-")
            self._state_dir = self._tmp.name
        self.config = self.make_config(self._hotkey, self._state_dir)
        self.platform.set_job_rate(self._jobs_per_minute)
        return self

    def make_config(self, hotkey: str, state_dir: str | Path) -> ValidatorConfig:
        """A config for one validator (own hotkey, state dir and host-port range)."""
        start, end = find_free_port_range(self._port_pool, self._rng)
        engine = {
            "auto_claim": self._auto_claim,
            "poll_interval_s": 2.0,
            "challenge_check_interval_s": 10.0,
            "boot_timeout_s": 30.0,
            "job_timeout_s": 60.0,
            "vm_poll_interval_s": 0.25,
            "request_timeout_s": 5.0,
            "ws_backoff_cap_s": 5.0,
        } | self._engine
        return ValidatorConfig(
            validator_hotkey=hotkey,
            platform_api_url=self.platform.url,
            dstack_vmm_url=self.vmm.url,
            state_dir=str(state_dir),
            resource_limits=self._limits,
            engine=EngineSettings(**engine),
            job_vm=VmSpec(vcpu=2, memory_mb=2048, disk_gb=10),
            challenge_vm=VmSpec(vcpu=2, memory_mb=2048, disk_gb=20),
            host_ports=HostPorts(start=start, end=end),
        )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.platform.stop()
        await self.vmm.stop()
        if self._tmp is not None:
            self._tmp.cleanup()


def build_validator(config: ValidatorConfig, *, read_only: bool = False) -> Validator:
    """The engine for `config` (not started: `await validator.run()`)."""
    return Validator(config, read_only=read_only)
