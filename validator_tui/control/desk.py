"""`CommandDesk`: every operator command, from whichever console, through one door.

Commands run one at a time, in the order they arrived, on the engine's loop; each is written
to the engine's log and event log with the console it came from and its outcome. A read-only
console's commands are refused here, by the engine, whatever its UI shows.
"""

from __future__ import annotations

import asyncio
import logging
from typing import assert_never

from validator_tui.control import frames
from validator_tui.engine.records import Outcome
from validator_tui.engine.validator import Validator
from validator_tui.sanitize import clean_line

logger = logging.getLogger("validator_tui.operator")

READ_ONLY_REFUSAL = "read-only console: commands are refused by the engine"


def describe(command: frames.Command) -> str:
    """What the command does, for the log (sanitised; never the ORM parameters)."""
    match command:
        case frames.Claim(job_id=job_id):
            text = f"claim job {job_id}"
        case frames.Cancel(job_id=job_id):
            text = f"cancel job {job_id}"
        case frames.Rebuild(challenge_id=challenge_id):
            text = f"rebuild the CVM of challenge {challenge_id}"
        case frames.StartVm(vm_id=vm_id):
            text = f"start VM {vm_id}"
        case frames.StopVm(vm_id=vm_id):
            text = f"stop VM {vm_id}"
        case frames.RemoveVm(vm_id=vm_id):
            text = f"remove VM {vm_id}"
        case frames.SetAutoClaim(enabled=enabled):
            text = f"auto-claim {'on' if enabled else 'off'}"
        case frames.OrmQuery(challenge_id=challenge_id, sql=sql):
            text = f"ORM query on challenge {challenge_id}: {sql}"
        case frames.StopValidator():
            text = "stop the validator"
        case frames.RetryDeadLetter(job_id=job_id):
            text = f"send the dead letter of job {job_id} again"
        case frames.DiscardDeadLetter(job_id=job_id):
            text = f"discard the dead letter of job {job_id}"
        case frames.DrainHost(host=host):
            text = f"drain host {host}"
        case frames.UndrainHost(host=host):
            text = f"undrain host {host}"
        case _:
            assert_never(command)
    return clean_line(text, 200)


class CommandDesk:
    """Runs operator commands for every console of one engine (use on the engine's loop)."""

    def __init__(self, validator: Validator) -> None:
        self.validator = validator
        self._turn: asyncio.Lock | None = None

    async def run(self, origin: str, command: frames.Command, *, read_only: bool) -> Outcome:
        """Run `command` for the console `origin` after the commands before it; log it."""
        if self._turn is None:
            self._turn = asyncio.Lock()
        what = describe(command)
        if read_only or self.validator.read_only:
            outcome = Outcome.refused(READ_ONLY_REFUSAL)
        else:
            async with self._turn:
                outcome = await self._dispatch(command)
        self._record(origin, what, outcome)
        return outcome

    async def _dispatch(self, command: frames.Command) -> Outcome:
        v = self.validator
        match command:
            case frames.Claim(job_id=job_id):
                return await v.claim(job_id)
            case frames.Cancel(job_id=job_id):
                return await v.cancel(job_id)
            case frames.Rebuild(challenge_id=challenge_id):
                return await v.rebuild(challenge_id)
            case frames.StartVm(vm_id=vm_id):
                return await v.start_vm(vm_id)
            case frames.StopVm(vm_id=vm_id):
                return await v.stop_vm(vm_id)
            case frames.RemoveVm(vm_id=vm_id):
                return await v.remove_vm(vm_id)
            case frames.SetAutoClaim(enabled=enabled):
                return await v.set_auto_claim(enabled)
            case frames.OrmQuery(challenge_id=challenge_id, sql=sql, params=params):
                return await v.orm_query(challenge_id, sql, list(params))
            case frames.StopValidator():
                return await self._stop()
            case frames.RetryDeadLetter(job_id=job_id):
                return await v.retry_dead_letter(job_id)
            case frames.DiscardDeadLetter(job_id=job_id):
                return await v.discard_dead_letter(job_id)
            case frames.DrainHost(host=host):
                return await v.drain_host(host)
            case frames.UndrainHost(host=host):
                return await v.undrain_host(host)
        assert_never(command)

    async def _stop(self) -> Outcome:
        running = self.validator.running_job_count()
        await self.validator.stop()
        return Outcome.done(
            f"the validator is stopping: {running} running job(s) get their result, "
            "then the engine exits"
        )

    def _record(self, origin: str, what: str, outcome: Outcome) -> None:
        verdict = "done" if outcome.ok else "refused"
        text = clean_line(f"{origin}: {what} -> {verdict}: {outcome.message}", 500)
        self.validator.state.event("info" if outcome.ok else "warn", "operator", text)
        logger.log(
            logging.INFO if outcome.ok else logging.WARNING, text, extra={"kind": "operator"}
        )
