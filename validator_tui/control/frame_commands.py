"""`FrameCommands`: the console's commands, each as the command frame the engine's command
desk runs, for the in-process engine and the socket client alike."""

from __future__ import annotations

from abc import ABC, abstractmethod

from validator_tui.control import frames
from validator_tui.engine.records import Outcome


class FrameCommands(ABC):
    """Every command of `EngineClient` as a frame; a subclass says how a frame reaches the
    engine's command desk and its `Outcome` comes back (`_command`)."""

    @abstractmethod
    async def _command(self, command: frames.Command) -> Outcome: ...

    async def claim(self, job_id: str) -> Outcome:
        return await self._command(frames.Claim(job_id=job_id))

    async def cancel(self, job_id: str) -> Outcome:
        return await self._command(frames.Cancel(job_id=job_id))

    async def rebuild(self, challenge_id: str) -> Outcome:
        return await self._command(frames.Rebuild(challenge_id=challenge_id))

    async def start_vm(self, vm_id: str) -> Outcome:
        return await self._command(frames.StartVm(vm_id=vm_id))

    async def stop_vm(self, vm_id: str) -> Outcome:
        return await self._command(frames.StopVm(vm_id=vm_id))

    async def remove_vm(self, vm_id: str) -> Outcome:
        return await self._command(frames.RemoveVm(vm_id=vm_id))

    async def set_auto_claim(self, enabled: bool) -> Outcome:
        return await self._command(frames.SetAutoClaim(enabled=enabled))

    async def drain_host(self, host: str) -> Outcome:
        return await self._command(frames.DrainHost(host=host))

    async def undrain_host(self, host: str) -> Outcome:
        return await self._command(frames.UndrainHost(host=host))

    async def orm_query(self, challenge_id: str, sql: str, params: list[object]) -> Outcome:
        return await self._command(
            frames.OrmQuery(challenge_id=challenge_id, sql=sql, params=params)  # type: ignore[arg-type]
        )

    async def stop_validator(self) -> Outcome:
        return await self._command(frames.StopValidator())

    async def retry_dead_letter(self, job_id: str) -> Outcome:
        """Send a result the platform refused again, now."""
        return await self._command(frames.RetryDeadLetter(job_id=job_id))

    async def discard_dead_letter(self, job_id: str) -> Outcome:
        """Give up on a result the platform refused."""
        return await self._command(frames.DiscardDeadLetter(job_id=job_id))
