"""The engine's one in-memory state, with a versioned change feed and a bounded event log.

Writers (engine components) call the `put_*`/`drop_*`/`event` methods; every change bumps
`version`. Readers call `changes_since(version)` whenever they like: they get copies of what
changed since then, so a slow reader costs the engine nothing and memory stays bounded
(finished jobs beyond `max_job_history`, events beyond `max_events` are dropped).
"""

from __future__ import annotations

import copy
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Unpack

from validator_tui.shared.delta import THROUGHPUT_BUCKET_S, Header, StateDelta
from validator_tui.shared.records import (
    ChallengeRecord,
    Event,
    EventRefs,
    HostRecord,
    JobRecord,
    JobState,
    TimelineEntry,
    VmRecord,
)
from validator_tui.shared.versioned import RecordViews, VersionedRecords

THROUGHPUT_BUCKETS = 60
MAX_TIMELINE = 50
#: Finished jobs keep their logs, metrics and full timeline only while among the latest this many;
#: older ones keep state, score, error and a short timeline (bounded memory over weeks).
DETAILED_FINISHED_JOBS = 200
SHORT_TIMELINE = 2
#: Timeline notes up to this long are interned: the common ones ("claimed", "result sent", …)
#: are then one string for every job in the history.
INTERNED_NOTE_CHARS = 48


def _shared_note(note: str) -> str:
    """One copy of a common timeline note for every job. A note with a digit in it (a VM id,
    an HTTP status, a count) is returned as it is: one interned per job would grow the
    interpreter's table of interned strings, which never shrinks."""
    if len(note) <= INTERNED_NOTE_CHARS and not any(ch.isdigit() for ch in note):
        return sys.intern(note)
    return note


#: The column of the throughput history a finished job counts in.
_FINISH_COLUMN = {JobState.COMPLETED: 1, JobState.FAILED: 2}


