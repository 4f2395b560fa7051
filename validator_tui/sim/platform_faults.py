"""Fault injection for the Platform API simulator's REST routes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Fault:
    """The next `count` requests matching `method` and `path_prefix` misbehave.

    `status` 0 only delays the request by `delay_s` and then serves it normally; any other
    status answers with that status and `body` (after `delay_s`).
    """

    status: int = 503
    count: int = 1
    path_prefix: str = ""
    method: str = ""
    delay_s: float = 0.0
    body: str = ""
    retry_after_s: float | None = None

    def matches(self, method: str, path: str) -> bool:
        return (not self.method or self.method.upper() == method) and path.startswith(
            self.path_prefix
        )


class FaultInjector:
    """A queue of faults; each request takes (and uses up) the first one that matches it."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        """Arm `fault` (ignored if its count is not positive)."""
        if fault.count > 0:
            self._faults.append(fault)

    def take(self, method: str, path: str) -> Fault | None:
        """The fault to apply to this request, if any; its count is decremented."""
        for fault in self._faults:
            if fault.matches(method, path):
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def clear(self) -> None:
        """Disarm every fault."""
        self._faults.clear()
