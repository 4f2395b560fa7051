"""Fault injection for the Platform API simulator: failing or slow REST requests, refusals
(every request, or the next WebSocket handshakes) and hand-edited listing entries."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

#: The lists the platform sends, by the key their envelope holds them under.
ListName = Literal["jobs", "challenges"]


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
    """A queue of faults (each request takes, and uses up, the first one that matches it) and
    the refusals in force: a window refusing every request, a count of handshakes to refuse."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        #: While set, (status, until on time.monotonic): every request is refused.
        self._refusal: tuple[int, float] | None = None
        self._handshakes_to_refuse = 0

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

    def refuse_everything(self, status: int, seconds: float) -> None:
        """Refuse every request with `status` (401 or 403) for `seconds` (0 = stop now)."""
        if status not in (401, 403):
            raise ValueError("a refusal is HTTP 401 or 403")
        self._refusal = (status, time.monotonic() + seconds) if seconds > 0 else None

    def refusing(self) -> int | None:
        """The status every request gets now, while a refusal is in force."""
        if self._refusal is None:
            return None
        status, until = self._refusal
        if time.monotonic() >= until:
            self._refusal = None
            return None
        return status

    def refuse_handshakes(self, count: int) -> None:
        """Refuse the next `count` WebSocket handshakes (added to any still pending)."""
        self._handshakes_to_refuse += max(0, count)

    def take_handshake_refusal(self) -> bool:
        """Whether to refuse this handshake; uses up one of the pending refusals."""
        if self._handshakes_to_refuse <= 0:
            return False
        self._handshakes_to_refuse -= 1
        return True


class ListingEdits:
    """Raw entries served at the end of a listing, and field overrides of listed entries."""

    def __init__(self) -> None:
        self._raw: dict[ListName, list[Any]] = {"jobs": [], "challenges": []}
        self._overrides: dict[ListName, dict[str, dict[str, Any]]] = {
            "jobs": {},
            "challenges": {},
        }

    def add_raw(self, listing: ListName, entry: Any) -> None:
        """Serve `entry` (any JSON value) at the end of `listing`."""
        self._raw[listing].append(entry)

    def override(self, listing: ListName, entry_id: str, fields: dict[str, Any]) -> None:
        """Serve the entry `entry_id` of `listing` with `fields` replaced."""
        self._overrides[listing].setdefault(entry_id, {}).update(fields)

    def clear(self) -> None:
        """No raw entries, no overrides."""
        for raw in self._raw.values():
            raw.clear()
        for overrides in self._overrides.values():
            overrides.clear()

    def served(self, listing: ListName, entries: list[dict[str, Any]]) -> list[Any]:
        """`entries` with their overrides applied, then the raw entries."""
        overrides = self._overrides[listing]
        served: list[Any] = [entry | overrides.get(entry["id"], {}) for entry in entries]
        return served + self._raw[listing]
