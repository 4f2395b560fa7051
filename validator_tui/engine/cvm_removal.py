"""Removing challenge CVMs: each exactly once, with what it held released; a CVM its host would
not remove (or that was on a host that went down) is left behind and removed once that host
answers again."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from validator_tui.engine.challenge_book import ChallengeBook, ChallengeVm, clear_vm
from validator_tui.engine.hosts import Host
from validator_tui.engine.store import StoreError
from validator_tui.engine.vm_ops import remove_vm


class CvmRemoval:
    """Removes the challenge CVMs of `book` and keeps those left behind on a host."""

    def __init__(self, book: ChallengeBook) -> None:
        self.book = book
        self.ctx = book.ctx
        #: CVMs left on a host that was down (or refused their removal), by VM id: the host's
        #: name. Their store rows stay until they are removed.
        self._left_behind: dict[str, str] = {}
        self._freed_listeners: list[Callable[[], None]] = []

    def on_freed(self, listener: Callable[[], None]) -> None:
        """Call `listener` each time a removed CVM gives its resources back."""
        self._freed_listeners.append(listener)

    async def destroy(self, vm: ChallengeVm, why: str) -> None:
        """Remove the CVM and release what it held, exactly once, also when the work that
        destroys it is cancelled (the removal goes on in a task of its own); a challenge record
        that showed it shows no VM any more. A CVM its host would not remove is left behind
        (removed once the host answers again)."""
        host = self.ctx.hosts.of(vm.allocation)
        removal = self.ctx.tasks.spawn(
            self.remove_vm_id(host, vm.vm_id, why), name=f"remove-cvm-{vm.vm_id}"
        )
        try:
            await asyncio.shield(removal)
        finally:
            for record in self.ctx.state.challenges.values():
                if record.vm_id == vm.vm_id:
                    clear_vm(record)
                    self.ctx.state.put_challenge(record)
            removed = (
                removal.done()
                and not removal.cancelled()
                and removal.exception() is None
                and removal.result()
            )
            if not removed:
                self.leave_behind(vm.vm_id, host)
            if self.book.release(vm.allocation):
                for listener in self._freed_listeners:
                    listener()

    async def remove_vm_id(self, host: Host, vm_id: str, why: str) -> bool:
        """Remove one of our CVMs from `host` and forget its store row; True once it is gone."""
        if not await remove_vm(self.ctx, host, vm_id):
            return False
        with contextlib.suppress(StoreError):
            self.ctx.store.delete_challenge_vm(vm_id)
        self._left_behind.pop(vm_id, None)
        self.ctx.log("info", "cvm", f"removed CVM {vm_id}{self.book.on(host)} ({why})", vm_id=vm_id)
        return True

    def leave_behind(self, vm_id: str, host: Host) -> None:
        """`vm_id` stays on `host` for now: no longer ours to run, removed once it answers."""
        self._left_behind[vm_id] = host.name
        self.ctx.state.drop_vm(vm_id)

    def left_behind(self, host: Host) -> list[str]:
        """CVMs left on `host` that are to be removed once it answers."""
        return [vm_id for vm_id, name in self._left_behind.items() if name == host.name]

    async def remove_left_behind(self, host: Host, listed: set[str]) -> None:
        """`host` answers and lists `listed`: remove the CVMs left there (those it no longer
        lists are forgotten)."""
        for vm_id in self.left_behind(host):
            if vm_id in listed:
                await self.remove_vm_id(host, vm_id, f"left behind on host {host.name}")
            else:
                self._left_behind.pop(vm_id, None)
                with contextlib.suppress(StoreError):
                    self.ctx.store.delete_challenge_vm(vm_id)
