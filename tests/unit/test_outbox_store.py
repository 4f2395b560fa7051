"""The store's outbox operations: a re-claim forgets an old answer, dead letters can be
listed, counted, retried and discarded (engine stopped: `outbox_admin`)."""

import pytest

from validator_tui.engine import outbox_admin
from validator_tui.engine import store as store_module
from validator_tui.engine.store import Store, StoreError
from validator_tui.shared.delta import Header


def test_begin_claim_forgets_an_answered_result_but_never_an_unsent_one(tmp_path):
    store = Store(tmp_path / "state.sqlite3")
    store.upsert_job("a", "c", "submitting")
    store.finish_job_with_result("a", "submitting", b"{}")
    store.mark_result("a", "dead", "HTTP 403")
    assert store.count_results("dead") == 1
    assert store.begin_claim("a", "c") is True
    assert store.count_results("dead") == 0
    assert [job.id for job in store.in_flight_jobs()] == ["a"]
    store.finish_job_with_result("a", "submitting", b'{"new": 1}')
    assert store.begin_claim("a", "c") is False
    assert store.result_body("a") == b'{"new": 1}'
    store.close()


def test_dead_letters_retry_and_discard_on_a_stopped_engine(tmp_path):
    store = Store(tmp_path / "state.sqlite3")
    for job_id in ("a", "b"):
        store.finish_job_with_result(job_id, "submitting", b"{}")
        store.mark_result(job_id, "dead", f"HTTP 400: no {job_id}")
    store.finish_job_with_result("c", "submitting", b"{}")
    rows = outbox_admin.list_outbox(store)
    assert [row.status for row in rows] == ["dead", "dead", "pending"]
    assert {row.last_error for row in rows[:2]} == {"HTTP 400: no a", "HTTP 400: no b"}
    assert outbox_admin.retry_dead_letter(store, "a").ok
    assert not outbox_admin.retry_dead_letter(store, "a").ok
    assert not outbox_admin.discard_dead_letter(store, "c").ok
    assert outbox_admin.discard_dead_letter(store, "b").ok
    assert {row.job_id: row.status for row in store.outbox_entries()} == {
        "a": "pending",
        "b": "discarded",
        "c": "pending",
    }
    assert [entry.job_id for entry in store.pending_results()] == ["a", "c"]
    store.close()


def test_header_warnings_most_important_first():
    header = Header()
    assert header.warnings() == ()
    header.slow_request = "slow platform: …"
    header.claims_paused = "claims paused: the platform is unreachable"
    header.capacity_warning = "capacity shortfall: …"
    assert header.warnings() == (
        "claims paused: the platform is unreachable",
        "capacity shortfall: …",
        "slow platform: …",
    )


def test_outbox_of_a_state_dir_that_never_ran_is_an_error(tmp_path):
    with pytest.raises(StoreError, match="no state database"):
        outbox_admin.open_store(tmp_path)
    Store(tmp_path / outbox_admin.STORE_FILE).close()
    store = outbox_admin.open_store(tmp_path)
    assert outbox_admin.list_outbox(store) == []
    store.close()


def test_probe_wants_a_committed_write_and_room_for_more(tmp_path, monkeypatch):
    store = Store(tmp_path / "state.sqlite3")
    try:
        store.probe()
        assert len(store._read("SELECT at FROM write_probe")) == 1
        monkeypatch.setattr(store_module, "PROBE_FREE_BYTES", 1 << 62)
        with pytest.raises(StoreError, match="bytes free"):
            store.probe()
    finally:
        store.close()
