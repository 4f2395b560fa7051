"""Config problems in an operator's words: TOML syntax errors as `file:line:column: what is
wrong`, validation errors as `file: key.path: what was expected, got <value>`, unknown keys
with the closest known name. No library wording, no Python reprs."""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError
from tomlkit.exceptions import (
    InvalidCharInStringError,
    InvalidControlChar,
    InvalidDateError,
    InvalidDateTimeError,
    InvalidNumberError,
    InvalidNumberOrDateError,
    InvalidTimeError,
    InvalidUnicodeValueError,
    ParseError,
    UnexpectedCharError,
    UnexpectedEofError,
)

#: What a TOML syntax error means, by its kind.
_TOML_WORDS: tuple[tuple[type[ParseError], str], ...] = (
    (
        InvalidControlChar,
        'a string is not closed on its line, or holds a control character: close it with " '
        "(a string cannot span lines; write a newline as \\n)",
    ),
    (InvalidCharInStringError, "a string holds a bad escape: write a backslash as \\\\"),
    (InvalidUnicodeValueError, "a \\u or \\U escape is not a valid character"),
    (UnexpectedEofError, "the file ends in the middle of a value, a string or a [table] header"),
    (InvalidDateTimeError, "not a valid date-time (expected e.g. 2026-01-31T12:00:00Z)"),
    (InvalidDateError, "not a valid date (expected YYYY-MM-DD)"),
    (InvalidTimeError, "not a valid time (expected HH:MM:SS)"),
    (InvalidNumberOrDateError, 'not a valid number or date (quote a string: "...")'),
    (InvalidNumberError, "not a valid number"),
)

#: What a value should have been, by pydantic's error type.
_EXPECTED = {
    "greater_than": "expected a positive number",
    "greater_than_equal": "expected a number >= the minimum",
    "less_than_equal": "expected a number <= the maximum",
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "string_type": "expected a string",
    "model_type": "expected a table",
    "model_attributes_type": "expected a table",
    "list_type": "expected a list ([[...]] entries)",
    "dict_type": "expected a table",
}


def toml_error_text(label: str, exc: ParseError, source: str) -> str:
    """`file:line:column: what is wrong`, then the offending line with a caret under the
    column (columns count from 1, as editors do)."""
    line, column = exc.line, exc.col + 1
    twice = _defined_twice(str(exc))
    if twice is not None:
        line, column = _second_definition(twice, source) or (line, column)
    head = f"{label}:{line}:{column}: {_toml_words(exc)}"
    lines = source.splitlines()
    if not 1 <= line <= len(lines):
        return head
    shown = _printable(lines[line - 1])
    return f"{head}\n    {shown}\n    {' ' * min(column - 1, len(shown))}^"


def _toml_words(exc: ParseError) -> str:
    for kind, words in _TOML_WORDS:
        if isinstance(exc, kind):
            return words
    if isinstance(exc, UnexpectedCharError):
        char = str(exc).split("'")[1] if "'" in str(exc) else ""
        if char in ("\n", "\\n", "\r", "\\r"):
            return "the line ends too early: a value, a closing quote or a closing ] is missing"
        return f"unexpected character {_printable(char)!s} here"
    twice = _defined_twice(str(exc))
    if twice is not None:
        return f'"{_printable(twice)}" is defined twice (a key or a [table] may appear once)'
    message = str(exc).split(" at line ")[0]
    return f"not valid TOML ({_printable(message)})"


def _defined_twice(message: str) -> str | None:
    """The key or table a "defined twice" error names, else None."""
    if "already exists" not in message or message.count('"') < 2:
        return None
    return message.split('"')[1]


def _second_definition(name: str, source: str) -> tuple[int, int] | None:
    """Line and column (from 1) where `name` is set or opened as a table the second time
    (tomlkit reports where it noticed, which may be lines later)."""
    pattern = re.compile(rf'^\s*(\[+\s*)?"?{re.escape(name)}"?\s*(=|\])')
    seen = [n for n, text in enumerate(source.splitlines(), start=1) if pattern.match(text)]
    if len(seen) < 2:
        return None
    text = source.splitlines()[seen[1] - 1]
    return seen[1], len(text) - len(text.lstrip()) + 1


def validation_error_text(
    label: str,
    exc: ValidationError,
    model: type[BaseModel],
    from_env: Mapping[str, str] | None = None,
) -> str:
    """One line per problem: `file: key.path: expected …, got <value>`; a value that came
    from the environment is named by its variable: `$NAME (environment): key: …`; an unknown
    key names the closest known one."""
    lines = []
    for err in exc.errors():
        loc = ".".join(_printable(str(p)) for p in err["loc"]) or "<root>"
        variable = (from_env or {}).get(str(err["loc"][0])) if err["loc"] else None
        where = f"${variable} (environment)" if variable else label
        kind = err["type"]
        if kind == "extra_forbidden":
            lines.append(f"{where}: {loc}: {_unknown_key(model, err['loc'])}")
            continue
        if kind == "missing":
            lines.append(f"{where}: {loc}: required key is missing")
            continue
        if kind == "value_error":
            expected = str(err.get("ctx", {}).get("error", err["msg"]))
            if not err["loc"]:
                lines.append(f"{where}: {expected}")
                continue
        elif kind == "literal_error":
            allowed = str(err.get("ctx", {}).get("expected", ""))
            expected = "expected one of: " + allowed.replace("'", "").replace(" or ", ", ")
        else:
            expected = _EXPECTED.get(kind, err["msg"])
        got = err.get("input")
        if isinstance(got, Mapping | list):
            lines.append(f"{where}: {loc}: {expected}")
        else:
            lines.append(f"{where}: {loc}: {expected}, got {_show(loc, got)}")
    return "\n".join(lines)


def _unknown_key(model: type[BaseModel], loc: Sequence[int | str]) -> str:
    """ "unknown key" with the closest known name at that place, when one is close."""
    parent = _model_at(model, loc[:-1])
    known = list(parent.model_fields) if parent is not None else []
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    if close:
        return f"unknown key: did you mean `{close[0]}`?"
    if known:
        return f"unknown key (known here: {', '.join(known)})"
    return "unknown key (check the spelling)"


def _model_at(model: type[BaseModel], path: Sequence[int | str]) -> type[BaseModel] | None:
    """The config table (model class) at `path` below `model`, or None if there is none."""
    current: Any = model
    for part in path:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(part)
        if field is None:
            return None
        current = _table_type(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _table_type(annotation: Any) -> Any:
    """The model class inside an annotation (`Model`, `list[Model]`, `Model | None`)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (list, typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _table_type(arg)
            if found is not None:
                return found
    return None


def _show(loc: str, value: Any) -> str:
    if "token" in loc:
        return "<secret>"
    if isinstance(value, str):
        text = f'"{_printable(value)}"'
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = _printable(str(value))
    return text if len(text) <= 80 else text[:77] + "..."


def _printable(value: str) -> str:
    """`value` with every unprintable character (controls, line separators) escaped, so an
    error line stays one inert line whatever the value holds."""
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in value)
