"""A challenge record keeps its state history (bounded), its last error after it recovers,
and hands readers a history that never changes under them; resources read in human units."""

from __future__ import annotations

import copy

from validator_tui.shared.records import (
    MAX_CHALLENGE_HISTORY,
    ChallengeRecord,
    ChallengeState,
    Resources,
)


def test_state_changes_are_noted_with_their_reason_and_repeats_are_not() -> None:
    record = ChallengeRecord("c1", "term-bench")
    record.enter(ChallengeState.FETCHING)
    record.enter(ChallengeState.PROVISIONING)
    record.enter(ChallengeState.FAILED, reason="CVM did not become healthy within 300s")
    record.enter(ChallengeState.FAILED, reason="CVM did not become healthy within 300s")
    record.enter(ChallengeState.ACTIVE, reason="")
    assert [entry.text for entry in record.history] == [
        "fetching",
        "provisioning",
        "failed: CVM did not become healthy within 300s",
        "active",
    ]
    assert record.state is ChallengeState.ACTIVE and record.reason == ""
    assert record.last_error == "CVM did not become healthy within 300s"


def test_history_is_bounded_and_a_copy_keeps_what_it_saw() -> None:
    record = ChallengeRecord("c1", "term-bench")
    for index in range(MAX_CHALLENGE_HISTORY + 20):
        record.enter(ChallengeState.PENDING, reason=f"waiting {index}")
    seen = copy.copy(record)
    record.enter(ChallengeState.ACTIVE)
    assert len(record.history) == MAX_CHALLENGE_HISTORY
    assert record.history[-1].text == "active"
    assert seen.history[-1].text == f"pending: waiting {MAX_CHALLENGE_HISTORY + 19}"


def test_resources_read_in_human_units() -> None:
    assert str(Resources(4, 4096, 51200)) == "4 vCPU, 4 GB RAM, 50 GB disk"
    assert str(Resources(1, 512, 1536, gpu=1)) == "1 vCPU, 512 MB RAM, 1.5 GB disk, 1 GPU"
    assert "Resources(" not in f"need {Resources(2, 2048, 20480)}"
