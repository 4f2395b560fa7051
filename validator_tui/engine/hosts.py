"""`HostPool`: the dstack hosts this validator places VMs on, each with its own VMM client,
health, quota (resources, host ports, GPU slots) and boot watcher, plus their total.

Placement: a job VM goes to a host that takes VMs (its VMM answers, it is not down and not
draining) where it fits: the one with the most free capacity (`spread`, the default) or the
fullest one where it still fits (`pack`); a challenge CVM always goes to the host with the
most free capacity, keeping room for `reserve_job_vms` job VMs there. Ties go by host name.
"Free capacity" is the smallest share of any resource (vCPU, memory, disk, GPUs, host ports)
left free after the placement.

Health: a host whose VMM stops answering takes no new VMs at once; after the grace period
(`engine.host_down_grace_s`) it is `down` and the pool's listeners move its challenge CVMs
away; when it answers again it is `up` and they clean up what was left on it. A host that
stopped answering is not `settled` until its VM list was read after it answered again (a VMM
that restarted may have lost every VM): until then no job is claimed for a CVM there.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Iterator
from typing import Literal

import httpx

from validator_tui.clients.vmm import VmmClient
from validator_tui.config import HostPorts, HostSettings
from validator_tui.engine.events import log_event
from validator_tui.engine.health import ServerHealth
from validator_tui.engine.quota import Allocation, CapacityError, CVMQuotaManager
from validator_tui.engine.state import EngineState
from validator_tui.engine.tasks import TaskRegistry
from validator_tui.engine.vm_ready import VmWatcher
from validator_tui.sanitize import clean_line
from validator_tui.shared.records import (
    ConnectionView,
    HostRecord,
    HostState,
    QuotaUsage,
    Resources,
)

HostListener = Callable[["Host"], None]


class NoRoom(CapacityError):
    """No host can take a challenge CVM now; `shortfall` is 1 when that is for want of room
    beside the job VMs' reserve (counted in the capacity warning)."""

    def __init__(self, reason: str, *, shortfall: int) -> None:
        super().__init__(reason)
        self.shortfall = shortfall


