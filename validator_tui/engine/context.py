"""What every engine component shares: config, state, store, hosts, clients, health, tasks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Unpack

import httpx

from validator_tui.clients.platform import PlatformClient
from validator_tui.config import ValidatorConfig
from validator_tui.engine.events import log_event
from validator_tui.engine.health import ServerHealth
from validator_tui.engine.hosts import HostPool
from validator_tui.engine.naming import VmNaming
from validator_tui.engine.state import EngineState
from validator_tui.engine.store import Store
from validator_tui.engine.tasks import TaskRegistry
from validator_tui.shared.records import EventRefs


@dataclass(slots=True)
class EngineContext:
    config: ValidatorConfig
    state: EngineState
    store: Store
    #: The dstack hosts: each with its VMM client, health, quota and boot watcher.
    hosts: HostPool
    platform: PlatformClient
    http: httpx.AsyncClient
    naming: VmNaming
    tasks: TaskRegistry
    platform_health: ServerHealth

    def log(self, level: str, kind: str, message: str, **refs: Unpack[EventRefs]) -> None:
        """Record an event in the state's event log and the process log, sanitised."""
        log_event(self.state, level, kind, message, **refs)

    def publish_quota(self) -> None:
        """Copy the hosts' usage into the header and the host records the UI reads."""
        self.hosts.publish()
