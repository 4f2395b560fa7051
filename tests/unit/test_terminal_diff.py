"""ShadowScreen: the sequences it writes bring a terminal (pyte) to exactly the screen Textual
rendered, sending only cells that changed; nothing is written when nothing changed."""

from __future__ import annotations

import io
import itertools

import pyte
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from textual._compositor import ChopsUpdate, LayoutUpdate
from textual.geometry import Region
from textual.strip import Strip

from validator_tui.tui.terminal_diff import ShadowScreen

WIDTH, HEIGHT = 12, 3
STYLES = (
    Style(),
    Style(color="#ff0000", bgcolor="#000010"),
    Style(bold=True, color="#00ff00"),
    Style(reverse=True),
)
#: (character, cells): narrow, wide and combining-free characters.
CHARS = (("a", 1), ("b", 1), (" ", 1), ("●", 1), ("─", 1), ("漢", 2), ("字", 2))

Cell = tuple[str, int]  # (character, style index); "" for the right half of a wide one
Grid = list[list[Cell]]


def console() -> Console:
    return Console(file=io.StringIO(), force_terminal=True, color_system="truecolor", width=80)


def strip_of(line: list[Cell]) -> Strip:
    """A strip drawing `line` (one segment per run of one style)."""
    segments: list[Segment] = []
    for char, style in line:
        if not char:
            continue
        if segments and segments[-1].style is STYLES[style]:
            segments[-1] = Segment(segments[-1].text + char, STYLES[style])
        else:
            segments.append(Segment(char, STYLES[style]))
    return Strip(segments)


def layout(grid: Grid) -> LayoutUpdate:
    return LayoutUpdate([[strip_of(line)] for line in grid], Region(0, 0, WIDTH, HEIGHT))


def chops(grid: Grid, lines: list[int], x1: int = 0, x2: int = WIDTH) -> ChopsUpdate:
    """An update of `lines`, each one chop across the screen, spans [x1, x2)."""
    rows = [{0: strip_of(line) if y in lines else None} for y, line in enumerate(grid)]
    ends = [[WIDTH] for _ in grid]
    return ChopsUpdate(rows, [(y, x1, x2) for y in sorted(lines)], ends)


class Terminal:
    """pyte fed everything the shadow writes."""

    def __init__(self) -> None:
        self.screen = pyte.Screen(WIDTH, HEIGHT)
        self.stream = pyte.ByteStream(self.screen)
        self.shadow = ShadowScreen()
        self.console = console()
        self.written: list[str] = []

    def send(self, update: LayoutUpdate | ChopsUpdate) -> str:
        raw = self.shadow.diff(update, self.console)
        text = "" if raw is None else raw.sequences
        self.written.append(text)
        self.stream.feed(text.encode())
        return text

    def grid(self) -> list[list[tuple[str, str, bool, bool]]]:
        buffer = self.screen.buffer
        return [
            [
                (buffer[y][x].data, buffer[y][x].fg, buffer[y][x].bold, buffer[y][x].reverse)
                for x in range(WIDTH)
            ]
            for y in range(HEIGHT)
        ]


def expected(grid: Grid) -> list[list[tuple[str, str, bool, bool]]]:
    """What a terminal shows for `grid`, drawn whole on a fresh pyte screen."""
    fresh = Terminal()
    fresh.stream.feed(layout(grid).render_segments(console()).encode())
    return fresh.grid()


@st.composite
def grids(draw: st.DrawFn) -> Grid:
    grid: Grid = []
    for _ in range(HEIGHT):
        line: list[Cell] = []
        while len(line) < WIDTH:
            char, cells = draw(st.sampled_from(CHARS))
            style = draw(st.integers(0, len(STYLES) - 1))
            if len(line) + cells > WIDTH:
                char, cells = "a", 1
            line.append((char, style))
            if cells == 2:
                line.append(("", style))
        grid.append(line)
    return grid


