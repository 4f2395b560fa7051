"""`Replica`: the engine's state as an attached console holds it, rebuilt from the state
frames the engine pushes, answering `changes_since` locally (the console never waits on the
socket).

Versions and event numbers here are the replica's own: the console may outlive one engine and
attach to the next (whose counters start again), and still only ever sees them increase.
Records are replaced, never changed in place, so the console may keep what it was given.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import replace

from validator_tui.control.frames import StateFrame
from validator_tui.shared.delta import Header, StateDelta
from validator_tui.shared.records import ChallengeRecord, Event, HostRecord, JobRecord, VmRecord
from validator_tui.shared.versioned import RecordViews, VersionedRecords

MAX_EVENTS = 2000


class Replica(RecordViews):
    """Applies state frames; answers `changes_since` and `job` from what it holds."""

    def __init__(self, hotkey: str = "") -> None:
        #: This console may only look: its header says READ-ONLY whatever the engine's says.
        self.read_only = False
        self.version = 0
        self.header = Header(hotkey=hotkey)
        self.engine_version = 0
        #: Snapshots swapped in so far (a console waits for the first).
        self.snapshots = 0
        self._reset_at = 0
        self._records = VersionedRecords()
        self._staging: (
            tuple[list[JobRecord], list[ChallengeRecord], list[VmRecord], list[HostRecord]] | None
        ) = None
        self.events: deque[Event] = deque(maxlen=MAX_EVENTS)
        self._event_seq = 0
        self._engine_event_seq = 0

    def new_engine(self) -> None:
        """The next frames come from another engine (its event numbers start again)."""
        self._engine_event_seq = 0
        self._staging = None

    def reconnected(self) -> None:
        """A new connection starts: a snapshot half received before is dropped."""
        self._staging = None

    def apply(self, frame: StateFrame) -> None:
        """Take one state frame (a snapshot is swapped in whole when its last part arrives)."""
        pending = self.version + 1
        if frame.snapshot:
            if self._staging is None:
                self._staging = ([], [], [], [])
            jobs, challenges, vms, hosts = self._staging
            jobs.extend(frame.jobs)
            challenges.extend(frame.challenges)
            vms.extend(frame.vms)
            hosts.extend(frame.hosts)
        else:
            for host in frame.hosts:
                self._records.hosts.put(host, pending)
            for table, changed, removed in (
                (self._records.jobs, frame.jobs, frame.removed_jobs),
                (self._records.challenges, frame.challenges, frame.removed_challenges),
                (self._records.vms, frame.vms, frame.removed_vms),
            ):
                for key in removed:
                    table.drop(key, pending)
                for item in changed:
                    table.put(item, pending)  # type: ignore[arg-type]
        self._add_events(frame.events)
        if frame.final:
            if frame.snapshot and self._staging is not None:
                self._swap_in(*self._staging, pending)
                self._staging = None
            if frame.header is not None:
                self.header = frame.header
                if self.read_only and not frame.header.read_only:
                    self.header = replace(frame.header, read_only=True)
            self.engine_version = frame.version
            self.version = pending

    def _swap_in(
        self,
        jobs: list[JobRecord],
        challenges: list[ChallengeRecord],
        vms: list[VmRecord],
        hosts: list[HostRecord],
        version: int,
    ) -> None:
        self._records = VersionedRecords()
        for host in hosts:
            self._records.hosts.put(host, version)
        for job in jobs:
            self._records.jobs.put(job, version)
        for challenge in challenges:
            self._records.challenges.put(challenge, version)
        for vm in vms:
            self._records.vms.put(vm, version)
        self._reset_at = version
        self.snapshots += 1

    def _add_events(self, events: list[Event]) -> None:
        for event in events:
            if event.seq <= self._engine_event_seq:
                continue
            self._engine_event_seq = event.seq
            self._event_seq += 1
            self.events.append(replace(event, seq=self._event_seq))

    def note(self, level: str, kind: str, message: str) -> None:
        """An event of the console's own (the link to the engine), shown in the event log."""
        self._event_seq += 1
        self.events.append(Event(self._event_seq, time.time(), level, kind, message))
        self.version += 1

    def changes_since(self, version: int, event_seq: int) -> StateDelta:
        """What changed after `version` (a reader from before the last snapshot, or from the
        future, gets everything), and the events after `event_seq`."""
        events = [e for e in self.events if e.seq > event_seq]
        full = version < self._reset_at or version > self.version
        return self._records.delta(
            version, current=self.version, header=self.header, events=events, full=full
        )

    def job(self, job_id: str) -> JobRecord | None:
        return self._records.jobs.items.get(job_id)
