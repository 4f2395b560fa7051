"""What reaches the terminal: after a burst of changes sent as partial repaints, a terminal
emulator (pyte) fed every byte the console wrote shows exactly what a fresh console shows for
the same engine state (no stale cell, colour or attribute left behind)."""

from __future__ import annotations

import pytest

from tests.support.pty_screen import Cell, PtyScreen, python_module
from tests.support.wire_app import BURST_AFTER_S


def _differences(seen: list[list[Cell]], expected: list[list[Cell]]) -> list[str]:
    """Rows that differ, each as `row N: seen | expected` (text), attributes included."""
    lines = []
    for y, (a, b) in enumerate(zip(seen, expected, strict=True)):
        if a != b:
            columns = [x for x, (ca, cb) in enumerate(zip(a, b, strict=True)) if ca != cb]
            lines.append(
                f"row {y} cols {columns[:8]}: {''.join(c[0] for c in a)!r} | "
                f"{''.join(c[0] for c in b)!r} first: {a[columns[0]]} vs {b[columns[0]]}"
            )
    return lines


def _screen_after_burst(cols: int, rows: int) -> tuple[list[list[Cell]], list[str], int]:
    program = PtyScreen(python_module("tests.support.wire_app", "burst"), cols=cols, rows=rows)
    try:
        program.pump(BURST_AFTER_S)
        first_frames = program.received
        program.settle(quiet_s=2.0)
        # Screens over the main one and focus changes: full updates, diffed against the shadow.
        for keys in (b"?", b"?", b"/", b"\r", b"\t", b"\x1b[Z"):
            program.send(keys)
            program.settle(quiet_s=0.7)
        return program.cells(), program.text(), program.received - first_frames
    finally:
        program.close()


def _fresh_screen(cols: int, rows: int) -> list[list[Cell]]:
    program = PtyScreen(python_module("tests.support.wire_app", "fresh"), cols=cols, rows=rows)
    try:
        program.settle(quiet_s=2.0)
        return program.cells()
    finally:
        program.close()


@pytest.mark.parametrize("size", [(120, 36), (80, 24), (200, 50)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_screen_after_a_burst_equals_a_fresh_render(size: tuple[int, int]) -> None:
    cols, rows = size
    seen, text, burst_bytes = _screen_after_burst(cols, rows)
    expected = _fresh_screen(cols, rows)
    assert burst_bytes > 0, "the burst changed nothing on screen"
    assert any("arena" in line for line in text), "the burst did not reach its end"
    assert _differences(seen, expected) == []
