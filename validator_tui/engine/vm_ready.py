"""Follow a VM from CreateVm to ready: GetInfo `running` + `boot_progress == "done"`, then
the evaluator's `GET /health` answers 200."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx

from validator_tui.clients.errors import ClientError
from validator_tui.clients.transport import send
from validator_tui.clients.vmm import VmmClient
from validator_tui.models.vmm import VmInfo

FAILED_STATUSES = frozenset({"exited", "stopped", "stopping", "removing"})
#: The evaluator's `/health` answer is a few bytes; more is refused (counts as not healthy).
MAX_HEALTH_BYTES = 64 * 1024


class VmNotReady(Exception):
    """The VM failed to boot, vanished, or did not get ready within the boot timeout."""


async def wait_until_ready(
    vmm: VmmClient,
    http: httpx.AsyncClient,
    vm_id: str,
    health_url: str,
    *,
    timeout: float,
    max_interval: float,
    on_info: Callable[[VmInfo], None] | None = None,
) -> float:
    """Return the seconds it took once the VM booted and its evaluator is healthy.

    Raises `VmNotReady` with the reason (boot_error text, status, or timeout).
    """
    started = time.monotonic()
    deadline = started + timeout
    interval = 0.005
    last = "no answer yet"
    while True:
        try:
            info = await vmm.get_info(vm_id)
        except ClientError as exc:
            info = None
            last = f"GetInfo failed: {exc}"
        else:
            if info is None:
                raise VmNotReady(f"VM lost: the VMM no longer has VM {vm_id} (while booting)")
            if on_info is not None:
                on_info(info)
            if info.boot_error:
                raise VmNotReady(f"boot error: {info.boot_error}")
            if info.status in FAILED_STATUSES:
                raise VmNotReady(f"VM is {info.status} while booting")
            last = f"status {info.status}, boot progress {info.boot_progress or 'none'}"
            if info.status == "running" and info.boot_progress == "done":
                break
        interval = await _pause(interval, max_interval, deadline, f"boot timed out ({last})")
    interval = 0.005
    while True:
        try:
            response = await send(
                http,
                "GET",
                health_url,
                "GET /health",
                deadline=max(0.5, max_interval),
                max_body=MAX_HEALTH_BYTES,
            )
            if response.status_code == 200:
                return time.monotonic() - started
            last = f"health answered HTTP {response.status_code}"
        except ClientError as exc:
            last = f"health check failed: {exc}"
        interval = await _pause(interval, max_interval, deadline, f"not healthy in time ({last})")


async def _pause(interval: float, max_interval: float, deadline: float, reason: str) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise VmNotReady(reason)
    await asyncio.sleep(min(interval, remaining))
    return min(interval * 2, max_interval)
