"""`validator-tui outbox list|retry|discard`: the results outbox, through a running engine's
control socket or on a stopped engine's store."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from validator_tui.cli.common import state_dir_of

if TYPE_CHECKING:
    from validator_tui.shared.records import OutboxRow


def outbox_command(args: argparse.Namespace) -> int:
    """`outbox list|retry|discard`: through the control socket when an engine runs on the state
    dir (a retried result is sent at once), else on its store, holding the state dir's lock
    meanwhile so no engine starts under it."""
    from validator_tui.control.lock import StateDirLock, StateDirLocked
    from validator_tui.control.paths import ControlPathError

    if args.outbox_command == "discard" and not args.yes:
        print(
            f"refusing to discard the result of job {args.job_id} without --yes: "
            "a discarded result is never sent",
            file=sys.stderr,
        )
        return 1
    state_dir = state_dir_of(args, "outbox")
    if state_dir is None:
        return 1
    if not state_dir.is_dir():
        return _outbox_stopped(args, state_dir)
    try:
        lock = StateDirLock.acquire(state_dir, mode="outbox (no engine)", hotkey="")
    except StateDirLocked:
        return asyncio.run(_outbox_running(args, state_dir))
    except (ControlPathError, OSError) as exc:
        print(f"outbox: cannot use state dir {state_dir}: {exc}", file=sys.stderr)
        return 1
    try:
        return _outbox_stopped(args, state_dir)
    finally:
        lock.release()


def _outbox_stopped(args: argparse.Namespace, state_dir: Path) -> int:
    """The outbox of a stopped engine, on its store."""
    from validator_tui.engine import outbox_admin
    from validator_tui.engine.store import StoreError

    try:
        store = outbox_admin.open_store(state_dir)
    except StoreError as exc:
        print(f"outbox: {exc}", file=sys.stderr)
        return 1
    try:
        if args.outbox_command == "list":
            print(_outbox_table(outbox_admin.list_outbox(store), dead_only=args.dead))
            return 0
        act = (
            outbox_admin.retry_dead_letter
            if args.outbox_command == "retry"
            else outbox_admin.discard_dead_letter
        )
        outcome = act(store, args.job_id)
    except StoreError as exc:
        print(f"outbox: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(outcome.message, file=sys.stdout if outcome.ok else sys.stderr)
    return 0 if outcome.ok else 1


async def _outbox_running(args: argparse.Namespace, state_dir: Path) -> int:
    """The outbox of the engine running on `state_dir`, through its control socket (the
    engine logs a retry or a discard with this command as its origin)."""
    from validator_tui.control.client import EngineUnavailable, SocketEngine

    client = SocketEngine(state_dir, client="outbox")
    try:
        await client.connect()
    except EngineUnavailable as exc:
        print(f"outbox: {exc}", file=sys.stderr)
        return 1
    try:
        if args.outbox_command == "list":
            try:
                rows = await client.list_outbox()
            except EngineUnavailable as exc:
                print(f"outbox: {exc}", file=sys.stderr)
                return 1
            print(_outbox_table(rows, dead_only=args.dead))
            return 0
        act = (
            client.retry_dead_letter
            if args.outbox_command == "retry"
            else (client.discard_dead_letter)
        )
        outcome = await act(args.job_id)
    finally:
        await client.close()
    print(outcome.message, file=sys.stdout if outcome.ok else sys.stderr)
    return 0 if outcome.ok else 1


def _outbox_table(rows: Sequence[OutboxRow], *, dead_only: bool = False) -> str:
    """A summary line, then one aligned line per entry (only dead letters with `dead_only`):
    job id, status in the console's words, attempts, last update (UTC) and the last error
    (for a dead letter, the platform's words), sanitised."""
    import time

    from validator_tui.sanitize import clean_line
    from validator_tui.shared.records import ResultStatus

    if not rows:
        return "the outbox is empty"
    dead = sum(row.status == ResultStatus.DEAD for row in rows)
    unsent = sum(row.status == ResultStatus.PENDING for row in rows)
    summary = f"{dead} dead letters, {unsent} unsent, {len(rows)} entries"
    if dead_only:
        rows = [row for row in rows if row.status == ResultStatus.DEAD]
        if not rows:
            return "no dead letters"
    table = [("JOB", "STATUS", "ATTEMPTS", "UPDATED (UTC)", "LAST ERROR")]
    for row in rows:
        updated = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(row.updated_at))
        error = clean_line(row.last_error, 300) or "-"
        status = ResultStatus(row.status).words
        table.append((clean_line(row.job_id, 100), status, str(row.attempts), updated, error))
    widths = [max(len(line[column]) for line in table) for column in range(4)]
    lines = [summary]
    for line in table:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        lines.append("  ".join([*cells, line[4]]))
    return "\n".join(lines)
