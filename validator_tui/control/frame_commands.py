"""`ClientCommands`: the console's commands, each sent as its command frame to the engine's
command desk, for every `EngineClient` alike (in-process, control socket, the tests' fake)."""

from __future__ import annotations

from typing import Protocol

from validator_tui.control import frames
from validator_tui.shared.records import Outcome

#: What the engine answers every command of a read-only console.
READ_ONLY_REFUSAL = "read-only console: commands are refused"


class ClientCommands(Protocol):
    """Every command as a frame (see the frame classes for what each does); an implementation
    says how a frame reaches the engine's command desk and its `Outcome` comes back."""

    async def command(self, command: frames.Command) -> Outcome:
        """Run `command` through the engine's command desk: done, or refused with the reason
        (every command of a read-only client is refused by the engine itself)."""
        ...

    async def claim(self, job_id: str) -> Outcome:
        return await self.command(frames.Claim(job_id=job_id))

    async def cancel(self, job_id: str) -> Outcome:
        return await self.command(frames.Cancel(job_id=job_id))

    async def rebuild(self, challenge_id: str) -> Outcome:
        return await self.command(frames.Rebuild(challenge_id=challenge_id))

    async def start_vm(self, vm_id: str) -> Outcome:
        return await self.command(frames.StartVm(vm_id=vm_id))

    async def stop_vm(self, vm_id: str) -> Outcome:
        return await self.command(frames.StopVm(vm_id=vm_id))

    async def remove_vm(self, vm_id: str) -> Outcome:
        return await self.command(frames.RemoveVm(vm_id=vm_id))

    async def set_auto_claim(self, enabled: bool) -> Outcome:
        return await self.command(frames.SetAutoClaim(enabled=enabled))

    async def drain_host(self, host: str) -> Outcome:
        return await self.command(frames.DrainHost(host=host))

    async def undrain_host(self, host: str) -> Outcome:
        return await self.command(frames.UndrainHost(host=host))

    async def orm_query(self, challenge_id: str, sql: str, params: list[object]) -> Outcome:
        return await self.command(
            frames.OrmQuery(challenge_id=challenge_id, sql=sql, params=params)  # type: ignore[arg-type]
        )

    async def stop_validator(self) -> Outcome:
        return await self.command(frames.StopValidator())

    async def retry_dead_letter(self, job_id: str) -> Outcome:
        return await self.command(frames.RetryDeadLetter(job_id=job_id))

    async def discard_dead_letter(self, job_id: str) -> Outcome:
        return await self.command(frames.DiscardDeadLetter(job_id=job_id))
