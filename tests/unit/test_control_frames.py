"""Control protocol frames: validation, size bounds, and state frames rebuilt by a replica."""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from validator_tui.control import frames
from validator_tui.control.replica import Replica
from validator_tui.shared.delta import Header, StateDelta
from validator_tui.shared.records import (
    ChallengeRecord,
    Event,
    JobRecord,
    JobState,
    TimelineEntry,
    VmKind,
    VmRecord,
)

ids = st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=40)


def delta(jobs=(), removed=(), events=(), version=1, full=False, header=None) -> StateDelta:
    return StateDelta(
        version,
        full,
        list(jobs),
        list(removed),
        [],
        [],
        [],
        [],
        list(events),
        header or Header(hotkey="hk"),
    )


def apply_all(replica: Replica, encoded: list[bytes]) -> None:
    for line in encoded:
        frame = frames.decode_server(line)
        assert isinstance(frame, frames.StateFrame)
        replica.apply(frame)


@given(st.binary(max_size=2000))
@settings(max_examples=300, deadline=None)
def test_any_bytes_are_a_frame_or_a_frame_error(data):
    for decode in (frames.decode_client, frames.decode_server):
        try:
            decode(data)
        except frames.FrameError as exc:
            assert exc.code in {"malformed", "too_large"}


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=20,
    )
)
@settings(max_examples=300, deadline=None)
def test_any_json_is_a_frame_or_a_frame_error(value):
    line = json.dumps(value).encode()
    for candidate in (line, json.dumps({"type": "command", "id": 1, "command": value}).encode()):
        try:
            frames.decode_client(candidate)
        except frames.FrameError as exc:
            assert exc.code == "malformed"


def test_commands_round_trip_and_unknown_ones_are_refused():
    frame = frames.CommandFrame(
        id=7, command=frames.OrmQuery(challenge_id="c", sql="SELECT 1", params=[1, "a", None])
    )
    assert frames.decode_client(frames.encode(frame)) == frame
    with pytest.raises(frames.FrameError, match="does not match any of the expected tags"):
        frames.decode_client(b'{"type":"command","id":1,"command":{"command":"rm_rf"}}')
    with pytest.raises(frames.FrameError, match="extra_field"):
        frames.decode_client(b'{"type":"hello","protocol":1,"extra_field":true}')
    with pytest.raises(frames.FrameError, match="job_id"):
        frames.decode_client(b'{"type":"command","id":1,"command":{"command":"claim","job_id":""}}')


def test_frames_over_the_limit_are_refused_both_ways():
    big = b'{"type":"hello","protocol":1,"client":"' + b"x" * frames.MAX_FRAME_BYTES + b'"}'
    with pytest.raises(frames.FrameError) as exc:
        frames.decode_client(big)
    assert exc.value.code == "too_large"
    with pytest.raises(frames.FrameError):
        frames.encode(frames.LogLines(id=1, lines=["y" * frames.MAX_FRAME_BYTES]))


@given(
    st.lists(st.tuples(ids, st.sampled_from(list(JobState))), max_size=60, unique_by=lambda t: t[0])
)
@settings(max_examples=60, deadline=None)
def test_state_frames_stay_under_the_limit_and_rebuild_the_same_state(jobs):
    records = [JobRecord(id=i, challenge_id="c", state=s, logs=["line " * 30] * 3) for i, s in jobs]
    limit = 6000
    encoded = list(frames.state_frames(delta(records, full=True), snapshot=True, limit=limit))
    assert all(len(line) <= limit for line in encoded)
    assert [frames.decode_server(line).final for line in encoded] == [False] * (
        len(encoded) - 1
    ) + [True]
    replica = Replica()
    apply_all(replica, encoded)
    assert replica.jobs == {job.id: job for job in records}
    assert replica.header.hotkey == "hk"


