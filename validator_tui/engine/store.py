"""Durable state in SQLite (stdlib, WAL): job records, the results outbox, challenge CVMs.

Every change that matters after a crash is committed before it is acted on: the claim
intent before the claim request, the VM name before CreateVm, the result before its first
POST. WAL with `synchronous=NORMAL` survives a killed process (not a power cut mid-commit);
its checkpoints run on a thread of their own (engine/checkpoint.py).
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from validator_tui.engine.checkpoint import (
    CHECKPOINT_INTERVAL_S,
    SAFETY_NET_PAGES,
    WalCheckpointer,
)
from validator_tui.shared.records import JobState, OutboxRow, ResultStatus

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    challenge_id TEXT NOT NULL,
    submission_id TEXT NOT NULL DEFAULT '',
    miner_hotkey TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    vm_name TEXT,
    vm_id TEXT,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    job_id TEXT PRIMARY KEY,
    body BLOB NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS challenge_vms (
    vm_id TEXT PRIMARY KEY,
    challenge_id TEXT NOT NULL,
    compose_hash TEXT NOT NULL,
    host_port INTEGER
);
CREATE TABLE IF NOT EXISTS challenge_vm_intents (
    host TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (host, name)
);
CREATE TABLE IF NOT EXISTS draining_hosts (
    name TEXT PRIMARY KEY
);
-- One row, rewritten by `Store.probe` to learn whether the database takes writes again.
CREATE TABLE IF NOT EXISTS write_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at REAL NOT NULL
);
-- A claim forgets what a previous claim of the same job was answered (the platform offers the
-- job again, so that answer no longer applies); a result not yet sent is never forgotten.
CREATE TRIGGER IF NOT EXISTS claim_forgets_old_answer_on_insert
AFTER INSERT ON jobs WHEN NEW.state = 'claiming'
BEGIN
    DELETE FROM outbox WHERE job_id = NEW.id AND status != 'pending';
END;
CREATE TRIGGER IF NOT EXISTS claim_forgets_old_answer_on_update
AFTER UPDATE OF state ON jobs WHEN NEW.state = 'claiming'
BEGIN
    DELETE FROM outbox WHERE job_id = NEW.id AND status != 'pending';
END;
"""


#: `Store.probe` wants at least this much free space before it calls the database writable.
PROBE_FREE_BYTES = 1 << 20


class StoredState(StrEnum):
    """A job row's state: the job's own states, plus `claiming` (the claim intent, committed
    before the claim request and kept while its answer is lost). `stored_state` maps a job's
    state to its row's."""

    PENDING = JobState.PENDING.value
    CLAIMING = "claiming"
    CLAIMED = JobState.CLAIMED.value
    PROVISIONING = JobState.PROVISIONING.value
    RUNNING = JobState.RUNNING.value
    SUBMITTING = JobState.SUBMITTING.value
    COMPLETED = JobState.COMPLETED.value
    FAILED = JobState.FAILED.value
    CANCELLED = JobState.CANCELLED.value
    LOST = JobState.LOST.value


def stored_state(state: JobState, *, settled: bool = True) -> StoredState:
    """The row state of a job in `state`: the same, except that a claim not settled yet (sent,
    its answer lost: claimed but unsure) keeps its row's claim intent, `claiming`, which a
    restart reads as "ask the platform whether it is ours"."""
    if state is JobState.CLAIMED and not settled:
        return StoredState.CLAIMING
    return StoredState(state.value)


# Job rows in these states are "in flight": a restart must finish them with an error result.
IN_FLIGHT = (
    StoredState.CLAIMING,
    StoredState.CLAIMED,
    StoredState.PROVISIONING,
    StoredState.RUNNING,
)


class StoreError(Exception):
    """The state database cannot be opened or written (disk full, read-only, corrupt)."""


@dataclass(frozen=True, slots=True)
class StoredJob:
    id: str
    challenge_id: str
    submission_id: str
    miner_hotkey: str
    state: StoredState
    vm_name: str | None
    vm_id: str | None


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    job_id: str
    body: bytes
    status: ResultStatus
    attempts: int
    last_error: str


@dataclass(frozen=True, slots=True)
class StoredChallengeVm:
    vm_id: str
    challenge_id: str
    compose_hash: str
    host_port: int | None


