"""README's key list is the console's action table: same keys, same titles, same order."""

from __future__ import annotations

import re
from pathlib import Path

from validator_tui.tui.actions import ACTIONS

README = Path(__file__).resolve().parents[2] / "README.md"
ROW = re.compile(r"^\| `(?P<key>[^`]+)` \| (?P<title>[^|]+?) \| (?P<what>.+) \|$")


def readme_keys() -> list[tuple[str, str]]:
    """(key, title) of every row of the table under README's `### Keys` heading."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n### Keys\n", 1)[1].split("\n## ", 1)[0]
    return [
        (match["key"], match["title"])
        for line in section.splitlines()
        if (match := ROW.match(line.strip()))
    ]


def test_readme_key_table_matches_the_action_table() -> None:
    listed = readme_keys()
    expected = [(action.key_label, action.title) for action in ACTIONS]
    missing = [pair for pair in expected if pair not in listed]
    extra = [pair for pair in listed if pair not in expected]
    assert not missing, f"README lacks these keys: {missing}"
    assert not extra, f"README lists keys the console does not have: {extra}"
    assert listed == expected, "README lists the keys in another order than the action table"


def test_every_key_is_bound_once() -> None:
    keys = [action.key for action in ACTIONS]
    assert len(keys) == len(set(keys)), "two actions share a key"
