"""The results outbox of a stopped engine: list it, send a dead letter again at the next start,
or discard one, working on the state directory's store directly (`validator-tui outbox`).

A running engine does the same through `list_outbox`, `retry_dead_letter` and
`discard_dead_letter` of its `OperatorCommands` (engine/commands.py; they also send at once).
"""

from __future__ import annotations

from pathlib import Path

from validator_tui.engine.store import Store, StoreError
from validator_tui.shared.records import OutboxRow, Outcome, ResultStatus

STORE_FILE = "state.sqlite3"


def open_store(state_dir: Path) -> Store:
    """The store under `state_dir`; StoreError if there is none (nothing was ever run there)."""
    path = state_dir / STORE_FILE
    if not path.is_file():
        raise StoreError(f"no state database at {path}")
    return Store(path)


def list_outbox(store: Store, limit: int = 1000) -> list[OutboxRow]:
    """Dead letters first, then unsent results, then the latest answered ones."""
    return store.outbox_entries(limit)


def retry_dead_letter(store: Store, job_id: str) -> Outcome:
    """Make a dead letter unsent again: the engine sends it at its next start."""
    return _move_dead_letter(
        store,
        job_id,
        ResultStatus.PENDING,
        f"result of job {job_id} queued again: sent at the next engine start",
    )


def discard_dead_letter(store: Store, job_id: str) -> Outcome:
    """Give up on a dead letter for good (kept as `discarded`)."""
    return _move_dead_letter(
        store, job_id, ResultStatus.DISCARDED, f"dead letter of job {job_id} discarded"
    )


def _move_dead_letter(store: Store, job_id: str, status: ResultStatus, done: str) -> Outcome:
    try:
        if not store.set_result_status(job_id, status, ResultStatus.DEAD):
            return Outcome.refused(f"job {job_id} has no dead letter")
    except StoreError as exc:
        return Outcome.refused(str(exc))
    return Outcome.done(done)
