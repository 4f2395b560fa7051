"""WAL checkpoints on a thread of their own.

SQLite copies its write-ahead log into the database file (a checkpoint) from inside a commit
once the log passes 1,000 pages: with `synchronous=NORMAL` that commit then waits for two
fsyncs (4-6 ms measured here), and the engine's event loop waits with it, a claim included
when its intent is the commit that pays. Here the engine's connection checkpoints only as a
safety net (a log of `SAFETY_NET_PAGES`), and a thread with its own connection checkpoints
every `interval` seconds when the log changed, without holding the GIL while SQLite works.

A passive checkpoint never waits for the engine, but SQLite only starts the log over when a
checkpoint has copied all of it before the next commit: with commits that never pause (a
flood of lost claims) that never happens, and the log's file grows to the safety net (41 MB)
and stays that size. Past `TRUNCATE_ABOVE_BYTES` the thread therefore truncates the log, right
after a passive checkpoint has copied nearly all of it: a commit arriving meanwhile waits for
the last pages, the fsync and the truncation (worst 24-42 ms measured at 200-1,000 jobs/s of
lost claims, see BENCHMARKS.md), and only while the log grows without starting over.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

logger = logging.getLogger(__name__)

#: The engine's own connection still checkpoints past this many log pages (about 40 MB),
#: should the thread fall behind.
SAFETY_NET_PAGES = 10_000
#: How often the thread looks at the log.
CHECKPOINT_INTERVAL_S = 1.0
#: A log file larger than this (SQLite's own checkpoint point, 1,000 pages) is truncated.
TRUNCATE_ABOVE_BYTES = 1000 * 4096
#: A truncation that finds a commit or a reader in its way is tried again this many times,
#: this far apart (waiting here, not inside SQLite, where it would hold the engine's commits).
TRUNCATE_ATTEMPTS = 5
TRUNCATE_RETRY_S = 0.005


class WalCheckpointer:
    """Checkpoints the database at `path` from a daemon thread until `stop()`."""

    def __init__(self, path: Path, interval: float = CHECKPOINT_INTERVAL_S) -> None:
        self.path = path
        self.interval = interval
        #: Checkpoints run so far (each copied whatever the log held).
        self.checkpoints = 0
        self._wal = Path(f"{path}-wal")
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        return self._thread.is_alive()

    def stop(self) -> None:
        """Stop the thread (a checkpoint under way finishes first)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        try:
            # No busy wait: a truncation waiting for a reader would hold the engine's commits.
            db = sqlite3.connect(self.path, isolation_level=None, timeout=0)
            # A checkpoint reads the log and writes pages once: a page cache would only hold
            # memory (SQLite's default is 2 MB per connection).
            db.execute("PRAGMA cache_size=-64")
        except sqlite3.Error as exc:
            logger.warning("WAL checkpoints stay in the engine's commits: %s", exc)
            return
        seen: tuple[int, int] | None = None
        failing = False
        try:
            while not self._stopping.wait(self.interval):
                log = self._log_state()
                if log is None or log == seen or log[0] == 0:
                    continue
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    if log[0] > TRUNCATE_ABOVE_BYTES:
                        _truncate(db)
                except sqlite3.Error as exc:
                    if not failing:
                        logger.warning("WAL checkpoint failed (will retry): %s", exc)
                    failing = True
                    continue
                failing = False
                # The state before the checkpoint: what the engine wrote during it is new.
                seen = log
                self.checkpoints += 1
        finally:
            db.close()

    def _log_state(self) -> tuple[int, int] | None:
        """The log's size and modification time (None when there is no log; an empty one,
        truncated, holds nothing to copy)."""
        try:
            stat = os.stat(self._wal)
        except OSError:
            return None
        return stat.st_size, stat.st_mtime_ns


def _truncate(db: sqlite3.Connection) -> None:
    """Copy the rest of the log into the database and truncate it, trying again a few times
    (briefly) while a commit or a reader is in the way."""
    for _ in range(TRUNCATE_ATTEMPTS):
        busy = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        if not busy:
            return
        time.sleep(TRUNCATE_RETRY_S)