def test_a_job_too_large_for_a_frame_is_sent_without_its_logs():
    huge = JobRecord(id="j", challenge_id="c", logs=["z" * 1000] * 1000, metrics={"m": 1})
    encoded = list(frames.state_frames(delta([huge]), snapshot=False))
    assert all(len(line) <= frames.MAX_FRAME_BYTES for line in encoded)
    sent = frames.decode_server(encoded[-1])
    assert isinstance(sent, frames.StateFrame)
    assert sent.jobs[0].id == "j" and sent.jobs[0].metrics == {}
    assert "too long for the control socket" in sent.jobs[0].logs[0]


def test_records_cross_as_their_own_types():
    job = JobRecord(
        id="j",
        challenge_id="c",
        state=JobState.RUNNING,
        timeline=[TimelineEntry(1.0, "claimed")],
        metrics={"a": [1, 2]},
    )
    vm = VmRecord(id="v", name="n", kind=VmKind.JOB, owner_id="j")
    snapshot = StateDelta(
        3, True, [job], [], [ChallengeRecord("c", "n")], [], [vm], [], [], Header()
    )
    (line,) = frames.state_frames(snapshot, snapshot=True)
    frame = frames.decode_server(line)
    assert isinstance(frame, frames.StateFrame)
    assert frame.jobs == [job] and frame.vms == [vm]
    assert frame.jobs[0].state is JobState.RUNNING
    assert isinstance(frame.jobs[0].timeline[0], TimelineEntry)
    assert frame.vms[0].kind is VmKind.JOB


# -- the replica ----------------------------------------------------------------------------


def test_replica_answers_deltas_and_a_full_state_after_a_new_snapshot():
    replica = Replica()
    a, b = JobRecord(id="a", challenge_id="c"), JobRecord(id="b", challenge_id="c")
    apply_all(replica, list(frames.state_frames(delta([a, b], full=True), snapshot=True)))
    first = replica.changes_since(0, 0)
    assert first.full and {j.id for j in first.jobs} == {"a", "b"}
    b2 = JobRecord(id="b", challenge_id="c", state=JobState.CLAIMED)
    apply_all(replica, list(frames.state_frames(delta([b2], ["a"], version=2), snapshot=False)))
    second = replica.changes_since(first.version, 0)
    assert not second.full
    assert second.jobs == [b2] and second.removed_jobs == ["a"]
    assert replica.changes_since(second.version, 0).jobs == []
    apply_all(replica, list(frames.state_frames(delta([a], version=1), snapshot=True)))
    third = replica.changes_since(second.version, 0)
    assert third.full and [j.id for j in third.jobs] == ["a"]


def test_replica_events_keep_increasing_across_engines():
    replica = Replica()
    events = [Event(seq, 1.0, "info", "k", f"m{seq}") for seq in (1, 2, 3)]
    apply_all(replica, list(frames.state_frames(delta(events=events), snapshot=True)))
    apply_all(replica, list(frames.state_frames(delta(events=events[1:]), snapshot=False)))
    seen = replica.changes_since(0, 0).events
    assert [e.message for e in seen] == ["m1", "m2", "m3"]
    replica.new_engine()
    apply_all(replica, list(frames.state_frames(delta(events=events[:1]), snapshot=True)))
    after = replica.changes_since(0, seen[-1].seq).events
    assert [e.message for e in after] == ["m1"] and after[0].seq > seen[-1].seq


def test_replica_shows_a_snapshot_only_once_it_is_complete():
    replica = Replica()
    jobs = [JobRecord(id=f"j{i}", challenge_id="c", logs=["x" * 200]) for i in range(40)]
    encoded = list(frames.state_frames(delta(jobs, full=True), snapshot=True, limit=3000))
    assert len(encoded) > 3
    apply_all(replica, encoded[:-1])
    assert replica.changes_since(0, 0).jobs == []
    apply_all(replica, encoded[-1:])
    assert len(replica.changes_since(0, 0).jobs) == 40
