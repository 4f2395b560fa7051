"""What every engine component shares: config, state, store, quota, clients, health, tasks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Unpack

import httpx

from validator_tui.clients.platform import PlatformClient
from validator_tui.clients.vmm import VmmClient
from validator_tui.config import ValidatorConfig
from validator_tui.engine.events import log_event
from validator_tui.engine.health import ServerHealth
from validator_tui.engine.naming import VmNaming
from validator_tui.engine.quota import CVMQuotaManager
from validator_tui.engine.records import EventRefs
from validator_tui.engine.state import EngineState
from validator_tui.engine.store import Store
from validator_tui.engine.tasks import TaskRegistry
from validator_tui.engine.vm_ready import VmWatcher


@dataclass(slots=True)
class EngineContext:
    config: ValidatorConfig
    state: EngineState
    store: Store
    quota: CVMQuotaManager
    platform: PlatformClient
    vmm: VmmClient
    http: httpx.AsyncClient
    naming: VmNaming
    tasks: TaskRegistry
    platform_health: ServerHealth
    vmm_health: ServerHealth
    watcher: VmWatcher

    def log(self, level: str, kind: str, message: str, **refs: Unpack[EventRefs]) -> None:
        """Record an event in the state's event log and the process log, sanitised."""
        log_event(self.state, level, kind, message, **refs)

    def publish_quota(self) -> None:
        """Copy the quota manager's usage into the header the UI reads."""
        self.state.header.quota = self.quota.get_usage()
        self.state.header_changed()
