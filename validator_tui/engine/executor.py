"""DstackExecutor: run one job in its own CVM and produce its result.

fetch the submission (a read: retried) → create VM (challenge compose, job env, mapped evaluator
port; retried while the VMM does not answer) → wait for boot and health → `POST /evaluate`
with the submission's code (answer bounded) → validate the score. Everything happens inside
the job timeout. The VM is always removed, whatever happened, including a CreateVm still in
flight when the job is cancelled; the caller releases the job's quota allocation after
`execute_job` returns.

The executor writes no job record and no job row: it reports its progress (submission
fetched, VM about to be created, VM created, evaluating) to the `JobProgress` its caller gives
it, and returns the result.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from validator_tui.clients.backoff import Backoff
from validator_tui.clients.errors import AnswerLost, ClientError, VmmError, is_transient
from validator_tui.clients.transport import AnswerTooLarge, send
from validator_tui.engine.challenges import ChallengeManager
from validator_tui.engine.context import EngineContext
from validator_tui.engine.health import RefusalBudget
from validator_tui.engine.hosts import Host
from validator_tui.engine.quota import Allocation, CapacityError
from validator_tui.engine.vm_ops import (
    find_vms_named,
    remove_vm,
    set_port_aside,
    taken_port,
    vm_configuration,
)
from validator_tui.engine.vm_ready import VmNotReady
from validator_tui.models.platform import EvaluateRequest, EvaluateResponse, JobResults
from validator_tui.models.vmm import VmConfiguration
from validator_tui.sanitize import clean_line, clean_lines
from validator_tui.shared.records import JobRecord

MAX_RESULT_LOG_LINES = 200
MAX_LOG_CHARS = 1000
#: Retry pauses while the platform or the VMM does not answer (inside the job timeout).
RETRY_FIRST_S = 0.5
RETRY_CAP_S = 10.0
#: Longest wait for a CreateVm in flight when its job is cancelled (its id is needed to remove
#: the VM it may create), and for the removal itself.
CLEANUP_WAIT_S = 15.0
#: Lines of a job VM's serial log kept with the job's record once the VM is gone, and how long
#: reading them may take before the VM is removed.
KEPT_VM_LOG_LINES = 200
LOG_TAIL_WITHIN_S = 1.0
#: How long an evaluation's answer already arriving at the job's end still has to be read.
ANSWER_IN_HAND_S = 0.5
#: Host ports one job tries when other programs hold the ones it is given.
MAX_PORT_TRIES = 4


class JobFailed(Exception):
    """A job that cannot produce a score; the message is the result's `error`."""


class JobProgress(Protocol):
    """What the executor tells about one job while it runs it (the job's owner records it)."""

    def submission_fetched(self, miner_hotkey: str) -> None:
        """The submission's code is here; `miner_hotkey` is the miner the ORM names ("" if
        none)."""

    def waiting(self, reason: str) -> None:
        """The job waits for what `reason` says (the job timeout bounds the wait)."""

    def creating_vm(self, vm_name: str) -> None:
        """A VM named `vm_name` is about to be created: commit the name (so that a crash cannot
        orphan it), or raise `JobFailed` to create none."""

    def vm_created(self, vm_id: str, host_port: int | None) -> None:
        """The job's VM exists."""

    def evaluating(self) -> None:
        """The VM is ready; the evaluation starts."""

    def vm_log(self, lines: tuple[str, ...]) -> None:
        """The last lines of the VM's serial log (sanitised), read just before its removal."""


class JobLog:
    """The validator's own lines for one job, bounded and sanitised, with elapsed times."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.lines: list[str] = []

    def add(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        if len(self.lines) < MAX_RESULT_LOG_LINES:
            self.lines.append(f"[validator +{elapsed:.3f}s] {clean_line(text, MAX_LOG_CHARS)}")


@dataclass(slots=True)
class JobVm:
    """The job's VM as far as we know it: its name, the CreateVm in flight, its id."""

    name: str
    creating: asyncio.Task[str] | None = None
    vm_id: str | None = None
    #: A CreateVm may have created it without telling us its id (answer lost, or cancelled).
    maybe_created: bool = False

    @property
    def needs_cleanup(self) -> bool:
        return self.vm_id is not None or self.maybe_created or self.creating is not None


