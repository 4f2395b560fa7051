"""The client-side ORM guard accepts exactly one read-only statement."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from validator_tui.clients.errors import QueryRefused
from validator_tui.clients.orm_guard import check_read_only

ACCEPTED = [
    "SELECT 1",
    "select * from agents",
    "SELECT * FROM agents WHERE status = 'validated';",
    "  \n\tSELECT id FROM submissions WHERE id = ?  ;  ",
    "SELECT 1; -- trailing comment",
    "SELECT 1 /* block ; DROP TABLE x */",
    "-- leading comment\nSELECT 1",
    "/* c */ SELECT 1 /* d */ ; /* e */",
    "SELECT 'DROP TABLE x; --'",
    "SELECT 'it''s; DELETE FROM agents'",
    'SELECT "delete", "insert;" FROM agents',
    "SELECT [update] FROM agents",
    "SELECT `drop` FROM agents",
    "SELECT replace(name, 'a', 'b') FROM agents",
    "SELECT a.release FROM agents AS a",
    "WITH v AS (SELECT * FROM agents WHERE status = 'validated') SELECT count(*) FROM v",
    "with recursive n(x) as (select 1 union all select x + 1 from n where x < 5) select x from n",
    "SELECT CASE WHEN status = 'pending' THEN 0 ELSE 1 END FROM agents",
    "SELECT * FROM agents WHERE name = 'ünïcödé ✓'",
    "SELECT naïve FROM agents",
    "SELECT * FROM agents WHERE id IN (SELECT miner_hotkey FROM submissions)",
    "SELECT :name, ?1, $x",
]

REFUSED = [
    ("", "empty"),
    ("   ", "empty"),
    ("-- only a comment", "empty"),
    ("/* only */", "empty"),
    (";", "empty"),
    ("SELECT 1; SELECT 2", "single statement"),
    ("SELECT 1;;", "single statement"),
    ("SELECT 1; DROP TABLE agents", "single statement"),
    ("SELECT 1 -- c\n; DELETE FROM agents", "single statement"),
    ("INSERT INTO agents VALUES ('a', 'b', 'c', 'd')", "must start with"),
    ("update agents set status = 'x'", "must start with"),
    ("DELETE FROM agents", "must start with"),
    ("REPLACE INTO agents VALUES (1)", "must start with"),
    ("DROP TABLE agents", "must start with"),
    ("CREATE TABLE t (x)", "must start with"),
    ("ALTER TABLE agents ADD x", "must start with"),
    ("PRAGMA query_only = OFF", "must start with"),
    ("ATTACH DATABASE 'x' AS y", "must start with"),
    ("DETACH y", "must start with"),
    ("VACUUM", "must start with"),
    ("REINDEX", "must start with"),
    ("ANALYZE", "must start with"),
    ("BEGIN", "must start with"),
    ("COMMIT", "must start with"),
    ("ROLLBACK", "must start with"),
    ("SAVEPOINT s", "must start with"),
    ("RELEASE s", "must start with"),
    ("VALUES (1)", "must start with"),
    ("(SELECT 1)", "must start with"),
    ("EXPLAIN SELECT 1", "must start with"),
    ("WITH x AS (SELECT 1) INSERT INTO agents SELECT * FROM x", "INSERT"),
    ("WITH x AS (SELECT 1) UPDATE agents SET name = 'a'", "UPDATE"),
    ("WITH x AS (SELECT 1) DELETE FROM agents", "DELETE"),
    ("WITH x AS (SELECT 1) VALUES (1)", "WITH clause must end in a SELECT"),
    ("WITH x AS (SELECT 1)", "WITH clause must end in a SELECT"),
    ("SELECT * FROM agents RETURNING id", "RETURNING"),
    ("SELECT load_extension('evil')", "load_extension"),
    ("SELECT 'unterminated", "unterminated string"),
    ('SELECT "unterminated', "unterminated quoted identifier"),
    ("SELECT 1 /* unterminated", "unterminated /*"),
    ("SELECT (1", "unbalanced"),
    ("SELECT 1)", "unbalanced"),
    ("SELECT\u00a01", "must start with"),
]


@pytest.mark.parametrize("sql", ACCEPTED)
def test_accepts_single_read_only_statement(sql: str) -> None:
    check_read_only(sql)


@pytest.mark.parametrize(("sql", "reason"), REFUSED)
def test_refuses_with_reason(sql: str, reason: str) -> None:
    with pytest.raises(QueryRefused) as info:
        check_read_only(sql)
    assert reason.lower() in str(info.value).lower()


def test_reason_is_sanitised() -> None:
    with pytest.raises(QueryRefused) as info:
        check_read_only("\x1b[31mBOOM")
    assert "\x1b" not in str(info.value)


SQL_ALPHABET = st.sampled_from(
    [
        "SELECT", "WITH", "DROP", "replace", "(", ")", "'", '"', "`", "[", "]", ";",
        "--", "/*", "*/", "\n", " ", "x", "é", "\x00", "\x1b", "AS", "1", ".",
    ]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(), st.lists(SQL_ALPHABET, max_size=30).map("".join)))
def test_never_raises_anything_but_query_refused(sql: str) -> None:
    with contextlib.suppress(QueryRefused):
        check_read_only(sql)
