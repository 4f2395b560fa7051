"""The results outbox: every result is stored before its first POST and sent until the
platform answers for it (accepted, duplicate, cancelled, not ours, or refused as a dead
letter). Dead letters stay in the store until the operator retries or discards them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from validator_tui.clients.backoff import Backoff
from validator_tui.clients.errors import ApiError, ClientError, is_transient
from validator_tui.clients.platform import SubmitOutcome
from validator_tui.engine import outbox_admin
from validator_tui.engine.context import EngineContext
from validator_tui.engine.health import RefusalBudget
from validator_tui.engine.store import StoreError
from validator_tui.shared.records import Outcome, ResultStatus

DoneCallback = Callable[[str, ResultStatus, str], None]


class ResultOutbox:
    """Sends queued results concurrently; a restart resumes whatever was not answered."""

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx
        self._on_done: list[DoneCallback] = []
        self._senders: dict[str, asyncio.Task[None]] = {}

    def on_done(self, listener: DoneCallback) -> None:
        """Call `listener(job_id, status, detail)` each time the platform answers for a
        result (listeners in the order they were added)."""
        self._on_done.append(listener)

    @property
    def pending(self) -> int:
        return len(self._senders)

    def resume(self) -> int:
        """Start sending every result a previous run left unanswered; returns how many."""
        entries = self.ctx.store.pending_results()
        for entry in entries:
            self.enqueue(entry.job_id, entry.body)
        return len(entries)

    def enqueue(self, job_id: str, body: bytes, *, claim_unsure: bool = False) -> None:
        """Send `body` as the result of `job_id` (already committed to the store by the caller,
        or kept here in memory when the store cannot be written).

        `claim_unsure`: the claim's answer never came, so the job may be someone else's; a
        lasting 403 then means "not ours" (recorded `not_ours`), not a dead letter.
        """
        if job_id in self._senders:
            return
        self._senders[job_id] = self.ctx.tasks.spawn(
            self._send(job_id, body, claim_unsure), name=f"result-{job_id}"
        )
        self._publish()

    def drop(self, job_id: str) -> bool:
        """The platform cancelled the job: never send its result. True if one was queued."""
        task = self._senders.pop(job_id, None)
        if task is None:
            return False
        task.cancel()
        self._mark(job_id, ResultStatus.DROPPED, "job cancelled by the platform")
        self._publish()
        return True

    async def _send(self, job_id: str, body: bytes, claim_unsure: bool) -> None:
        backoff = Backoff(1.0, self.ctx.config.engine.ws_backoff_cap_s)
        refusals = RefusalBudget(self.ctx.platform_health)
        try:
            while True:
                try:
                    outcome = await self.ctx.platform.submit_results(job_id, body)
                except ApiError as exc:
                    if not is_transient(exc) and not refusals.retry(exc):
                        not_ours = exc.status == 403 and claim_unsure
                        status = ResultStatus.NOT_OURS if not_ours else ResultStatus.DEAD
                        self._finish(job_id, status, str(exc))
                        return
                    error = str(exc)
                except ClientError as exc:
                    error = str(exc)
                else:
                    cancelled = outcome is SubmitOutcome.CANCELLED
                    sent = ResultStatus.DROPPED if cancelled else ResultStatus.SENT
                    self._finish(job_id, sent, outcome.value)
                    return
                self._note_attempt(job_id, error)
                await asyncio.sleep(backoff.next())
        finally:
            if self._senders.get(job_id) is asyncio.current_task():
                self._senders.pop(job_id, None)
                self._publish()

    def _finish(self, job_id: str, status: ResultStatus, detail: str) -> None:
        self._mark(job_id, status, detail if status is not ResultStatus.SENT else "")
        level = "error" if status is ResultStatus.DEAD else "warn"
        if status is ResultStatus.DEAD:
            self.ctx.log(
                level,
                "result",
                f"result refused (dead letter; `validator-tui outbox list`): {detail}",
                job_id=job_id,
            )
            self.ctx.state.header.counters.dead_letters += 1
        elif status is not ResultStatus.SENT:
            self.ctx.log(level, "result", f"result {status}: {detail}", job_id=job_id)
        for listener in self._on_done:
            listener(job_id, status, detail)

    # -- dead letters -------------------------------------------------------------------------

    def count_dead_letters(self) -> None:
        """Set the header's dead-letter counter from the store (start-up, retry, discard)."""
        try:
            dead = self.ctx.store.count_results(ResultStatus.DEAD)
        except StoreError:
            return
        self.ctx.state.header.counters.dead_letters = dead
        self.ctx.state.header_changed()

    def retry_dead_letter(self, job_id: str) -> Outcome:
        """Send a dead letter again, now (as a new attempt: the refusal retries start over)."""
        outcome = outbox_admin.retry_dead_letter(self.ctx.store, job_id)
        if not outcome.ok:
            return outcome
        self.count_dead_letters()
        self.ctx.log("info", "result", "operator: dead letter sent again", job_id=job_id)
        try:
            body = self.ctx.store.result_body(job_id)
        except StoreError:
            body = None
        if body is None:
            return Outcome.done(f"result of job {job_id} queued again: sent at the next start")
        self.enqueue(job_id, body)
        return Outcome.done(f"result of job {job_id} queued again")

    def discard_dead_letter(self, job_id: str) -> Outcome:
        """Give up on a dead letter for good (kept in the store as `discarded`)."""
        outcome = outbox_admin.discard_dead_letter(self.ctx.store, job_id)
        if outcome.ok:
            self.count_dead_letters()
            self.ctx.log("info", "result", "operator: dead letter discarded", job_id=job_id)
        return outcome

    def _mark(self, job_id: str, status: ResultStatus, detail: str) -> None:
        try:
            self.ctx.store.mark_result(job_id, status, detail)
        except StoreError as exc:
            self.ctx.log("error", "store", str(exc), job_id=job_id)

    def _note_attempt(self, job_id: str, error: str) -> None:
        try:
            self.ctx.store.note_attempt(job_id, error)
        except StoreError:
            return

    def _publish(self) -> None:
        self.ctx.state.header.counters.outbox_pending = len(self._senders)
        self.ctx.state.header_changed()

    async def flush(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for every queued result; True if all were answered."""
        tasks = list(self._senders.values())
        if not tasks:
            return True
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        return not pending