class DstackExecutor:
    """Runs jobs in dstack CVMs."""

    def __init__(self, ctx: EngineContext, challenges: ChallengeManager) -> None:
        self.ctx = ctx
        self.challenges = challenges

    async def execute_job(
        self, job: JobRecord, allocation: Allocation, progress: JobProgress
    ) -> JobResults:
        """Evaluate `job` in a fresh VM and return its result, telling `progress` how it goes.

        Failures (VMM errors, boot timeout, evaluator errors, bad scores, job timeout) come back
        as a result with score 0 and `error` set. Only cancellation propagates, after the VM
        (even one whose CreateVm was in flight) has been removed, or given up on and logged.
        """
        log = JobLog()
        started = time.monotonic()
        ends_at = asyncio.get_running_loop().time() + self.ctx.config.engine.job_timeout_s
        vm = JobVm(self.ctx.naming.job_vm(job.id))
        host = self.ctx.hosts.of(allocation)
        try:
            async with asyncio.timeout_at(ends_at):
                code, miner = await self._fetch_code(job, log)
                miner = job.miner_hotkey or clean_line(miner, 100)
                progress.submission_fetched(miner)
                vm_id, allocation = await self.create_vm(job, miner, allocation, vm, log, progress)
                log.add(f"created VM {vm_id} on host {host.name}, host port {allocation.port}")
                booted = await host.watcher.wait_ready(
                    vm_id,
                    host.evaluator_url(allocation.port, "/health"),
                    timeout=self.ctx.config.engine.boot_timeout_s,
                )
                log.add(f"VM ready in {booted:.3f}s")
                progress.evaluating()
            answer = await self._evaluate_by(
                ends_at, self.evaluate_submission(vm_id, code, job, miner, allocation)
            )
            elapsed_ms = int((time.monotonic() - started) * 1000)
            log.add(f"score {answer.score:.6f} in {elapsed_ms} ms")
            return JobResults(
                score=answer.score,
                metrics=_safe_metrics(answer.metrics),
                logs=log.lines + _evaluator_lines(answer.logs),
                execution_time_ms=elapsed_ms,
                error=None,
            )
        except TimeoutError:
            error = f"job timed out after {self.ctx.config.engine.job_timeout_s:g}s"
        except (JobFailed, VmNotReady, ClientError) as exc:
            error = clean_line(str(exc), MAX_LOG_CHARS)
        finally:
            if vm.needs_cleanup:
                await self._cleanup(job, host, vm, log, progress)
        log.add(f"failed: {error}")
        return JobResults.failure(error, int((time.monotonic() - started) * 1000), log.lines)

    async def _fetch_code(self, job: JobRecord, log: JobLog) -> tuple[str, str]:
        """The submission's code (and miner) through the ORM; a read, so transient failures
        (and refusals during an auth outage, see engine/health) are retried with backoff until
        the job timeout."""
        if not job.submission_id:
            # Only the claim's answer and `/jobs/pending` name the submission; a job announced
            # over the WebSocket whose claim answer was lost has neither.
            raise JobFailed("submission id unknown: the claim's answer was lost")
        orm = self.ctx.config.orm
        backoff = Backoff(RETRY_FIRST_S, RETRY_CAP_S)
        refusals = RefusalBudget(self.ctx.platform_health)
        while True:
            try:
                rows = await self.ctx.platform.execute_orm_query(
                    job.challenge_id, orm.submission_query, [job.submission_id]
                )
                break
            except ClientError as exc:
                if not is_transient(exc) and not refusals.retry(exc):
                    raise JobFailed(f"cannot fetch submission {job.submission_id}: {exc}") from None
                log.add(f"submission fetch failed, retrying: {exc}")
            await asyncio.sleep(backoff.next())
        if not rows:
            raise JobFailed(f"submission {clean_line(job.submission_id, 100)} not found")
        code = rows[0].get(orm.code_field)
        if not isinstance(code, str):
            raise JobFailed(f"submission row has no text field {orm.code_field!r}")
        miner = rows[0].get("miner_hotkey")
        log.add(f"fetched submission code ({len(code)} chars)")
        return code, miner if isinstance(miner, str) else ""

    async def create_vm(
        self,
        job: JobRecord,
        miner: str,
        allocation: Allocation,
        vm: JobVm,
        log: JobLog,
        progress: JobProgress,
    ) -> tuple[str, Allocation]:
        """Create the job's VM from the challenge's verified compose; returns its id and the
        allocation it holds. While the challenge's CVM is being provisioned again the job waits
        for it (`progress` hears why). A host port another program holds is set aside and the
        VM created with another one (at most MAX_PORT_TRIES ports).

        `progress` commits the VM name before CreateVm, so a crash cannot orphan it.
        While the VMM does not answer (no answer, 5xx) CreateVm is retried with backoff; after
        an answer was lost the VM is looked up by name first, so a retry never makes a second
        one. A VMM refusal (HTTP 400) fails the job.
        """
        compose = await self.challenges.compose_when_serving(job.challenge_id, progress.waiting)
        if compose is None:
            raise JobFailed("the challenge left the active list: no verified compose to run")
        progress.creating_vm(vm.name)
        env = {
            "JOB_ID": job.id,
            "CHALLENGE_ID": job.challenge_id,
            "SUBMISSION_ID": job.submission_id,
            "MINER_HOTKEY": miner,
        }
        host = self.ctx.hosts.of(allocation)
        where = f" on host {host.name}" if self.ctx.hosts.several else ""
        backoff = Backoff(RETRY_FIRST_S, RETRY_CAP_S)
        ports_tried = 1
        while vm.vm_id is None:
            spec = self.ctx.config.job_vm
            config = vm_configuration(host, spec, vm.name, compose, allocation, env)
            try:
                vm.vm_id = await self._create_once(host, config, vm)
            except VmmError as exc:
                port = taken_port(exc, allocation)
                if port is None or ports_tried >= MAX_PORT_TRIES:
                    raise JobFailed(f"CreateVm{where} failed: {exc}") from None
                await set_port_aside(self.ctx, host, vm.name, port)
                try:
                    allocation = host.quota.replace_port(allocation)
                except CapacityError as no_port:
                    raise JobFailed(f"CreateVm{where} failed: {exc} ({no_port})") from None
                ports_tried += 1
                log.add(f"host port {port} is in use by another program: trying {allocation.port}")
            except ClientError as exc:
                if not is_transient(exc):
                    raise JobFailed(f"CreateVm{where} failed: {exc}") from None
                log.add(f"CreateVm failed, retrying: {exc}")
                await asyncio.sleep(backoff.next())
        progress.vm_created(vm.vm_id, allocation.port)
        return vm.vm_id, allocation

    async def _create_once(self, host: Host, config: VmConfiguration, vm: JobVm) -> str:
        """One CreateVm, run as its own task so that a cancelled job can still learn the id.
        After a lost answer, the VM found by name (if any) is the result."""
        if vm.maybe_created:
            found = await find_vms_named(host, vm.name)
            if found:
                vm.maybe_created = False
                return found[0]
        vm.maybe_created = True
        vm.creating = self.ctx.tasks.spawn(
            host.vmm.create_vm(config), name=f"create-{vm.name}", quiet=True
        )
        try:
            vm_id = await asyncio.shield(vm.creating)
        except AnswerLost:
            vm.creating = None
            raise
        except ClientError:
            vm.creating, vm.maybe_created = None, False
            raise
        vm.creating, vm.maybe_created = None, False
        return vm_id

    async def _cleanup(
        self, job: JobRecord, host: Host, vm: JobVm, log: JobLog, progress: JobProgress
    ) -> None:
        """Keep the tail of the VM's log, then remove the VM, in a task of its own that a
        second cancel does not interrupt (shutdown cancels and awaits it through the task
        registry when time is up)."""
        task = self.ctx.tasks.spawn(
            self._keep_and_remove(job, host, vm, progress), name=f"remove-{vm.name}"
        )
        await asyncio.shield(task)
        if vm.vm_id is not None:
            log.add(f"removed VM {vm.vm_id}")

    async def _keep_and_remove(
        self, job: JobRecord, host: Host, vm: JobVm, progress: JobProgress
    ) -> None:
        if vm.vm_id is not None and host.answering:
            lines = await self._log_tail(host, vm.vm_id)
            if lines:
                progress.vm_log(lines)
        await self._remove(job, host, vm)

    async def _log_tail(self, host: Host, vm_id: str) -> tuple[str, ...]:
        """The last KEPT_VM_LOG_LINES lines of the VM's serial log, sanitised; what came within
        LOG_TAIL_WITHIN_S (nothing if the VMM does not answer)."""
        lines: list[str] = []
        with contextlib.suppress(TimeoutError, ClientError):
            async with asyncio.timeout(LOG_TAIL_WITHIN_S):
                async for line in host.vmm.logs(vm_id, lines=KEPT_VM_LOG_LINES):
                    lines.append(line)
        return tuple(clean_lines(lines[-KEPT_VM_LOG_LINES:], KEPT_VM_LOG_LINES, MAX_LOG_CHARS))

    async def _remove(self, job: JobRecord, host: Host, vm: JobVm) -> None:
        """Wait (bounded) for a CreateVm in flight, then remove the VM by id, or by name when
        the id never came back. Whatever cannot be removed is logged (the reconciler or the
        next start removes it)."""
        try:
            async with asyncio.timeout(2 * CLEANUP_WAIT_S):
                await self._await_creation(vm)
                ids = [vm.vm_id] if vm.vm_id is not None else []
                if vm.maybe_created and not ids:
                    ids = await find_vms_named(host, vm.name)
                for vm_id in ids:
                    if not await self.destroy_vm(vm_id, host):
                        raise ClientError(f"cannot remove VM {vm_id}")
        except (TimeoutError, ClientError, asyncio.CancelledError) as exc:
            reason = str(exc) or "the VMM does not answer in time"
            self.ctx.log(
                "error",
                "vm",
                f"job VM {vm.name} not removed ({reason}): the reconciler or the next start "
                "removes it",
                job_id=job.id,
            )
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        vm.maybe_created = False

    async def destroy_vm(self, vm_id: str, host: Host | None = None) -> bool:
        """Remove the VM `vm_id` from `host` (by default the host its record names); True once
        it is gone, False when it is unknown to us or the VMM would not remove it (logged:
        the reconciler or the next start removes it)."""
        if host is None:
            record = self.ctx.state.vms.get(vm_id)
            host = None if record is None else self.ctx.hosts.get(record.host)
            if host is None:
                return False
        return await remove_vm(self.ctx, host, vm_id)

    async def _await_creation(self, vm: JobVm) -> None:
        """Learn the id of a VM whose CreateVm is in flight (waiting at most CLEANUP_WAIT_S)."""
        creating, vm.creating = vm.creating, None
        if creating is None:
            return
        done, _ = await asyncio.wait({creating}, timeout=CLEANUP_WAIT_S)
        if creating not in done:
            creating.cancel()
        elif not creating.cancelled() and creating.exception() is None:
            vm.vm_id, vm.maybe_created = creating.result(), False

    @staticmethod
    async def _evaluate_by(
        ends_at: float, evaluation: Coroutine[Any, Any, EvaluateResponse]
    ) -> EvaluateResponse:
        """The evaluation's answer if it comes by `ends_at` (loop time), else TimeoutError.

        An answer already arriving when the end is checked (the process was paused, say, while
        the evaluator answered) gets ANSWER_IN_HAND_S more to be read, and is used.
        """
        task = asyncio.ensure_future(evaluation)
        try:
            left = max(0.0, ends_at - asyncio.get_running_loop().time())
            done, _ = await asyncio.wait({task}, timeout=left)
            if not done:
                done, _ = await asyncio.wait({task}, timeout=ANSWER_IN_HAND_S)
            if not done:
                raise TimeoutError
            return task.result()
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait({task})

    async def evaluate_submission(
        self,
        vm_id: str,
        code: str,
        job: JobRecord,
        miner: str,
        allocation: Allocation,
    ) -> EvaluateResponse:
        """`POST /evaluate` on the job VM's evaluator, with no bound of its own (the caller
        bounds it by the job's end); the score is checked finite in [0, 1].

        The answer is read as it streams in and refused past `max_evaluator_answer_bytes`
        (a job error naming the limit), so a huge answer costs no more memory than the bound.
        An evaluator that fails while its host is down fails the job naming the host.
        """
        host = self.ctx.hosts.of(allocation)
        limit = self.ctx.config.engine.max_evaluator_answer_bytes
        body = EvaluateRequest(
            job_id=job.id,
            challenge_id=job.challenge_id,
            submission_id=job.submission_id,
            miner_hotkey=miner,
            code=code,
        )
        try:
            response = await send(
                self.ctx.http,
                "POST",
                host.evaluator_url(allocation.port, "/evaluate"),
                "POST /evaluate",
                # Bounded by the job's end only (_evaluate_by), however long the process pauses.
                deadline=None,
                content=body.model_dump_json().encode(),
                headers={"content-type": "application/json"},
                max_body=limit,
            )
        except AnswerTooLarge:
            raise JobFailed(
                f"evaluator answer larger than {limit} bytes "
                "(engine.max_evaluator_answer_bytes): refused"
            ) from None
        except ClientError as exc:
            where = f" (host {host.name})" if self.ctx.hosts.several else ""
            error = f"evaluator on VM {vm_id}{where} failed: {exc}"
            if host.down:
                error = f"host {host.name} is down ({host.vmm.name} not answering): {error}"
            raise JobFailed(error) from None
        if response.status_code != 200:
            raise JobFailed(
                f"evaluator answered HTTP {response.status_code}: {clean_line(response.text, 300)}"
            )
        try:
            answer = EvaluateResponse.model_validate_json(response.content)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise JobFailed(f"evaluator answer is invalid: {where}: {first['msg']}") from None
        if not math.isfinite(answer.score) or not 0.0 <= answer.score <= 1.0:
            raise JobFailed(
                f"evaluator returned score {answer.score!r}, expected a number in [0, 1]"
            )
        return answer


def _evaluator_lines(lines: list[str]) -> list[str]:
    return [f"[evaluator] {line}" for line in clean_lines(lines, MAX_RESULT_LOG_LINES, 1000)]


def _safe_metrics(metrics: dict[str, object]) -> dict[str, object]:
    """Metrics that serialise as JSON: finite numbers, bools and short sanitised strings."""
    safe: dict[str, object] = {}
    for key, value in list(metrics.items())[:100]:
        name = clean_line(str(key), 100)
        if _is_json_number(value):
            safe[name] = value
        elif isinstance(value, str):
            safe[name] = clean_line(value, 200)
    return safe


def _is_json_number(value: object) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return abs(value) < 2**53
    return isinstance(value, float) and math.isfinite(value)
