"""ChallengeManager: one long-lived CVM per active challenge, provisioned, rebuilt and destroyed.

States: pending → fetching → provisioning → booting → active, plus updating, failed, destroying.
A rebuild provisions the new CVM first, switches when it is active, then destroys the old one.
A compose whose sha256 differs from the challenge's `compose_hash` never reaches the VMM.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

from validator_tui.clients.errors import ClientError
from validator_tui.engine.compose import ComposeCache, ComposeError, fetch_verified_compose
from validator_tui.engine.context import EngineContext
from validator_tui.engine.quota import Allocation, CapacityError
from validator_tui.engine.records import (
    ChallengeRecord,
    ChallengeState,
    Resources,
    VmKind,
    VmRecord,
)
from validator_tui.engine.store import StoredChallengeVm
from validator_tui.engine.vm_ops import remove_vm, vm_configuration
from validator_tui.engine.vm_ready import VmNotReady, wait_until_ready
from validator_tui.models.platform import Challenge
from validator_tui.models.vmm import VmInfo


@dataclass(slots=True)
class ChallengeVm:
    """A challenge CVM this engine owns, with the resources it holds."""

    vm_id: str
    compose_hash: str
    allocation: Allocation


@dataclass(slots=True)
class _Runtime:
    spec: Challenge
    compose: bytes | None = None
    vm: ChallengeVm | None = None
    task: asyncio.Task[None] | None = None
    leaving: bool = False
    failures: int = 0
    retry_after: float = 0.0
    extra_vms: list[ChallengeVm] = field(default_factory=list)


class ChallengeManager:
    """Keeps one healthy CVM per active challenge, following the platform's active list."""

    def __init__(self, ctx: EngineContext, on_active: Callable[[str], None]) -> None:
        self.ctx = ctx
        self._on_active = on_active
        self._runtimes: dict[str, _Runtime] = {}
        self._cache = ComposeCache(ctx.config.state_path / "compose")
        self._adoptable: dict[str, list[VmInfo]] = {}
        self._first_sync_done = False

    # -- queries ---------------------------------------------------------------------------

    def get_challenge_status(self, challenge_id: str) -> ChallengeRecord | None:
        """The challenge's record (state, VM, boot progress, reason), or None if unknown."""
        return self.ctx.state.challenges.get(challenge_id)

    def is_active(self, challenge_id: str) -> bool:
        """True when jobs of this challenge may be claimed: CVM active and running."""
        record = self.ctx.state.challenges.get(challenge_id)
        return (
            record is not None
            and record.state is ChallengeState.ACTIVE
            and record.vm_status == "running"
        )

    def compose_for(self, challenge_id: str) -> bytes | None:
        """The verified compose bytes of the challenge's active version."""
        runtime = self._runtimes.get(challenge_id)
        return runtime.compose if runtime and runtime.vm else None

    # -- start-up adoption -----------------------------------------------------------------

    def offer_existing(self, vms: list[VmInfo]) -> None:
        """Challenge CVMs found at start-up; the first sync adopts or removes them."""
        for info in vms:
            challenge_id = self._challenge_of_vm(info)
            self._adoptable.setdefault(challenge_id, []).append(info)

    def _challenge_of_vm(self, info: VmInfo) -> str:
        for stored in self.ctx.store.challenge_vms():
            if stored.vm_id == info.id:
                return stored.challenge_id
        return self.ctx.naming.challenge_of(info.name)

    async def _adopt(self, runtime: _Runtime) -> bool:
        """Take over a running CVM of ours whose compose matches; remove the others."""
        spec = runtime.spec
        candidates = self._adoptable.pop(spec.id, [])
        adopted = False
        for info in candidates:
            port = _host_port(info)
            matches = spec.compose_hash.startswith(info.app_id) and bool(info.app_id)
            if not adopted and matches and info.status == "running" and port is not None:
                try:
                    allocation = self.ctx.quota.allocate(
                        self._vm_resources(), owner=f"challenge {spec.id}", port=port
                    )
                    compose = await fetch_verified_compose(
                        self.ctx.platform,
                        self._cache,
                        spec.github_repo,
                        spec.github_commit,
                        spec.compose_hash,
                    )
                except (CapacityError, ComposeError) as exc:
                    self.ctx.log("warn", "adopt", f"{spec.name}: cannot adopt CVM {info.id}: {exc}")
                else:
                    runtime.vm = ChallengeVm(info.id, spec.compose_hash, allocation)
                    runtime.compose = compose
                    self._record_vm(runtime, info.id, port, info.status, info.boot_progress)
                    self._set(spec.id, ChallengeState.ACTIVE, reason="adopted after restart")
                    self.ctx.log(
                        "info", "adopt", f"{spec.name}: adopted CVM {info.id}", challenge_id=spec.id
                    )
                    adopted = True
                    continue
            await self._remove_vm_id(info.id, f"stale CVM of challenge {spec.id}")
        return adopted

    # -- the active list -------------------------------------------------------------------

    async def sync(self, challenges: list[Challenge]) -> None:
        """Follow the platform's active list: provision new, rebuild changed, drain gone."""
        active = {c.id: c for c in challenges if c.status == "active"}
        for challenge_id, spec in active.items():
            runtime = self._runtimes.get(challenge_id)
            if runtime is None:
                runtime = _Runtime(spec)
                self._runtimes[challenge_id] = runtime
                self._ensure_record(spec)
                if await self._adopt(runtime):
                    self._on_active(challenge_id)
                    continue
                self._start(runtime, partial(self._provision, runtime))
            elif _changed(runtime.spec, spec):
                runtime.spec = spec
                self._ensure_record(spec)
                self._start(runtime, partial(self._provision, runtime))
            else:
                runtime.spec = spec
                self._retry_if_failed(runtime)
        for challenge_id, runtime in list(self._runtimes.items()):
            if challenge_id not in active and not runtime.leaving:
                runtime.leaving = True
                self._start(runtime, partial(self._drain_and_destroy, runtime))
        if not self._first_sync_done:
            self._first_sync_done = True
            for leftovers in self._adoptable.values():
                for info in leftovers:
                    await self._remove_vm_id(info.id, "CVM of a challenge that is not active")
            self._adoptable.clear()

    def on_challenge_updated(self, challenge_id: str, github_commit: str) -> bool:
        """A `challenge_updated` message: rebuild if the commit differs. True if it will."""
        runtime = self._runtimes.get(challenge_id)
        if runtime is None or runtime.leaving:
            return False
        return not github_commit or github_commit != runtime.spec.github_commit

    def _retry_if_failed(self, runtime: _Runtime) -> None:
        record = self.ctx.state.challenges.get(runtime.spec.id)
        idle = runtime.task is None or runtime.task.done()
        due = time.monotonic() >= runtime.retry_after
        if record and record.state is ChallengeState.FAILED and idle and due:
            self._start(runtime, partial(self._provision, runtime))

    def _start(self, runtime: _Runtime, work: Callable[[], Awaitable[None]]) -> None:
        """Cancel the challenge's current lifecycle work and run `work` once it has ended."""
        previous = runtime.task
        if previous is not None and not previous.done():
            previous.cancel()
        runtime.task = asyncio.create_task(self._after(previous, work))

    async def _after(
        self, previous: asyncio.Task[None] | None, work: Callable[[], Awaitable[None]]
    ) -> None:
        if previous is not None and not previous.done():
            await asyncio.wait({previous})
        await work()

    # -- provisioning ------------------------------------------------------------------------

    async def provision_challenge(self, challenge_spec: Challenge) -> ChallengeRecord:
        """Provision (or rebuild) the CVM for `challenge_spec` and wait until active or failed."""
        runtime = self._runtimes.get(challenge_spec.id)
        if runtime is None:
            runtime = _Runtime(challenge_spec)
            self._runtimes[challenge_spec.id] = runtime
        runtime.spec = challenge_spec
        runtime.leaving = False
        self._ensure_record(challenge_spec)
        self._start(runtime, partial(self._provision, runtime))
        await self._wait(runtime)
        return self.ctx.state.challenges[challenge_spec.id]

    async def update_challenge(self, challenge_id: str) -> ChallengeRecord | None:
        """Rebuild the challenge's CVM from its current spec; wait until active or failed."""
        runtime = self._runtimes.get(challenge_id)
        if runtime is None or runtime.leaving:
            return None
        self._start(runtime, partial(self._provision, runtime))
        await self._wait(runtime)
        return self.ctx.state.challenges.get(challenge_id)

    def request_rebuild(self, challenge_id: str, spec: Challenge | None = None) -> bool:
        """Start a rebuild without waiting; False if the challenge is unknown or leaving."""
        runtime = self._runtimes.get(challenge_id)
        if runtime is None or runtime.leaving:
            return False
        if spec is not None:
            runtime.spec = spec
            self._ensure_record(spec)
        runtime.failures = 0
        self._start(runtime, partial(self._provision, runtime))
        return True

    async def destroy_challenge(self, challenge_id: str) -> None:
        """Drain the challenge (no new jobs; running ones finish) and destroy its CVM."""
        runtime = self._runtimes.get(challenge_id)
        if runtime is None:
            return
        runtime.leaving = True
        self._start(runtime, partial(self._drain_and_destroy, runtime))
        await self._wait(runtime)

    async def _wait(self, runtime: _Runtime) -> None:
        while runtime.task is not None and not runtime.task.done():
            await asyncio.wait({runtime.task})

    async def _provision(self, runtime: _Runtime) -> None:
        spec = runtime.spec
        rebuilding = runtime.vm is not None
        new_vm: ChallengeVm | None = None
        try:
            self._set(spec.id, ChallengeState.UPDATING if rebuilding else ChallengeState.FETCHING)
            compose = await fetch_verified_compose(
                self.ctx.platform,
                self._cache,
                spec.github_repo,
                spec.github_commit,
                spec.compose_hash,
            )
            if not rebuilding:
                self._set(spec.id, ChallengeState.PROVISIONING)
            allocation = self.ctx.quota.allocate(self._vm_resources(), owner=f"challenge {spec.id}")
            self.ctx.publish_quota()
            try:
                config = vm_configuration(
                    self.ctx,
                    self.ctx.config.challenge_vm,
                    self.ctx.naming.challenge_vm(spec.id),
                    compose,
                    allocation.port,
                    {"CHALLENGE_ID": spec.id},
                )
                vm_id = await self.ctx.vmm.create_vm(config)
            except BaseException:
                self.ctx.quota.release(allocation)
                self.ctx.publish_quota()
                raise
            new_vm = ChallengeVm(vm_id, spec.compose_hash, allocation)
            runtime.extra_vms.append(new_vm)
            self.ctx.store.put_challenge_vm(
                StoredChallengeVm(vm_id, spec.id, spec.compose_hash, allocation.port)
            )
            self.ctx.state.put_vm(
                VmRecord(
                    vm_id,
                    self.ctx.naming.challenge_vm(spec.id),
                    VmKind.CHALLENGE,
                    spec.id,
                    host_port=allocation.port,
                )
            )
            self.ctx.log(
                "info",
                "cvm",
                f"{spec.name}: created CVM {vm_id}",
                challenge_id=spec.id,
                vm_id=vm_id,
            )
            if not rebuilding:
                self._set(spec.id, ChallengeState.BOOTING)
            await wait_until_ready(
                self.ctx.vmm,
                self.ctx.http,
                vm_id,
                f"http://{self.ctx.config.host_ports.host_address}:{allocation.port}/health",
                timeout=self.ctx.config.engine.boot_timeout_s,
                max_interval=self.ctx.config.engine.vm_poll_interval_s,
                on_info=lambda info: self._on_boot_info(spec.id, info, rebuilding),
            )
            old = runtime.vm
            runtime.extra_vms.remove(new_vm)
            runtime.vm, runtime.compose, new_vm = new_vm, compose, None
            runtime.failures = 0
            self._record_vm(runtime, runtime.vm.vm_id, allocation.port, "running", "done")
            self._set(spec.id, ChallengeState.ACTIVE, reason="")
            self.ctx.log("info", "cvm", f"{spec.name}: challenge CVM active", challenge_id=spec.id)
            if old is not None:
                await self._destroy(old, "replaced by rebuilt CVM")
            self._on_active(spec.id)
        except (ComposeError, CapacityError, ClientError, VmNotReady) as exc:
            await self._fail(runtime, str(exc))
        finally:
            if new_vm is not None:
                with contextlib.suppress(ValueError):
                    runtime.extra_vms.remove(new_vm)
                await asyncio.shield(self._destroy(new_vm, "provisioning did not finish"))

    async def _fail(self, runtime: _Runtime, reason: str) -> None:
        runtime.failures += 1
        runtime.retry_after = time.monotonic() + min(300.0, 10.0 * 2 ** (runtime.failures - 1))
        if runtime.vm is not None:
            old, runtime.vm, runtime.compose = runtime.vm, None, None
            await self._destroy(old, "rebuild failed")
        self._set(runtime.spec.id, ChallengeState.FAILED, reason=reason)
        self.ctx.log(
            "error",
            "cvm",
            f"{runtime.spec.name}: challenge failed: {reason}",
            challenge_id=runtime.spec.id,
        )

    def _on_boot_info(self, challenge_id: str, info: VmInfo, rebuilding: bool) -> None:
        vm = self.ctx.state.vms.get(info.id)
        if vm is not None:
            vm.status, vm.boot_progress, vm.boot_error = (
                info.status,
                info.boot_progress,
                info.boot_error,
            )
            self.ctx.state.put_vm(vm)
        if not rebuilding:
            record = self.ctx.state.challenges.get(challenge_id)
            if record is not None:
                record.vm_id, record.vm_status = info.id, info.status
                record.boot_progress = info.boot_progress
                self.ctx.state.put_challenge(record)

    async def _drain_and_destroy(self, runtime: _Runtime) -> None:
        challenge_id = runtime.spec.id
        self._set(challenge_id, ChallengeState.DESTROYING, reason="left the active list")
        deadline = time.monotonic() + self.ctx.config.engine.job_timeout_s
        while time.monotonic() < deadline:
            record = self.ctx.state.challenges.get(challenge_id)
            if record is None or record.jobs_running <= 0:
                break
            await asyncio.sleep(0.2)
        if runtime.vm is not None:
            old, runtime.vm, runtime.compose = runtime.vm, None, None
            await self._destroy(old, "challenge left the active list")
        for extra in list(runtime.extra_vms):
            await self._destroy(extra, "challenge left the active list")
        self._runtimes.pop(challenge_id, None)
        self.ctx.state.drop_challenge(challenge_id)
        self.ctx.log(
            "info", "cvm", f"{runtime.spec.name}: drained and destroyed", challenge_id=challenge_id
        )

    # -- VM teardown -----------------------------------------------------------------------

    async def _destroy(self, vm: ChallengeVm, why: str) -> None:
        """Remove the CVM and release what it held, exactly once."""
        await self._remove_vm_id(vm.vm_id, why)
        self.ctx.store.delete_challenge_vm(vm.vm_id)
        if self.ctx.quota.release(vm.allocation):
            self.ctx.publish_quota()

    async def _remove_vm_id(self, vm_id: str, why: str) -> None:
        if await remove_vm(self.ctx, vm_id):
            self.ctx.log("info", "cvm", f"removed CVM {vm_id} ({why})", vm_id=vm_id)

    def forget_vm(self, vm_id: str) -> None:
        """The operator removed this CVM: release it; the challenge is re-provisioned later."""
        for runtime in self._runtimes.values():
            if runtime.vm is not None and runtime.vm.vm_id == vm_id:
                if self.ctx.quota.release(runtime.vm.allocation):
                    self.ctx.publish_quota()
                self.ctx.store.delete_challenge_vm(vm_id)
                runtime.vm, runtime.compose = None, None
                runtime.failures, runtime.retry_after = 0, 0.0
                self._set(runtime.spec.id, ChallengeState.FAILED, reason="CVM removed by operator")

    def on_vm_info(self, info: VmInfo) -> None:
        """Reconciler report on one of our CVMs: keep the record's VM status current."""
        for runtime in self._runtimes.values():
            if runtime.vm is not None and runtime.vm.vm_id == info.id:
                record = self.ctx.state.challenges.get(runtime.spec.id)
                if record is not None and (
                    record.vm_status != info.status or record.boot_progress != info.boot_progress
                ):
                    record.vm_status, record.boot_progress = info.status, info.boot_progress
                    self.ctx.state.put_challenge(record)
                    if self.is_active(runtime.spec.id):
                        self._on_active(runtime.spec.id)

    async def shutdown(self) -> None:
        """Stop provisioning work; CVMs stay up for the next run to adopt."""
        tasks = [r.task for r in self._runtimes.values() if r.task and not r.task.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task

    # -- helpers ---------------------------------------------------------------------------

    def _vm_resources(self) -> Resources:
        spec = self.ctx.config.challenge_vm
        return Resources(spec.vcpu, spec.memory_mb, spec.disk_mb, spec.gpu)

    def _ensure_record(self, spec: Challenge) -> None:
        record = self.ctx.state.challenges.get(spec.id) or ChallengeRecord(spec.id, spec.name)
        record.name = spec.name
        record.github_repo, record.github_commit = spec.github_repo, spec.github_commit
        record.compose_hash = spec.compose_hash
        record.mechanism_id, record.emission_share = spec.mechanism_id, spec.emission_share
        self.ctx.state.put_challenge(record)

    def _set(self, challenge_id: str, state: ChallengeState, *, reason: str | None = None) -> None:
        record = self.ctx.state.challenges.get(challenge_id)
        if record is None:
            return
        record.enter(state, reason)
        if state is ChallengeState.ACTIVE:
            record.active_since = time.time()
        self.ctx.state.put_challenge(record)

    def _record_vm(
        self, runtime: _Runtime, vm_id: str, port: int | None, status: str, progress: str
    ) -> None:
        record = self.ctx.state.challenges.get(runtime.spec.id)
        if record is not None:
            record.vm_id, record.host_port = vm_id, port
            record.vm_status, record.boot_progress = status, progress
            self.ctx.state.put_challenge(record)
        vm = self.ctx.state.vms.get(vm_id) or VmRecord(
            vm_id, self.ctx.naming.challenge_vm(runtime.spec.id), VmKind.CHALLENGE, runtime.spec.id
        )
        vm.status, vm.boot_progress, vm.host_port = status, progress, port
        self.ctx.state.put_vm(vm)


def _changed(old: Challenge, new: Challenge) -> bool:
    return old.github_commit != new.github_commit or old.compose_hash != new.compose_hash


def _host_port(info: VmInfo) -> int | None:
    if info.configuration and info.configuration.ports:
        return info.configuration.ports[0].host_port
    return None