class EngineState(RecordViews):
    """The single source of truth the engine writes and the UI (or a log writer) reads."""

    def __init__(
        self, hotkey: str, *, max_job_history: int = 10000, max_events: int = 2000
    ) -> None:
        self.version = 0
        self.header = Header(hotkey=hotkey)
        self._records = VersionedRecords()
        self._jobs = self._records.jobs
        self._finished: deque[str] = deque()
        self._finished_ids: set[str] = set()
        self._detailed: deque[str] = deque()
        self._max_job_history = max_job_history
        self.events: deque[Event] = deque(maxlen=max_events)
        self._event_seq = 0
        #: [bucket, completed, failed] per THROUGHPUT_BUCKET_S bucket.
        self._throughput: deque[list[int]] = deque(maxlen=THROUGHPUT_BUCKETS)
        #: Called with every job record put and its note (the metrics count from them).
        self.job_watchers: list[Callable[[JobRecord, str | None], None]] = []

    def _bump(self) -> int:
        self.version += 1
        return self.version

    def put_job(self, job: JobRecord, note: str | None = None) -> None:
        """Insert or mark changed; `note` adds a timeline entry. Finished jobs age out."""
        if note:
            note = _shared_note(note)
            job.timeline.append(TimelineEntry(time.time(), note))
            if len(job.timeline) > MAX_TIMELINE:
                del job.timeline[: len(job.timeline) - MAX_TIMELINE]
        for watch in self.job_watchers:
            watch(job, note)
        is_new = job.id not in self._jobs.items
        self._jobs.put(job, self._bump())
        if job.state.finished and job.id not in self._finished_ids:
            self._finished.append(job.id)
            self._finished_ids.add(job.id)
            self._detailed.append(job.id)
            if len(self._detailed) > DETAILED_FINISHED_JOBS:
                self._strip_details(self._detailed.popleft())
            self._trim_history()
        elif is_new and len(self._jobs.items) > 4 * self._max_job_history:
            self.event("warn", "history", "more than 4x max_job_history jobs are unfinished")

    def _strip_details(self, job_id: str) -> None:
        job = self._jobs.items.get(job_id)
        if job is not None and job.state.finished:
            job.logs = []
            job.metrics = {}
            job.vm_log = ()
            job.timeline = job.timeline[-SHORT_TIMELINE:]

    def _trim_history(self) -> None:
        while len(self._finished) > self._max_job_history:
            old = self._finished.popleft()
            self._finished_ids.discard(old)
            job = self._jobs.items.get(old)
            if job is not None and job.state.finished:
                self._jobs.drop(old, self._bump())

    def job_copy(self, job_id: str) -> JobRecord | None:
        """A copy of one job's record (also one that no change feed reader holds any more)."""
        job = self._jobs.items.get(job_id)
        return None if job is None else copy.copy(job)

    def drop_job(self, job_id: str) -> None:
        self._finished_ids.discard(job_id)
        self._jobs.drop(job_id, self._bump())

    def put_challenge(self, challenge: ChallengeRecord) -> None:
        self._records.challenges.put(challenge, self._bump())

    def drop_challenge(self, challenge_id: str) -> None:
        self._records.challenges.drop(challenge_id, self._bump())

    def put_vm(self, vm: VmRecord) -> None:
        self._records.vms.put(vm, self._bump())

    def set_vm_status(
        self, vm_id: str, status: str, boot_progress: str, boot_error: str | None = None
    ) -> VmRecord | None:
        """Record what the VMM says of one of our VMs (`boot_error` None: keep the known one);
        a change is published, an unchanged status costs nothing. Returns the VM's record, or
        None when we hold no record of it."""
        vm = self._records.vms.items.get(vm_id)
        if vm is None:
            return None
        error = vm.boot_error if boot_error is None else boot_error
        if (vm.status, vm.boot_progress, vm.boot_error) != (status, boot_progress, error):
            vm.status, vm.boot_progress, vm.boot_error = status, boot_progress, error
            self.put_vm(vm)
        return vm

    def drop_vm(self, vm_id: str) -> None:
        self._records.vms.drop(vm_id, self._bump())

    def put_host(self, host: HostRecord) -> None:
        """Publish a host's record (records are frozen: a new one replaces the old)."""
        self._records.hosts.put(host, self._bump())

    def header_changed(self) -> None:
        self._bump()

    def count_finish(self, state: JobState, now: float | None = None) -> None:
        """Feed the per-bucket history of finished jobs (completed and failed ones count)."""
        column = _FINISH_COLUMN.get(state)
        if column is None:
            return
        now = time.time() if now is None else now
        bucket = int(now // THROUGHPUT_BUCKET_S)
        if not self._throughput or self._throughput[-1][0] != bucket:
            self._throughput.append([bucket, 0, 0])
        self._throughput[-1][column] += 1

    def throughput(self, now: float | None = None) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Completions and failures per 10 s bucket, oldest first, the last THROUGHPUT_BUCKETS
        buckets each."""
        now = time.time() if now is None else now
        current = int(now // THROUGHPUT_BUCKET_S)
        counts = {bucket: (done, failed) for bucket, done, failed in self._throughput}
        first = current - THROUGHPUT_BUCKETS + 1
        window = [counts.get(bucket, (0, 0)) for bucket in range(first, current + 1)]
        return tuple(done for done, _ in window), tuple(failed for _, failed in window)

    def event(self, level: str, kind: str, message: str, **refs: Unpack[EventRefs]) -> Event:
        """Append to the bounded event log (the message must already be sanitised)."""
        self._event_seq += 1
        ev = Event(
            self._event_seq,
            time.time(),
            level,
            kind,
            message,
            refs.get("job_id"),
            refs.get("challenge_id"),
            refs.get("vm_id"),
        )
        self.events.append(ev)
        self._bump()
        return ev

    def changes_since(self, version: int, event_seq: int = 0) -> StateDelta:
        """Copies of everything changed after `version`, plus events after `event_seq`."""
        header = copy.copy(self.header)
        header.counters = copy.copy(self.header.counters)
        header.throughput, header.failures = self.throughput()
        events = [e for e in self.events if e.seq > event_seq]
        return self._records.delta(
            version, current=self.version, header=header, events=events, copy=copy.copy
        )