class Host:
    """One dstack host: its VMM client, health, quota and boot watcher."""

    def __init__(
        self,
        settings: HostSettings,
        *,
        state: EngineState,
        http: httpx.AsyncClient,
        tasks: TaskRegistry,
        timeout: float,
        vm_poll_interval: float,
        named: bool,
    ) -> None:
        self.name = settings.name
        self.settings = settings
        self.ports: HostPorts = settings.host_ports
        self.vmm = VmmClient(
            settings.url, settings.token, timeout=timeout, host=self.name if named else ""
        )
        self.health = ServerHealth(state, self.vmm.name, "vmm", down_on_5xx=True)
        self.vmm.observer = self.health.observe
        self.quota = CVMQuotaManager(settings.resource_limits, settings.host_ports, host=self.name)
        self.watcher = VmWatcher(self.vmm, http, state, tasks, max_interval=vm_poll_interval)
        #: The operator drains it: no new VMs; its CVMs move away.
        self.draining = False
        #: Not answering for longer than the grace period.
        self.down = False
        #: When it stopped answering, and when it was found down (wall time).
        self.unreachable_since: float | None = None
        self.down_since: float | None = None
        #: Start-up could not list its VMs: the reconciler sorts them out once it answers.
        self.orphans_pending = False
        #: Its VM list was read since it last answered again (see `unsettle`/`settle`).
        self.settled = True
        #: Bumped each time it stops answering: a VM list read before is out of date.
        self.outages = 0
        self._down_timer: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"Host({self.name!r}, {self.vmm!r})"

    @property
    def answering(self) -> bool:
        """Its VMM answered the latest request (presumed before the first)."""
        return self.health.up

    @property
    def takes_vms(self) -> bool:
        """New VMs may be placed here: it answers, is not down and not draining."""
        return self.health.up and not self.down and not self.draining

    def unsettle(self) -> None:
        """It stopped answering: what it lists is unknown until a listing read after it answers
        again settles it."""
        self.settled = False
        self.outages += 1

    def settle(self, outages: int) -> bool:
        """A VM list read while `outages` was current was reconciled: settled, unless it stopped
        answering since. True if this settled it."""
        if self.settled or outages != self.outages:
            return False
        self.settled = True
        return True

    @property
    def wants_gpus(self) -> bool:
        """Its `gpu_count` lets it hand out GPUs: its VMM's GPU slots must be known."""
        return self.settings.resource_limits.gpu_count > 0

    async def list_gpus(self) -> str:
        """Ask the VMM for its GPUs (`ListGpus`) and give their slots to the quota; returns a
        problem to report ("" when none): fewer GPUs than `gpu_count` (then only those are
        handed out). Raises `ClientError` when the VMM does not answer."""
        gpus = await self.vmm.list_gpus()
        first = self.quota.gpu_slots is None
        self.quota.set_gpus(
            [gpu.slot for gpu in gpus], [gpu.slot for gpu in gpus if not gpu.is_free]
        )
        count = self.settings.resource_limits.gpu_count
        if len(gpus) >= count:
            return ""
        self.quota.limit_gpus(len(gpus))
        if not first:
            return ""
        return (
            f"host {self.name}: {self.settings.key}resource_limits.gpu_count = {count} but its "
            f"VMM lists {len(gpus)} GPUs: at most {len(gpus)} are handed out"
        )

    def evaluator_url(self, port: int | None, path: str) -> str:
        """The URL of `path` on the evaluator mapped to host port `port` of this host."""
        return f"http://{self.ports.host_address}:{port}{path}"

    @property
    def state(self) -> HostState:
        """Down or unreachable before drained or draining, before up."""
        if self.down:
            return HostState.DOWN
        if not self.health.up:
            return HostState.UNREACHABLE
        if self.draining:
            idle = self.quota.get_usage().allocations == 0
            return HostState.DRAINED if idle else HostState.DRAINING
        return HostState.UP

    def record(self) -> HostRecord:
        """What the console shows of this host."""
        state = self.state
        since = None
        if state is HostState.DOWN:
            since = self.down_since
        elif state is HostState.UNREACHABLE:
            since = self.unreachable_since
        usage = self.quota.get_usage()
        slots = self.quota.gpu_slots or ()
        return HostRecord(
            id=self.name,
            url=clean_line(self.settings.url, 200),
            state=state,
            since=since,
            draining=self.draining,
            last_error=clean_line(self.health.last_error, 300),
            usage=usage,
            vms=usage.allocations,
            gpu_slots=slots,
            gpus_held=usage.used.gpu,
        )


