"""clean_line: nothing a terminal would interpret survives."""

import pytest

from validator_tui.sanitize import clean_line, clean_lines


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("title\x1b]0;pwned\x07 ok", "title ok"),
        ("clip\x1b]52;c;ZXZpbA==\x1b\\ ok", "clip ok"),
        ("\x1b[2J\x1b[Hcursor\x1b[31m red\x1b[0m", "cursor red"),
        ("link \x1b]8;;http://x\x1b\\text\x1b]8;;\x1b\\", "link text"),
        ("8bit \x9b31m csi \x9d0;t\x07 osc", "8bit  csi  osc"),
        ("nul\x00 bell\x07 back\x08", "nul bell back"),
        ("bidi \u202eevil\u202c \u2066iso\u2069", "bidi evil iso"),
        ("tab\there\r\nline", "tab    here line"),
        ("[link=https://x]markup[/] stays text", "[link=https://x]markup[/] stays text"),
    ],
)
def test_escapes_and_controls_removed(raw, expected):
    assert clean_line(raw) == expected


def test_invalid_utf8_and_length_bound():
    assert clean_line(b"ok \xff\xfe done") == "ok \ufffd\ufffd done"
    long = clean_line("x" * 1_000_000, limit=100)
    assert len(long) == 100 and long.endswith("…")


def test_clean_lines_keeps_the_tail_and_says_so():
    lines = clean_lines([f"line {i}" for i in range(10)], max_lines=3)
    assert lines == ["[7 earlier lines dropped]", "line 7", "line 8", "line 9"]