@settings(max_examples=150, deadline=None)
@given(st.lists(grids(), min_size=2, max_size=6))
def test_any_sequence_of_frames_leaves_the_terminal_as_a_fresh_render(frames: list[Grid]) -> None:
    terminal = Terminal()
    terminal.send(layout(frames[0]))
    for previous, frame in itertools.pairwise(frames):
        changed = [y for y in range(HEIGHT) if previous[y] != frame[y]]
        if changed:
            terminal.send(chops(frame, changed))
        assert terminal.grid() == expected(frame)


def test_only_the_changed_cells_are_sent() -> None:
    terminal = Terminal()
    before = [[("a", 1)] * WIDTH for _ in range(HEIGHT)]
    terminal.send(layout(before))
    after = [list(line) for line in before]
    after[1][9] = ("b", 1)
    sent = terminal.send(chops(after, [1]))
    assert sent == "\x1b[2;10H\x1b[0;38;2;255;0;0;48;2;0;0;16mb\x1b[0m"
    assert terminal.grid() == expected(after)


def test_nothing_changed_writes_nothing_and_a_span_limits_what_is_read() -> None:
    terminal = Terminal()
    grid = [[("a", 0)] * WIDTH for _ in range(HEIGHT)]
    terminal.send(layout(grid))
    assert terminal.shadow.diff(chops(grid, [0, 1, 2]), terminal.console) is None
    assert terminal.shadow.diff(layout(grid), terminal.console) is None
    changed = [list(line) for line in grid]
    changed[0][2] = ("b", 0)
    changed[0][8] = ("b", 0)
    sent = terminal.send(chops(changed, [0], x1=5, x2=WIDTH))
    assert sent.count("b") == 1
    assert terminal.grid()[0][2][0] == "a" and terminal.grid()[0][8][0] == "b"


def test_close_changes_share_one_cursor_move_and_wide_characters_stay_whole() -> None:
    terminal = Terminal()
    grid = [[("a", 0)] * WIDTH for _ in range(HEIGHT)]
    terminal.send(layout(grid))
    changed = [list(line) for line in grid]
    changed[2][1] = ("b", 0)
    changed[2][4] = ("b", 0)
    changed[2][6], changed[2][7] = ("漢", 0), ("", 0)
    sent = terminal.send(chops(changed, [2]))
    assert sent.count("\x1b[3;") == 1
    assert terminal.grid() == expected(changed)
    narrow = [list(line) for line in changed]
    narrow[2][7] = ("c", 0)  # only the right half of the wide character changes
    narrow[2][6] = ("d", 0)
    terminal.send(chops(narrow, [2]))
    assert terminal.grid() == expected(narrow)


def test_after_invalidate_a_full_update_is_sent_whole() -> None:
    terminal = Terminal()
    grid = [[("a", 0)] * WIDTH for _ in range(HEIGHT)]
    terminal.send(layout(grid))
    terminal.shadow.invalidate()
    sent = terminal.send(layout(grid))
    assert sent.count("a") == WIDTH * HEIGHT


def test_a_strip_already_shown_is_skipped_unless_something_drew_over_it() -> None:
    terminal = Terminal()
    grid = [[("a", 0)] * WIDTH for _ in range(HEIGHT)]
    strips = [strip_of(line) for line in grid]
    full = LayoutUpdate([[strip] for strip in strips], Region(0, 0, WIDTH, HEIGHT))
    terminal.send(full)
    assert terminal.send(full) == ""  # the same strips: nothing compared, nothing sent
    other = [list(line) for line in grid]
    other[0] = [("b", 1)] * WIDTH
    partial = ChopsUpdate(
        [{0: strip_of(other[0])}, {0: None}, {0: None}], [(0, 0, 5)], [[WIDTH]] * HEIGHT
    )
    terminal.send(partial)
    assert [cell[0] for cell in terminal.grid()[0]] == ["b"] * 5 + ["a"] * (WIDTH - 5)
    terminal.send(full)  # line 0's strip is the one shown before, but half drawn over
    assert terminal.grid() == expected(grid)
