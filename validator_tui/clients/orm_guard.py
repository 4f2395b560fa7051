"""Client-side guard for ORM queries: only a single read-only SELECT may leave the machine.

A tiny SQLite-faithful tokenizer (string literals, quoted identifiers, comments, words,
punctuation) feeds the checks, so keywords inside literals, identifiers or comments never
cause false positives and a `;` inside a literal never hides a second statement.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from validator_tui.clients.errors import QueryRefused
from validator_tui.sanitize import clean_line

_SPACE = frozenset(" \t\n\v\f\r")
_CLOSING_QUOTE = {"'": "'", '"': '"', "`": "`", "[": "]"}

#: Keywords that write, change schema, manage transactions or touch other databases.
FORBIDDEN_WORDS = frozenset(
    {
        "INSERT",
        "UPDATE",
        "DELETE",
        "REPLACE",
        "UPSERT",
        "CREATE",
        "DROP",
        "ALTER",
        "PRAGMA",
        "ATTACH",
        "DETACH",
        "VACUUM",
        "REINDEX",
        "ANALYZE",
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "SAVEPOINT",
        "RELEASE",
        "RETURNING",
    }
)
#: Statements that change data, also inside a WITH query's common table expressions.
DATA_MODIFYING_WORDS = frozenset({"INSERT", "UPDATE", "DELETE", "REPLACE", "UPSERT"})
#: Forbidden even as a function call.
FORBIDDEN_FUNCTIONS = frozenset({"LOAD_EXTENSION"})
_STATEMENT_STARTS = frozenset({"SELECT", "VALUES", *FORBIDDEN_WORDS})


class Kind(Enum):
    WORD = "word"
    STRING = "string"
    QUOTED_IDENT = "quoted identifier"
    SEMICOLON = ";"
    PUNCT = "punctuation"


@dataclass(frozen=True, slots=True)
class Token:
    kind: Kind
    text: str


def tokenize(sql: str) -> list[Token]:
    """Split `sql` into tokens, dropping whitespace and comments.

    Raises QueryRefused for an unterminated literal, quoted identifier or block comment.
    """
    tokens: list[Token] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in _SPACE:
            i += 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            if end < 0:
                raise QueryRefused("query refused: unterminated /* comment")
            i = end + 2
        elif ch in _CLOSING_QUOTE:
            i = _read_quoted(sql, i, tokens)
        elif _is_word_char(ch):
            start = i
            while i < n and _is_word_char(sql[i]):
                i += 1
            tokens.append(Token(Kind.WORD, sql[start:i]))
        elif ch == ";":
            tokens.append(Token(Kind.SEMICOLON, ch))
            i += 1
        else:
            tokens.append(Token(Kind.PUNCT, ch))
            i += 1
    return tokens


def _is_word_char(ch: str) -> bool:
    return (ch.isascii() and (ch.isalnum() or ch in "_$")) or ord(ch) >= 0x80


def _read_quoted(sql: str, start: int, tokens: list[Token]) -> int:
    """Read a quoted token starting at `start`; append it; return the index after it."""
    opening = sql[start]
    closing = _CLOSING_QUOTE[opening]
    i = start + 1
    while True:
        end = sql.find(closing, i)
        if end < 0:
            what = "string literal" if opening == "'" else "quoted identifier"
            raise QueryRefused(f"query refused: unterminated {what}")
        if closing != "]" and sql.startswith(closing * 2, end):
            i = end + 2
            continue
        kind = Kind.STRING if opening == "'" else Kind.QUOTED_IDENT
        tokens.append(Token(kind, sql[start : end + 1]))
        return end + 1


def check_read_only(sql: str) -> None:
    """Return if `sql` is exactly one read-only statement (SELECT, or WITH … SELECT).

    One trailing `;` and any whitespace or comments are allowed. Raises QueryRefused, with
    a reason, for anything else; never raises any other exception.
    """
    tokens = tokenize(sql)
    if not tokens:
        raise QueryRefused("query refused: empty query")
    for index, token in enumerate(tokens):
        if token.kind is Kind.SEMICOLON and index != len(tokens) - 1:
            raise QueryRefused("query refused: only a single statement is allowed")
    statement = tokens[:-1] if tokens[-1].kind is Kind.SEMICOLON else tokens
    if not statement:
        raise QueryRefused("query refused: empty query")
    first = statement[0]
    head = first.text.upper() if first.kind is Kind.WORD else ""
    if head not in ("SELECT", "WITH"):
        shown = clean_line(first.text, 40)
        raise QueryRefused(f"query refused: must start with SELECT or WITH, not {shown!r}")
    if head == "WITH":
        _check_cte_writes(statement)
    _check_words(statement)
    _check_parentheses(statement)
    if head == "WITH" and _main_verb_after_with(statement) != "SELECT":
        raise QueryRefused("query refused: a WITH clause must end in a SELECT")


def _check_words(statement: list[Token]) -> None:
    for index, token in enumerate(statement):
        if token.kind is not Kind.WORD:
            continue
        word = token.text.upper()
        before = statement[index - 1] if index else None
        after = statement[index + 1] if index + 1 < len(statement) else None
        if word in FORBIDDEN_FUNCTIONS:
            raise QueryRefused(f"query refused: {word.lower()}() is not allowed")
        if word not in FORBIDDEN_WORDS:
            continue
        is_call = after is not None and after.text == "("
        is_qualified = before is not None and before.text == "."
        if (is_call and word == "REPLACE") or is_qualified:
            continue
        raise QueryRefused(f"query refused: {word} is not allowed in a read-only query")


def _check_cte_writes(statement: list[Token]) -> None:
    """A WITH query that changes data (in a CTE or as its main statement) is refused as such."""
    for index, token in enumerate(statement):
        word = token.text.upper() if token.kind is Kind.WORD else ""
        if word not in DATA_MODIFYING_WORDS:
            continue
        after = statement[index + 1] if index + 1 < len(statement) else None
        before = statement[index - 1] if index else None
        if (word == "REPLACE" and after is not None and after.text == "(") or (
            before is not None and before.text == "."
        ):
            continue
        raise QueryRefused(
            f"query refused: this WITH query modifies data ({word}); only reading is allowed"
        )


def _check_parentheses(statement: list[Token]) -> None:
    depth = 0
    for token in statement:
        if token.text == "(" and token.kind is Kind.PUNCT:
            depth += 1
        elif token.text == ")" and token.kind is Kind.PUNCT:
            depth -= 1
            if depth < 0:
                raise QueryRefused("query refused: unbalanced parentheses")
    if depth:
        raise QueryRefused("query refused: unbalanced parentheses")


def _main_verb_after_with(statement: list[Token]) -> str:
    """The first statement keyword at parenthesis depth 0 after the CTE list ("" if none)."""
    depth = 0
    for token in statement[1:]:
        if token.kind is Kind.PUNCT and token.text in "()":
            depth += 1 if token.text == "(" else -1
        elif depth == 0 and token.kind is Kind.WORD and token.text.upper() in _STATEMENT_STARTS:
            return token.text.upper()
    return ""