class Store:
    """The engine's SQLite database under the state directory."""

    def __init__(self, path: Path, checkpoint_interval: float = CHECKPOINT_INTERVAL_S) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.execute(f"PRAGMA wal_autocheckpoint={SAFETY_NET_PAGES}")
            self._db.executescript(SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open state database {path}: {exc}") from None
        self.path = path
        self.checkpointer = WalCheckpointer(path, checkpoint_interval)
        if str(path) != ":memory:":
            self.checkpointer.start()

    @property
    def in_memory(self) -> bool:
        """The stand-in store used when the state directory could not be opened at start-up."""
        return str(self.path) == ":memory:"

    def probe(self) -> None:
        """Raise StoreError unless the database takes a write now and its file system has at
        least PROBE_FREE_BYTES free (so a freed disk is not declared usable with no room left
        for the next result; a small write can land in WAL space already allocated)."""
        if not self.in_memory:
            try:
                stats = os.statvfs(self.path.parent)
            except OSError as exc:
                raise StoreError(f"cannot check free space for {self.path}: {exc}") from None
            free = stats.f_bavail * stats.f_frsize
            if free < PROBE_FREE_BYTES:
                raise StoreError(
                    f"cannot write state database {self.path}: only {free} bytes free"
                    f" (need {PROBE_FREE_BYTES})"
                )
        self._write(
            "INSERT INTO write_probe (id, at) VALUES (1, ?)"
            " ON CONFLICT(id) DO UPDATE SET at = excluded.at",
            (time.time(),),
        )

    def close(self) -> None:
        self.checkpointer.stop()
        self._db.close()

    def _write(self, sql: str, args: tuple[object, ...]) -> int:
        """Run one writing statement; returns how many rows it changed."""
        try:
            return self._db.execute(sql, args).rowcount
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write state database {self.path}: {exc}") from None

    def _read(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read state database {self.path}: {exc}") from None

    def upsert_job(
        self,
        job_id: str,
        challenge_id: str,
        state: StoredState,
        *,
        submission_id: str = "",
        miner_hotkey: str = "",
        vm_name: str | None = None,
        vm_id: str | None = None,
    ) -> None:
        """Record a job's state; empty/None fields keep what was stored."""
        self._write(
            """INSERT INTO jobs (id, challenge_id, submission_id, miner_hotkey, state, vm_name,
                                 vm_id, updated_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT(id) DO UPDATE SET
                 state = excluded.state,
                 submission_id = CASE WHEN excluded.submission_id != ''
                                      THEN excluded.submission_id ELSE submission_id END,
                 miner_hotkey = CASE WHEN excluded.miner_hotkey != ''
                                     THEN excluded.miner_hotkey ELSE miner_hotkey END,
                 vm_name = COALESCE(excluded.vm_name, vm_name),
                 vm_id = COALESCE(excluded.vm_id, vm_id),
                 updated_at = excluded.updated_at""",
            (
                job_id,
                challenge_id,
                submission_id,
                miner_hotkey,
                state,
                vm_name,
                vm_id,
                time.time(),
            ),
        )

    def begin_claim(self, job_id: str, challenge_id: str) -> bool:
        """Commit the intent to claim `job_id`, forgetting any answered result a previous
        claim of it left. Returns True if such a result (sent or dead) was forgotten.

        One statement (the schema's triggers forget the old answer in the same transaction):
        in the console's process every SQLite call lets the console's thread take the GIL,
        and the claim request waits behind this one."""
        changes = self._db.total_changes
        self._write(
            """INSERT INTO jobs (id, challenge_id, state, updated_at)
               VALUES (?, ?, 'claiming', ?)
               ON CONFLICT(id) DO UPDATE SET state = 'claiming', vm_name = NULL,
                 vm_id = NULL, updated_at = excluded.updated_at""",
            (job_id, challenge_id, time.time()),
        )
        return self._db.total_changes - changes > 1

    def in_flight_jobs(self) -> list[StoredJob]:
        """Jobs a previous run claimed (or was claiming) and did not finish."""
        marks = ",".join("?" * len(IN_FLIGHT))
        rows = self._db.execute(
            "SELECT id, challenge_id, submission_id, miner_hotkey, state, vm_name, vm_id "
            f"FROM jobs WHERE state IN ({marks}) ORDER BY updated_at",
            IN_FLIGHT,
        ).fetchall()
        return [
            StoredJob(row[0], row[1], row[2], row[3], StoredState(row[4]), row[5], row[6])
            for row in rows
        ]

    def finish_job_with_result(self, job_id: str, state: StoredState, body: bytes) -> None:
        """Atomically mark the job finished and queue its result in the outbox."""
        now = time.time()
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(
                    "UPDATE jobs SET state = ?, updated_at = ? WHERE id = ?", (state, now, job_id)
                )
                self._db.execute(
                    "INSERT OR IGNORE INTO outbox (job_id, body, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?)",
                    (job_id, body, now, now),
                )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write state database {self.path}: {exc}") from None

    def knows_vm_name(self, vm_name: str) -> bool:
        """True when this store recorded `vm_name` for one of its jobs (before its CreateVm)."""
        try:
            row = self._db.execute("SELECT 1 FROM jobs WHERE vm_name = ?", (vm_name,)).fetchone()
        except sqlite3.Error:
            return False
        return row is not None

    def pending_results(self) -> list[OutboxEntry]:
        rows = self._db.execute(
            "SELECT job_id, body, status, attempts, last_error FROM outbox "
            "WHERE status = 'pending' ORDER BY created_at"
        ).fetchall()
        return [OutboxEntry(row[0], row[1], ResultStatus(row[2]), *row[3:]) for row in rows]

    def has_result(self, job_id: str) -> bool:
        row = self._db.execute("SELECT 1 FROM outbox WHERE job_id = ?", (job_id,)).fetchone()
        return row is not None

    def mark_result(self, job_id: str, status: ResultStatus, last_error: str = "") -> None:
        """Set an outbox entry's status (and count the attempt that settled it)."""
        self._write(
            "UPDATE outbox SET status = ?, last_error = ?, attempts = attempts + 1, "
            "updated_at = ? WHERE job_id = ?",
            (status, last_error, time.time(), job_id),
        )

    def note_attempt(self, job_id: str, last_error: str) -> None:
        self._write(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?, updated_at = ? "
            "WHERE job_id = ?",
            (last_error, time.time(), job_id),
        )

    def count_results(self, status: ResultStatus) -> int:
        """How many outbox entries have `status` (e.g. `dead`: refused by the platform)."""
        row = self._read("SELECT COUNT(*) FROM outbox WHERE status = ?", (status,))[0]
        return int(row[0])

    def outbox_entries(self, limit: int = 1000) -> list[OutboxRow]:
        """Outbox entries without their bodies: unsent and dead letters first, then the latest
        answered ones; at most `limit`."""
        rows = self._read(
            "SELECT job_id, status, attempts, last_error, created_at, updated_at FROM outbox "
            "ORDER BY CASE status WHEN 'dead' THEN 0 WHEN 'pending' THEN 1 ELSE 2 END, "
            "updated_at DESC LIMIT ?",
            (limit,),
        )
        return [OutboxRow(row[0], ResultStatus(row[1]), *row[2:]) for row in rows]

    def result_body(self, job_id: str) -> bytes | None:
        """The stored result body of `job_id`, if there is one."""
        rows = self._read("SELECT body FROM outbox WHERE job_id = ?", (job_id,))
        return bytes(rows[0][0]) if rows else None

    def set_result_status(self, job_id: str, status: ResultStatus, expected: ResultStatus) -> bool:
        """Move an outbox entry from `expected` to `status`; False if it is not in `expected`."""
        changed = self._write(
            "UPDATE outbox SET status = ?, updated_at = ? WHERE job_id = ? AND status = ?",
            (status, time.time(), job_id, expected),
        )
        return changed == 1

    def prune(self, keep_seconds: float = 7 * 86400, keep_rows: int = 10000) -> None:
        """Forget finished jobs and answered results older than `keep_seconds`, and all but the
        newest `keep_rows` of each (bounded size at any job rate). In-flight jobs and unsent
        results are never touched."""
        cutoff = time.time() - keep_seconds
        marks = ",".join("?" * len(IN_FLIGHT))
        self._write(
            f"DELETE FROM jobs WHERE state NOT IN ({marks}) AND (updated_at < ? OR id NOT IN "
            f"(SELECT id FROM jobs WHERE state NOT IN ({marks}) ORDER BY updated_at DESC "
            "LIMIT ?))",
            (*IN_FLIGHT, cutoff, *IN_FLIGHT, keep_rows),
        )
        self._write(
            "DELETE FROM outbox WHERE status != 'pending' AND (updated_at < ? OR job_id NOT IN "
            "(SELECT job_id FROM outbox WHERE status != 'pending' ORDER BY updated_at DESC "
            "LIMIT ?))",
            (cutoff, keep_rows),
        )

    def put_challenge_vm(self, vm: StoredChallengeVm) -> None:
        self._write(
            "INSERT OR REPLACE INTO challenge_vms (vm_id, challenge_id, compose_hash, host_port) "
            "VALUES (?, ?, ?, ?)",
            (vm.vm_id, vm.challenge_id, vm.compose_hash, vm.host_port),
        )

    def delete_challenge_vm(self, vm_id: str) -> None:
        self._write("DELETE FROM challenge_vms WHERE vm_id = ?", (vm_id,))

    def challenge_vms(self) -> list[StoredChallengeVm]:
        rows = self._db.execute(
            "SELECT vm_id, challenge_id, compose_hash, host_port FROM challenge_vms"
        ).fetchall()
        return [StoredChallengeVm(*row) for row in rows]

    def intend_challenge_vm(self, host: str, name: str) -> None:
        """Record that a CVM named `name` is about to be created on `host` (committed before
        its CreateVm, so a CVM whose id a crash kept from `put_challenge_vm` is still ours)."""
        self._write(
            "INSERT OR IGNORE INTO challenge_vm_intents (host, name) VALUES (?, ?)", (host, name)
        )

    def drop_challenge_vm_intent(self, host: str, name: str) -> None:
        self._write("DELETE FROM challenge_vm_intents WHERE host = ? AND name = ?", (host, name))

    def challenge_vm_intents(self, host: str) -> set[str]:
        """The names of the CVMs whose creation on `host` began and was never recorded."""
        rows = self._db.execute(
            "SELECT name FROM challenge_vm_intents WHERE host = ?", (host,)
        ).fetchall()
        return {row[0] for row in rows}

    def set_draining(self, host: str, draining: bool) -> None:
        """Remember that the operator drains `host` (or no longer does)."""
        if draining:
            self._write("INSERT OR IGNORE INTO draining_hosts (name) VALUES (?)", (host,))
        else:
            self._write("DELETE FROM draining_hosts WHERE name = ?", (host,))

    def draining_hosts(self) -> set[str]:
        """The hosts the operator drains."""
        return {row[0] for row in self._read("SELECT name FROM draining_hosts")}