class HostPool:
    """The hosts, by name, in config order."""

    def __init__(
        self,
        hosts: list[Host],
        *,
        placement: Literal["spread", "pack"],
        grace: float,
        state: EngineState,
    ) -> None:
        self._hosts = {host.name: host for host in hosts}
        self._ranked = sorted(hosts, key=lambda host: host.name)
        self.placement = placement
        self.grace = grace
        self.state = state
        self._published: dict[str, HostRecord] = {}
        self._on_down: list[HostListener] = []
        self._on_up: list[HostListener] = []
        for host in hosts:
            host.health.subscribe(functools.partial(self._health_changed, host))

    def __iter__(self) -> Iterator[Host]:
        return iter(self._hosts.values())

    def __len__(self) -> int:
        return len(self._hosts)

    def __getitem__(self, name: str) -> Host:
        return self._hosts[name]

    def get(self, name: str) -> Host | None:
        """The host named `name`, if there is one."""
        return self._hosts.get(name)

    @property
    def several(self) -> bool:
        """More than one host: hosts fail over to each other."""
        return len(self._hosts) > 1

    def of(self, allocation: Allocation) -> Host:
        """The host whose quota holds `allocation`."""
        return self._hosts[allocation.host]

    # -- health -------------------------------------------------------------------------------

    def on_down(self, listener: HostListener) -> None:
        """Call `listener(host)` when a host has not answered for the grace period."""
        self._on_down.append(listener)

    def on_up(self, listener: HostListener) -> None:
        """Call `listener(host)` when a host that was down answers again."""
        self._on_up.append(listener)

    def _health_changed(self, host: Host) -> None:
        if host.health.up:
            host.unreachable_since = None
            if host._down_timer is not None:
                host._down_timer.cancel()
                host._down_timer = None
            if host.down:
                down_for = time.time() - (host.down_since or time.time())
                host.down, host.down_since = False, None
                log_event(
                    self.state,
                    "info",
                    "host",
                    f"host {host.name} is up again after {down_for:.0f}s down",
                )
                for listener in list(self._on_up):
                    listener(host)
        elif not host.down and host._down_timer is None:
            host.unsettle()
            host.unreachable_since = host.unreachable_since or time.time()
            loop = asyncio.get_running_loop()
            host._down_timer = loop.call_later(self.grace, self._grace_over, host)
        self.publish()

    def _grace_over(self, host: Host) -> None:
        host._down_timer = None
        if host.health.up or host.down:
            return
        host.down, host.down_since = True, time.time()
        moves = "its challenge CVMs move to other hosts" if self.several else "no other host"
        log_event(
            self.state,
            "error",
            "host",
            f"host {host.name} is down: {host.vmm.name} not answering for "
            f"{self.grace:g}s ({clean_line(host.health.last_error, 200)}); {moves}",
        )
        for listener in list(self._on_down):
            listener(host)
        self.publish()

    def close(self) -> None:
        """Cancel the grace timers (the engine is stopping)."""
        for host in self:
            if host._down_timer is not None:
                host._down_timer.cancel()
                host._down_timer = None

    # -- quota --------------------------------------------------------------------------------

    def release(self, allocation: Allocation) -> bool:
        """Give `allocation` back to its host; False (and nothing changes) if already done."""
        return self.of(allocation).quota.release(allocation)

    def get_usage(self) -> QuotaUsage:
        """Used and total of every resource over all hosts."""
        usages = [host.quota.get_usage() for host in self]
        if len(usages) == 1:
            return usages[0]
        used, total = Resources(), Resources()
        for usage in usages:
            used += usage.used
            total += usage.total
        return QuotaUsage(
            used=used,
            total=total,
            ports_used=sum(u.ports_used for u in usages),
            ports_total=sum(u.ports_total for u in usages),
            allocations=sum(u.allocations for u in usages),
        )

    def used_by(self, kind: str) -> Resources:
        """What the live allocations of one kind hold over all hosts."""
        total = Resources()
        for host in self:
            total += host.quota.used_by(kind)
        return total

    def place_job(self, resources: Resources, *, owner: str) -> Allocation:
        """Reserve `resources` (and a port and GPU slots) for a job VM on the host the
        placement policy picks among those that take VMs and have room.

        Raises `CapacityError` with the reason when no host can take it."""
        candidates = [
            host for host in self._ranked if host.takes_vms and host.quota.check_capacity(resources)
        ]
        if not candidates:
            raise CapacityError(self.job_capacity_reason(resources) or "no host has room")
        if len(candidates) == 1:
            chosen = candidates[0]
        elif self.placement == "pack":
            chosen = min(candidates, key=lambda host: host.quota.free_share(resources))
        else:
            chosen = max(candidates, key=lambda host: host.quota.free_share(resources))
        return chosen.quota.allocate(resources, owner=owner)

    def job_capacity_reason(self, resources: Resources) -> str:
        """Why no job VM of `resources` can be placed now, in human units ("" when one can)."""
        takers = [host for host in self._ranked if host.takes_vms]
        for host in takers:
            if host.quota.check_capacity(resources):
                return ""
        if not takers:
            return self._no_taker_reason()
        shorts = [(host, _shortfall(host, resources)) for host in takers]
        if not self.several:
            short = shorts[0][1]
            return f"waiting for capacity ({short})" if short else "waiting for a free host port"
        text = "; ".join(f"{host.name}: {short or 'no free host port'}" for host, short in shorts)
        return f"waiting for capacity on every host ({text})"

    def place_cvm(
        self,
        resources: Resources,
        *,
        owner: str,
        job_vm: Resources,
        reserve_vms: int,
        replacing: Allocation | None = None,
    ) -> Allocation:
        """Reserve `resources` for a challenge CVM on the host with the most free capacity
        among those that take VMs and keep room for `reserve_vms` job VMs of `job_vm` beside
        their challenge CVMs (`replacing`, the CVM it replaces, counts as gone).

        Raises `NoRoom` with the reason (its `shortfall` is 1 when no host has room beside
        the reserve, 0 when running jobs hold the capacity or no host takes VMs)."""
        takers = [host for host in self._ranked if host.takes_vms]
        if not takers:
            raise NoRoom(self._no_taker_reason(), shortfall=0)
        reserve = job_vm.times(reserve_vms)
        roomy = []
        for host in takers:
            held = host.quota.used_by("challenge")
            if replacing is not None and replacing.host == host.name:
                held -= replacing.resources
            if host.quota.fits_beside(held + reserve, resources):
                roomy.append(host)
        if not roomy:
            raise NoRoom(
                f"waiting for capacity (challenge CVMs keep room for {reserve_vms} job VMs)",
                shortfall=1,
            )
        ready = [host for host in roomy if host.quota.check_capacity(resources)]
        if not ready:
            raise NoRoom("waiting for running jobs to free capacity", shortfall=0)
        chosen = max(ready, key=lambda host: host.quota.free_share(resources))
        try:
            return chosen.quota.allocate(resources, owner=owner, kind="challenge")
        except CapacityError as exc:
            raise NoRoom(f"waiting for capacity ({exc})", shortfall=0) from None

    def _no_taker_reason(self) -> str:
        if not self.several:
            host = self._ranked[0]
            if host.draining:
                return f"waiting: host {host.name} is being drained"
            return "waiting for the VMM to answer"
        states = ", ".join(f"{host.name} {host.state.value}" for host in self._ranked)
        return f"waiting for a host that takes VMs ({states})"

    # -- the console's view ----------------------------------------------------------------------

    def vmm_view(self) -> ConnectionView:
        """The VMM connection the header shows: connected while every host answers, else the
        error of each host that does not (and, with some answering, how many are up)."""
        quiet = [host for host in self if not host.answering]
        if not quiet:
            return ConnectionView("connected")
        if len(quiet) == len(self):
            errors = "; ".join(host.health.last_error for host in quiet)
            return ConnectionView("error", last_error=errors or None)
        errors = "; ".join(f"{host.name}: {host.health.last_error}" for host in quiet)
        up = len(self) - len(quiet)
        return ConnectionView(f"{up}/{len(self)} hosts up", last_error=errors or None)

    def publish(self) -> None:
        """Copy the total usage into the header and publish every host record that changed."""
        header = self.state.header
        header.quota = self.get_usage()
        for host in self:
            record = host.record()
            if self._published.get(host.name) != record:
                self._published[host.name] = record
                self.state.put_host(record)
        self.state.header_changed()


def _shortfall(host: Host, resources: Resources) -> str:
    usage = host.quota.get_usage()
    short = resources.shortfall(usage.total - usage.used)
    if not short and resources.gpu:
        return f"needs {resources.gpu} GPU slot(s), none free"
    return short


def build_pool(
    hosts: list[HostSettings],
    *,
    state: EngineState,
    http: httpx.AsyncClient,
    tasks: TaskRegistry,
    timeout: float,
    vm_poll_interval: float,
    placement: Literal["spread", "pack"],
    grace: float,
) -> HostPool:
    """A pool of `hosts` (a VMM client, health, quota and watcher each)."""
    named = len(hosts) > 1
    return HostPool(
        [
            Host(
                settings,
                state=state,
                http=http,
                tasks=tasks,
                timeout=timeout,
                vm_poll_interval=vm_poll_interval,
                named=named,
            )
            for settings in hosts
        ],
        placement=placement,
        grace=grace,
        state=state,
    )
