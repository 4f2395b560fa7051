"""DstackExecutor: run one job in its own CVM and produce its result.

fetch the submission (a read: retried) → create VM (challenge compose, job env, mapped evaluator
port; retried while the VMM does not answer) → wait for boot and health → `POST /evaluate`
with the submission's code (answer bounded) → validate the score. Everything happens inside
the job timeout. The VM is always removed, whatever happened, including a CreateVm still in
flight when the job is cancelled; the caller releases the job's quota allocation after
`execute_job` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from dataclasses import dataclass

from pydantic import ValidationError

from validator_tui.clients.backoff import Backoff
from validator_tui.clients.errors import AnswerLost, ClientError, VmmError, is_transient
from validator_tui.clients.transport import AnswerTooLarge, send
from validator_tui.engine.challenges import ChallengeManager
from validator_tui.engine.context import EngineContext
from validator_tui.engine.quota import Allocation
from validator_tui.engine.records import JobRecord, JobState, VmKind, VmRecord
from validator_tui.engine.store import StoreError
from validator_tui.engine.vm_ops import find_vms_named, remove_vm, vm_configuration
from validator_tui.engine.vm_ready import VmNotReady, wait_until_ready
from validator_tui.models.platform import EvaluateRequest, EvaluateResponse, JobResults
from validator_tui.models.vmm import VmConfiguration
from validator_tui.sanitize import clean_line, clean_lines

MAX_RESULT_LOG_LINES = 200
MAX_LOG_CHARS = 1000
#: Retry pauses while the platform or the VMM does not answer (inside the job timeout).
RETRY_FIRST_S = 0.5
RETRY_CAP_S = 10.0
#: Longest wait for a CreateVm in flight when its job is cancelled (its id is needed to remove
#: the VM it may create), and for the removal itself.
CLEANUP_WAIT_S = 15.0


class JobFailed(Exception):
    """A job that cannot produce a score; the message is the result's `error`."""


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

    async def execute_job(self, job: JobRecord, allocation: Allocation) -> JobResults:
        """Evaluate `job` in a fresh VM and return its result body.

        Failures (VMM errors, boot timeout, evaluator errors, bad scores, job timeout) come back
        as a result with score 0 and `error` set. Only cancellation propagates, after the VM
        (even one whose CreateVm was in flight) has been removed, or given up on and logged.
        """
        log = JobLog()
        started = time.monotonic()
        vm = JobVm(self.ctx.naming.job_vm(job.id))
        try:
            async with asyncio.timeout(self.ctx.config.engine.job_timeout_s):
                code, miner = await self._fetch_code(job, log)
                if miner and not job.miner_hotkey:
                    job.miner_hotkey = clean_line(miner, 100)
                self._progress(job, JobState.PROVISIONING, "creating VM")
                vm_id = await self.create_vm(job, allocation, vm, log)
                log.add(f"created VM {vm_id} on host port {allocation.port}")
                booted = await self._wait_ready(job, vm_id, allocation, log)
                log.add(f"VM ready in {booted:.3f}s")
                self._progress(job, JobState.RUNNING, "evaluating")
                answer = await self.evaluate_submission(vm_id, code, job, allocation.port)
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
                await self._cleanup(job, vm, log)
        log.add(f"failed: {error}")
        return JobResults(
            score=0.0,
            metrics={},
            logs=log.lines,
            execution_time_ms=int((time.monotonic() - started) * 1000),
            error=error,
        )

    async def _fetch_code(self, job: JobRecord, log: JobLog) -> tuple[str, str]:
        """The submission's code (and miner) through the ORM; a read, so transient failures
        are retried with backoff until the job timeout."""
        if not job.submission_id:
            # Only the claim's answer and `/jobs/pending` name the submission; a job announced
            # over the WebSocket whose claim answer was lost has neither.
            raise JobFailed("submission id unknown: the claim's answer was lost")
        orm = self.ctx.config.orm
        backoff = Backoff(RETRY_FIRST_S, RETRY_CAP_S)
        while True:
            try:
                rows = await self.ctx.platform.execute_orm_query(
                    job.challenge_id, orm.submission_query, [job.submission_id]
                )
                break
            except ClientError as exc:
                if not is_transient(exc):
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
        self, job: JobRecord, allocation: Allocation, vm: JobVm, log: JobLog
    ) -> str:
        """Create the job's VM from the challenge's verified compose; returns its id.

        The VM name is committed to the store before CreateVm, so a crash cannot orphan it.
        While the VMM does not answer (no answer, 5xx) CreateVm is retried with backoff; after
        an answer was lost the VM is looked up by name first, so a retry never makes a second
        one. A VMM refusal (HTTP 400) fails the job.
        """
        compose = self.challenges.compose_for(job.challenge_id)
        if compose is None:
            raise JobFailed("challenge CVM is not active: no verified compose to run")
        try:
            self.ctx.store.upsert_job(job.id, job.challenge_id, "provisioning", vm_name=vm.name)
        except StoreError as exc:
            raise JobFailed(f"not creating a VM: {exc}") from None
        env = {
            "JOB_ID": job.id,
            "CHALLENGE_ID": job.challenge_id,
            "SUBMISSION_ID": job.submission_id,
            "MINER_HOTKEY": job.miner_hotkey,
        }
        config = vm_configuration(
            self.ctx, self.ctx.config.job_vm, vm.name, compose, allocation.port, env
        )
        backoff = Backoff(RETRY_FIRST_S, RETRY_CAP_S)
        while vm.vm_id is None:
            try:
                vm.vm_id = await self._create_once(config, vm)
            except VmmError as exc:
                raise JobFailed(f"CreateVm failed: {exc}") from None
            except ClientError as exc:
                if not is_transient(exc):
                    raise JobFailed(f"CreateVm failed: {exc}") from None
                log.add(f"CreateVm failed, retrying: {exc}")
                await asyncio.sleep(backoff.next())
        vm_id = vm.vm_id
        with contextlib.suppress(StoreError):  # the committed name finds the VM after a crash
            self.ctx.store.upsert_job(job.id, job.challenge_id, "provisioning", vm_id=vm_id)
        job.vm_id, job.host_port = vm_id, allocation.port
        self.ctx.state.put_vm(
            VmRecord(vm_id, vm.name, VmKind.JOB, job.id, status="", host_port=allocation.port)
        )
        self.ctx.state.put_job(job, f"VM {vm_id} created")
        return vm_id

    async def _create_once(self, config: VmConfiguration, vm: JobVm) -> str:
        """One CreateVm, run as its own task so that a cancelled job can still learn the id.
        After a lost answer, the VM found by name (if any) is the result."""
        if vm.maybe_created:
            found = await find_vms_named(self.ctx, vm.name)
            if found:
                vm.maybe_created = False
                return found[0]
        vm.maybe_created = True
        vm.creating = self.ctx.tasks.spawn(
            self.ctx.vmm.create_vm(config), name=f"create-{vm.name}", quiet=True
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

    async def _cleanup(self, job: JobRecord, vm: JobVm, log: JobLog) -> None:
        """Remove the job's VM in a task of its own that a second cancel does not interrupt
        (shutdown cancels and awaits it through the task registry when time is up)."""
        task = self.ctx.tasks.spawn(self._remove(job, vm), name=f"remove-{vm.name}")
        await asyncio.shield(task)
        if vm.vm_id is not None:
            log.add(f"removed VM {vm.vm_id}")

    async def _remove(self, job: JobRecord, vm: JobVm) -> None:
        """Wait (bounded) for a CreateVm in flight, then remove the VM by id, or by name when
        the id never came back. Whatever cannot be removed is logged (the reconciler or the
        next start removes it)."""
        try:
            async with asyncio.timeout(2 * CLEANUP_WAIT_S):
                await self._await_creation(vm)
                ids = [vm.vm_id] if vm.vm_id is not None else []
                if vm.maybe_created and not ids:
                    ids = await find_vms_named(self.ctx, vm.name)
                for vm_id in ids:
                    if not await remove_vm(self.ctx, vm_id):
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

    async def _wait_ready(
        self, job: JobRecord, vm_id: str, allocation: Allocation, log: JobLog
    ) -> float:
        def on_info(info: object) -> None:
            vm = self.ctx.state.vms.get(vm_id)
            status = getattr(info, "status", "")
            progress = getattr(info, "boot_progress", "")
            if vm is not None and (vm.status, vm.boot_progress) != (status, progress):
                vm.status, vm.boot_progress = status, progress
                self.ctx.state.put_vm(vm)

        return await wait_until_ready(
            self.ctx.vmm,
            self.ctx.http,
            vm_id,
            self._base_url(allocation.port) + "/health",
            timeout=self.ctx.config.engine.boot_timeout_s,
            max_interval=self.ctx.config.engine.vm_poll_interval_s,
            on_info=on_info,
        )

    def _base_url(self, port: int | None) -> str:
        return f"http://{self.ctx.config.host_ports.host_address}:{port}"

    async def evaluate_submission(
        self, vm_id: str, code: str, job: JobRecord, host_port: int | None = None
    ) -> EvaluateResponse:
        """`POST /evaluate` on the job VM's evaluator; the score is checked finite in [0, 1].

        The answer is read as it streams in and refused past `max_evaluator_answer_bytes`
        (a job error naming the limit), so a huge answer costs no more memory than the bound.
        """
        port = host_port if host_port is not None else job.host_port
        limit = self.ctx.config.engine.max_evaluator_answer_bytes
        body = EvaluateRequest(
            job_id=job.id,
            challenge_id=job.challenge_id,
            submission_id=job.submission_id,
            miner_hotkey=job.miner_hotkey,
            code=code,
        )
        try:
            response = await send(
                self.ctx.http,
                "POST",
                self._base_url(port) + "/evaluate",
                "POST /evaluate",
                deadline=self.ctx.config.engine.job_timeout_s,
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
            raise JobFailed(f"evaluator on VM {vm_id} failed: {exc}") from None
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

    async def destroy_vm(self, vm_id: str) -> None:
        """Remove the VM (retrying briefly); an unknown VM counts as removed."""
        await remove_vm(self.ctx, vm_id)

    def _progress(self, job: JobRecord, state: JobState, note: str) -> None:
        job.state = state
        self.ctx.state.put_job(job, note)


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
