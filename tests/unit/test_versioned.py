"""The one versioned table behind both change feeds (the engine's state, a console's replica)."""

from __future__ import annotations

from validator_tui.control.frames import StateFrame
from validator_tui.control.replica import Replica
from validator_tui.engine.state import EngineState
from validator_tui.shared.delta import Header
from validator_tui.shared.records import JobRecord, JobState
from validator_tui.shared.versioned import MAX_TOMBSTONES, VersionedRecords, VersionedTable


def job(job_id: str) -> JobRecord:
    return JobRecord(job_id, "chal-1", "sub", JobState.PENDING)


def test_since_gives_what_changed_after_a_version_latest_first_and_what_was_removed():
    table: VersionedTable[JobRecord] = VersionedTable()
    for version, key in enumerate(("a", "b", "c"), start=1):
        table.put(job(key), version)
    table.touch("a", 4)
    table.drop("b", 5)
    table.drop("missing", 6)
    changed, removed, stale = table.since(2)
    assert [record.id for record in changed] == ["a", "c"]
    assert removed == ["b"]
    assert not stale
    assert table.since(5) == ([], [], False)


def test_a_reader_older_than_the_remembered_removals_is_told_to_take_everything():
    records = VersionedRecords()
    for version in range(1, MAX_TOMBSTONES + 12):
        records.jobs.put(job(f"j{version}"), version)
    records.jobs.put(job("kept"), MAX_TOMBSTONES + 12)
    for version in range(1, MAX_TOMBSTONES + 12):
        records.jobs.drop(f"j{version}", MAX_TOMBSTONES + 12 + version)
    header = Header()
    behind = records.delta(3, current=99_999, header=header, events=[])
    assert behind.full and [j.id for j in behind.jobs] == ["kept"] and behind.removed_jobs == []
    recent = records.delta(2 * MAX_TOMBSTONES + 22, current=99_999, header=header, events=[])
    assert not recent.full and recent.removed_jobs == [f"j{MAX_TOMBSTONES + 11}"]


def test_the_engine_hands_out_copies_and_the_replica_its_own_records():
    state = EngineState("hotkey")
    record = job("j1")
    state.put_job(record)
    handed = state.changes_since(0).jobs[0]
    assert handed == record and handed is not record

    replica = Replica()
    replica.apply(StateFrame(snapshot=True, final=True, version=1, jobs=[record], header=Header()))
    first = replica.changes_since(0, 0).jobs[0]
    assert first is replica.changes_since(0, 0).jobs[0]
    assert first.id == "j1"
