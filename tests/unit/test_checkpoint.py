"""WAL checkpoints happen on the checkpoint thread, not inside the engine's commits."""

from __future__ import annotations

import time
from pathlib import Path

from validator_tui.engine.checkpoint import TRUNCATE_ABOVE_BYTES
from validator_tui.engine.store import Store, StoredState

PAGE = 4096


def fill(store: Store, jobs: int) -> None:
    """Commit `jobs` job rows (about a page each), one commit per row like the engine."""
    for index in range(jobs):
        store.upsert_job(f"job-{index:06d}", "challenge", StoredState.CLAIMED, vm_name="x" * 3000)


def test_the_engines_commits_do_not_checkpoint(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.sqlite3", checkpoint_interval=3600)
    try:
        fill(store, 1500)
        wal = Path(f"{store.path}-wal").stat().st_size
        database = store.path.stat().st_size
        # SQLite's default would have copied the log into the database at 1,000 pages.
        assert wal > 1200 * PAGE, wal
        assert database < 100 * PAGE, database
        assert store.checkpointer.checkpoints == 0
    finally:
        store.close()


def test_the_thread_copies_the_log_into_the_database(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.sqlite3", checkpoint_interval=0.05)
    try:
        fill(store, 400)
        deadline = time.monotonic() + 10
        while store.checkpointer.checkpoints == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert store.checkpointer.checkpoints >= 1
        assert store.path.stat().st_size > 300 * PAGE
        # A checkpoint that began during the fill leaves the rest of the log for one more; once
        # the log stops changing, the checkpoints stop (six intervals without one).
        deadline = time.monotonic() + 10
        while True:
            checkpoints = store.checkpointer.checkpoints
            time.sleep(0.3)
            if store.checkpointer.checkpoints == checkpoints:
                break
            assert time.monotonic() < deadline, "an unchanged log is left alone"
    finally:
        store.close()
    assert not store.checkpointer.running


def test_a_log_written_without_a_pause_is_truncated(tmp_path: Path) -> None:
    """Commits that never pause keep every passive checkpoint from catching up, so SQLite
    never starts the log over: the thread truncates it once it passes TRUNCATE_ABOVE_BYTES."""
    store = Store(tmp_path / "state.sqlite3", checkpoint_interval=0.02)
    wal = Path(f"{store.path}-wal")
    try:
        fill(store, 4000)
        deadline = time.monotonic() + 10
        while wal.stat().st_size > TRUNCATE_ABOVE_BYTES and time.monotonic() < deadline:
            time.sleep(0.02)
        assert wal.stat().st_size <= TRUNCATE_ABOVE_BYTES
        assert store.path.stat().st_size > 3000 * PAGE, "every row reached the database"
    finally:
        store.close()
