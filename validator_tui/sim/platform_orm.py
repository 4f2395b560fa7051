"""Per-challenge in-memory SQLite databases behind the simulator's ORM query route.

Queries run as real SQL, read-only twice over: an authorizer that allows only reading
(SELECT, column reads, function calls) and `PRAGMA query_only`. A progress handler stops
runaway queries so one query cannot stall the simulator's event loop.
"""

from __future__ import annotations

import random
import sqlite3
import time
from typing import Any

MAX_ROWS = 1000
QUERY_TIME_LIMIT_S = 1.0
_ALLOWED_ACTIONS = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION})
_SCHEMA = """
CREATE TABLE submissions (
    id TEXT PRIMARY KEY, miner_hotkey TEXT, code TEXT, created_at TEXT
);
CREATE TABLE agents (
    id TEXT PRIMARY KEY, miner_hotkey TEXT, name TEXT, status TEXT
);
"""


class QueryError(ValueError):
    """The query was refused or failed; the message says why."""


def _authorize(action: int, *_: Any) -> int:
    return sqlite3.SQLITE_OK if action in _ALLOWED_ACTIONS else sqlite3.SQLITE_DENY


class ChallengeDb:
    """One challenge's database: `submissions` and `agents`."""

    def __init__(self) -> None:
        self._conn = sqlite3.connect(":memory:", isolation_level=None)
        self._conn.executescript(_SCHEMA)
        self._read_only(True)

    def _read_only(self, on: bool) -> None:
        if on:
            self._conn.execute("PRAGMA query_only = ON")
            self._conn.set_authorizer(_authorize)
        else:
            self._conn.set_authorizer(None)
            self._conn.execute("PRAGMA query_only = OFF")

    def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        self._read_only(False)
        try:
            self._conn.execute(sql, params)
        finally:
            self._read_only(True)

    def seed_agents(self, rng: random.Random, hotkeys: list[str], name: str) -> None:
        """Insert a few agents, alternately 'validated' and 'pending'."""
        for index, hotkey in enumerate(hotkeys):
            agent_id = f"{rng.getrandbits(128):032x}"
            status = "validated" if index % 2 == 0 else "pending"
            self._write(
                "INSERT INTO agents VALUES (?, ?, ?, ?)",
                (agent_id, hotkey, f"{name}-agent-{index + 1}", status),
            )

    def add_submission(self, submission_id: str, miner_hotkey: str, code: str, when: str) -> None:
        """Insert (or replace) one submission row."""
        self._write(
            "INSERT OR REPLACE INTO submissions VALUES (?, ?, ?, ?)",
            (submission_id, miner_hotkey, code, when),
        )

    def remove_submission(self, submission_id: str) -> None:
        """Delete one submission row (no error if absent)."""
        self._write("DELETE FROM submissions WHERE id = ?", (submission_id,))

    def query(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        """Run one read-only statement; at most MAX_ROWS rows, blobs as hex strings.

        Raises QueryError for writes, several statements, bad SQL or bad parameters.
        """
        deadline = time.monotonic() + QUERY_TIME_LIMIT_S
        self._conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
        try:
            cursor = self._conn.execute(sql, params)
            columns = [column[0] for column in cursor.description or ()]
            rows = cursor.fetchmany(MAX_ROWS)
            cursor.close()
        except (sqlite3.Error, ValueError, TypeError, OverflowError) as exc:
            raise QueryError(str(exc) or type(exc).__name__) from None
        finally:
            self._conn.set_progress_handler(None, 0)
        return [
            {
                name: value.hex() if isinstance(value, bytes) else value
                for name, value in zip(columns, row, strict=True)
            }
            for row in rows
        ]

    def close(self) -> None:
        self._conn.close()
