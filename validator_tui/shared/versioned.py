"""The one change feed: records by id, each with the version at which it last changed, so a
reader asks "what changed after version N?" and gets the changed records and removed ids.

The engine's state and an attached console's replica both keep their records here and build
their `StateDelta` with `VersionedRecords.delta`.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, Protocol, TypeVar

from validator_tui.shared.delta import Header, StateDelta
from validator_tui.shared.records import ChallengeRecord, Event, HostRecord, JobRecord, VmRecord

#: Removals a change feed remembers (per kind of record) for readers that ask what changed; a
#: reader further behind gets everything instead. Readers ask every 0.1-0.5 s; at 100 jobs a
#: second this is 40 s of removals, and each remembered id costs ~180 bytes for good.
MAX_TOMBSTONES = 4096


class _Identified(Protocol):
    @property
    def id(self) -> str: ...


R = TypeVar("R", bound=_Identified)


class VersionedTable(Generic[R]):
    """Records by id, remembering the version at which each last changed and the latest
    `MAX_TOMBSTONES` removals."""

    def __init__(self) -> None:
        self.items: dict[str, R] = {}
        #: Ids by the version of their last change, oldest change first (a plain dict keeps
        #: insertion order; an id changed again is moved to the end).
        self._touched: dict[str, int] = {}
        self._removed: deque[tuple[int, str]] = deque(maxlen=MAX_TOMBSTONES)

    def put(self, item: R, version: int) -> None:
        """Insert or replace `item`, changed at `version`."""
        self.items[item.id] = item
        self.touch(item.id, version)

    def touch(self, key: str, version: int) -> None:
        """The record under `key` changed (in place) at `version`."""
        self._touched.pop(key, None)
        self._touched[key] = version

    def drop(self, key: str, version: int) -> None:
        """Remove the record under `key` (if held), at `version`."""
        if self.items.pop(key, None) is not None:
            self._touched.pop(key, None)
            self._removed.append((version, key))

    def since(self, version: int) -> tuple[list[R], list[str], bool]:
        """Records changed after `version` (latest change first), ids removed after it, and
        whether `version` is too old to answer exactly (removals were forgotten)."""
        if len(self._removed) == MAX_TOMBSTONES and self._removed[0][0] > version:
            return [], [], True
        changed: list[R] = []
        for key in reversed(self._touched):
            if self._touched[key] <= version:
                break
            changed.append(self.items[key])
        return changed, [key for v, key in self._removed if v > version], False


class _Copier(Protocol):
    def __call__(self, record: R, /) -> R: ...


def _same(record: R) -> R:
    return record


class VersionedRecords:
    """The four kinds of records a console shows, each in its versioned table."""

    def __init__(self) -> None:
        self.jobs: VersionedTable[JobRecord] = VersionedTable()
        self.challenges: VersionedTable[ChallengeRecord] = VersionedTable()
        self.vms: VersionedTable[VmRecord] = VersionedTable()
        #: The pool is fixed for an engine's life: hosts are never removed.
        self.hosts: VersionedTable[HostRecord] = VersionedTable()

    def delta(
        self,
        version: int,
        *,
        current: int,
        header: Header,
        events: list[Event],
        full: bool = False,
        copy: _Copier = _same,
    ) -> StateDelta:
        """What changed after `version`, as of `current`: everything when `full` is asked or
        the tables cannot answer exactly. Jobs, challenges and VMs are passed through `copy`
        (a reader that must not share the writer's records asks for copies)."""
        jobs, removed_jobs, stale_jobs = self.jobs.since(version)
        challenges, removed_challenges, stale_challenges = self.challenges.since(version)
        vms, removed_vms, stale_vms = self.vms.since(version)
        hosts, _, _ = self.hosts.since(version)
        if full or version == 0 or stale_jobs or stale_challenges or stale_vms:
            jobs = list(self.jobs.items.values())
            challenges = list(self.challenges.items.values())
            vms = list(self.vms.items.values())
            hosts = list(self.hosts.items.values())
            removed_jobs, removed_challenges, removed_vms = [], [], []
            full = True
        return StateDelta(
            current,
            full,
            [copy(job) for job in jobs],
            removed_jobs,
            [copy(challenge) for challenge in challenges],
            removed_challenges,
            [copy(vm) for vm in vms],
            removed_vms,
            events,
            header,
            hosts,
        )


class RecordViews:
    """The records of a change feed as dicts by id (the engine's state and a console's replica
    both answer `jobs`, `challenges`, `vms` and `hosts` this way). Read them; change them only
    through the feed's own methods."""

    _records: VersionedRecords

    @property
    def jobs(self) -> dict[str, JobRecord]:
        return self._records.jobs.items

    @property
    def challenges(self) -> dict[str, ChallengeRecord]:
        return self._records.challenges.items

    @property
    def vms(self) -> dict[str, VmRecord]:
        return self._records.vms.items

    @property
    def hosts(self) -> dict[str, HostRecord]:
        return self._records.hosts.items
