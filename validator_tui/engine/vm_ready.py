"""Follow VMs from CreateVm to ready: `running` + `boot_progress == "done"` (as dstack's own
tools define it), then the evaluator's `GET /health` answers 200.

Every booting VM is watched by one `VmWatcher`: one `Status` request (`ids`, brief) asks about
all of them at once, so a VMM with 50 VMs booting gets about one request per poll interval,
not 50. Each VM is asked about quickly at first (5 ms, doubling up to `vm_poll_interval_s`);
one answer serves every VM it names, and whichever VM is due next sets the next request.
Each answer is recorded in the engine's VM records (`EngineState.set_vm_status`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from validator_tui.clients.errors import ClientError
from validator_tui.clients.transport import send
from validator_tui.clients.vmm import VmmClient
from validator_tui.engine.state import EngineState
from validator_tui.engine.tasks import TaskRegistry
from validator_tui.models.vmm import VmInfo

FAILED_STATUSES = frozenset({"exited", "stopped", "stopping", "removing"})
#: The evaluator's `/health` answer is a few bytes; more is refused (counts as not healthy).
MAX_HEALTH_BYTES = 64 * 1024
#: First pause between two looks at a VM; it doubles up to the configured interval.
FIRST_INTERVAL_S = 0.005

InfoListener = Callable[[VmInfo], None]


class VmNotReady(Exception):
    """The VM failed to boot, vanished, or did not get ready within the boot timeout."""


@dataclass(slots=True)
class _Watch:
    booted: asyncio.Future[VmInfo]
    on_info: InfoListener | None
    #: What the VM is doing, for the reason it failed ("booting", "starting its evaluator").
    phase: str = "booting"
    interval: float = FIRST_INTERVAL_S
    due: float = 0.0
    last: str = "no answer yet"


class VmWatcher:
    """Watches booting VMs with one shared `Status` poll."""

    def __init__(
        self,
        vmm: VmmClient,
        http: httpx.AsyncClient,
        state: EngineState,
        tasks: TaskRegistry,
        *,
        max_interval: float,
    ) -> None:
        self.vmm = vmm
        self.http = http
        self.state = state
        self.tasks = tasks
        self.max_interval = max_interval
        self._watches: dict[str, _Watch] = {}
        self._poller: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    @property
    def watching(self) -> int:
        """How many VMs are being watched now."""
        return len(self._watches)

    async def wait_ready(
        self,
        vm_id: str,
        health_url: str,
        *,
        timeout: float,
        on_info: InfoListener | None = None,
    ) -> float:
        """Return the seconds it took once the VM booted and its evaluator is healthy.

        `on_info` hears every answer about the VM while it boots. Raises `VmNotReady` with the
        reason (boot_error text, status, VM lost, or the timeout and what was seen last); a VM
        that goes away while its evaluator is not answering yet is reported at once.
        """
        started = time.monotonic()
        deadline = started + timeout
        await self._booted(vm_id, deadline, on_info)
        interval = FIRST_INTERVAL_S
        last = "no answer yet"
        while True:
            try:
                response = await send(
                    self.http,
                    "GET",
                    health_url,
                    "GET /health",
                    # One poll may take what is left of the boot time (a slow evaluator
                    # answering /health in seconds is healthy), never less than half a second.
                    deadline=max(0.5, deadline - time.monotonic()),
                    max_body=MAX_HEALTH_BYTES,
                )
                if response.status_code == 200:
                    return time.monotonic() - started
                last = f"health answered HTTP {response.status_code}"
            except ClientError as exc:
                last = f"health check failed: {exc}"
                # An evaluator that does not answer at all may have no VM any more (removed,
                # crashed): the shared Status poll says so now, not at the boot timeout.
                await self._booted(vm_id, deadline, on_info, "starting its evaluator")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise VmNotReady(f"not healthy in time ({last})")
            await asyncio.sleep(min(interval, remaining))
            interval = min(interval * 2, self.max_interval)

    async def _booted(
        self, vm_id: str, deadline: float, on_info: InfoListener | None, phase: str = "booting"
    ) -> VmInfo:
        watch = _Watch(asyncio.get_running_loop().create_future(), on_info, phase)
        watch.due = time.monotonic()
        self._watches[vm_id] = watch
        self._wake.set()
        if self._poller is None or self._poller.done():
            self._poller = self.tasks.spawn(self._poll(), name="vm-watcher")
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                return await asyncio.shield(watch.booted)
        except TimeoutError:
            raise VmNotReady(f"boot timed out ({watch.last})") from None
        finally:
            if self._watches.get(vm_id) is watch:
                del self._watches[vm_id]
            if not watch.booted.done():
                watch.booted.cancel()

    async def _poll(self) -> None:
        """Ask about every watched VM whenever one of them is due, until none is left."""
        while self._watches:
            due = min(watch.due for watch in self._watches.values())
            wait = due - time.monotonic()
            if wait > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
                continue
            ids = list(self._watches)
            try:
                listing = await self.vmm.status(ids=ids, brief=True)
            except ClientError as exc:
                self._note_all(ids, f"Status failed: {exc}")
                continue
            now = time.monotonic()
            found = {info.id: info for info in listing.vms}
            for vm_id in ids:
                watch = self._watches.get(vm_id)
                if watch is not None and not watch.booted.done():
                    self._answer(vm_id, watch, found.get(vm_id), now)

    def _answer(self, vm_id: str, watch: _Watch, info: VmInfo | None, now: float) -> None:
        """Settle or reschedule one watched VM from the latest answer."""
        if info is None:
            watch.booted.set_exception(
                VmNotReady(f"VM lost: the VMM no longer has VM {vm_id} (while {watch.phase})")
            )
            return
        self.state.set_vm_status(vm_id, info.status, info.boot_progress, info.boot_error)
        if watch.on_info is not None:
            watch.on_info(info)
        if info.boot_error:
            watch.booted.set_exception(VmNotReady(f"boot error: {info.boot_error}"))
        elif info.status in FAILED_STATUSES:
            watch.booted.set_exception(
                VmNotReady(f"VM {vm_id} is {info.status} while {watch.phase}")
            )
        elif info.is_ready:
            watch.booted.set_result(info)
        else:
            watch.last = f"status {info.status}, boot progress {info.boot_progress or 'none'}"
            self._reschedule(watch, now)

    def _note_all(self, ids: list[str], reason: str) -> None:
        now = time.monotonic()
        for vm_id in ids:
            watch = self._watches.get(vm_id)
            if watch is not None:
                watch.last = reason
                self._reschedule(watch, now)

    def _reschedule(self, watch: _Watch, now: float) -> None:
        watch.due = now + watch.interval
        watch.interval = min(watch.interval * 2, self.max_interval)
