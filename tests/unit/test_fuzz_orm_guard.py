"""Differential fuzzing of the ORM read-only guard against SQLite itself.

Every statement `check_read_only` accepts is prepared by a real in-memory SQLite whose
authorizer records each action and denies anything but reading. Promise under test: the guard
never lets through a statement SQLite would run as a write (or a schema, transaction, attach,
pragma change); whatever it accepts is a read, or SQLite refuses it outright.
"""

from __future__ import annotations

import contextlib
import sqlite3

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from validator_tui.clients.errors import QueryRefused
from validator_tui.clients.orm_guard import check_read_only

READ_ACTIONS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)
SCHEMA = """
CREATE TABLE submissions (id TEXT PRIMARY KEY, code TEXT, miner_hotkey TEXT);
CREATE TABLE agents (id INTEGER PRIMARY KEY, status TEXT, "delete" TEXT, [update] TEXT);
INSERT INTO submissions VALUES ('s1', 'print(1)', '5Grw');
INSERT INTO agents VALUES (1, 'validated', 'x', 'y');
"""

WRITES = [
    "INSERT INTO agents (status) VALUES ('x')",
    "REPLACE INTO agents (id, status) VALUES (1, 'x')",
    "INSERT OR REPLACE INTO agents (id) VALUES (9)",
    "UPDATE agents SET status = 'x'",
    "DELETE FROM agents",
    "DROP TABLE agents",
    "CREATE TABLE t (x)",
    "CREATE TEMP VIEW v AS SELECT 1",
    "ALTER TABLE agents ADD COLUMN z",
    "ATTACH DATABASE ':memory:' AS other",
    "PRAGMA writable_schema = 1",
    "PRAGMA query_only = 0",
    "BEGIN",
    "SAVEPOINT s",
    "VACUUM",
    "REINDEX",
    "ANALYZE",
    "INSERT INTO agents DEFAULT VALUES RETURNING id",
]
READS = [
    "SELECT * FROM submissions WHERE id = 's1'",
    "SELECT count(*) FROM agents",
    'SELECT "delete", [update] FROM agents',
    "WITH v AS (SELECT * FROM agents) SELECT * FROM v",
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 5) SELECT x FROM c",
    "SELECT replace(code, 'a', 'b') FROM submissions",
]
PREFIXES = [
    "",
    " ",
    "\n",
    "/* c */",
    "-- c\n",
    "WITH x AS (SELECT 1) ",
    "WITH x AS (SELECT 1), y AS (SELECT 2) ",
    "SELECT 1; ",
    "SELECT 1;",
    "select 1 ; -- \n",
    "SELECT ';' ; ",
    "SELECT 1 /* ; */ ; ",
    "SELECT 1 -- \n ; ",
    "SELECT (",
]
SUFFIXES = ["", ";", " ;", "; SELECT 1", "-- x", "/* x */", ")", "; -- x\n", "\n;\n"]
MUTATIONS = [
    lambda s: s,
    str.lower,
    str.swapcase,
    lambda s: s.replace(" ", "/**/"),
    lambda s: s.replace(" ", "\t\n"),
    lambda s: s.replace(" ", "\u00a0"),
    lambda s: s.replace("E", "\u0415"),  # Cyrillic E
    lambda s: s.replace("S", "\u017f"),  # long s: upper() is "S"
    lambda s: s.replace("I", "\u0131"),  # dotless i: upper() is "I"
    lambda s: s.replace(" ", "\x00"),
    lambda s: s.replace(" ", "\x0b"),
]

statements = st.builds(
    lambda prefix, body, suffix, mutate: mutate(prefix + body + suffix),
    st.sampled_from(PREFIXES),
    st.sampled_from(WRITES + READS),
    st.sampled_from(SUFFIXES),
    st.sampled_from(MUTATIONS),
)
TOKENS = st.sampled_from(
    [
        "SELECT", "WITH", "AS", "(", ")", "*", "FROM", "agents", "submissions", "INSERT", "INTO",
        "VALUES", "DELETE", "UPDATE", "SET", "REPLACE", "RETURNING", "PRAGMA", "ATTACH", ";", "'",
        '"', "[", "]", "`", "--", "\n", "/*", "*/", " ", "1", ",", ".", "=", "x", "main", "temp",
        "WHERE", "UNION", "ALL", "ON", "CONFLICT", "DO", "NOTHING", "\u017fELECT", "\x00",
    ]
)  # fmt: skip
token_soup = st.lists(TOKENS, max_size=25).map(" ".join) | st.lists(TOKENS, max_size=25).map(
    "".join
)


class RecordingDb:
    """In-memory SQLite with an authorizer that records every action and denies non-reads."""

    def __init__(self) -> None:
        self.conn = sqlite3.connect(":memory:", isolation_level=None)
        self.conn.executescript(SCHEMA)
        self.actions: list[int] = []
        self.conn.set_authorizer(self._authorize)
        self.conn.set_progress_handler(lambda: 1 if self._steps_exceeded() else 0, 1000)
        self._steps = 0

    def _steps_exceeded(self) -> bool:
        self._steps += 1
        return self._steps > 200

    def _authorize(self, action: int, *_: object) -> int:
        self.actions.append(action)
        return sqlite3.SQLITE_OK if action in READ_ACTIONS else sqlite3.SQLITE_DENY

    def run(self, sql: str) -> list[int]:
        """Prepare and step `sql` (first statement, then all of them); returns the non-read
        actions SQLite asked about."""
        self.actions.clear()
        self._steps = 0
        with contextlib.suppress(sqlite3.Error, ValueError):
            self.conn.execute(sql).fetchmany(5)
        with contextlib.suppress(sqlite3.Error, ValueError):
            self.conn.executescript(sql)  # every statement, as a server running scripts would
        return [a for a in self.actions if a not in READ_ACTIONS]


DB = RecordingDb()


def accepted(sql: str) -> bool:
    try:
        check_read_only(sql)
    except QueryRefused:
        return False
    return True


def test_the_oracle_sees_writes_and_reads():
    assert all(DB.run(sql) for sql in WRITES)
    assert not any(DB.run(sql) for sql in READS)
    assert all(accepted(sql) for sql in READS)
    assert not any(accepted(sql) for sql in WRITES)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sql=statements | token_soup)
@example("WITH x AS (SELECT 1) INSERT INTO agents (status) SELECT 'x'")
@example("WITH x AS (INSERT INTO agents DEFAULT VALUES RETURNING id) SELECT * FROM x")
@example("SELECT * FROM agents WHERE id IN (SELECT 1); DELETE FROM agents")
@example("\u017fELECT 1; DELETE FROM agents")
@example("SELECT 1 /* unterminated ; DELETE FROM agents")
@example("SELECT [x;] FROM agents; DROP TABLE agents")
@example("select 1 ; ; ")
def test_whatever_the_guard_accepts_sqlite_runs_as_a_read(sql):
    if accepted(sql):
        assert DB.run(sql) == [], f"guard accepted a non-read: {sql!r}"
