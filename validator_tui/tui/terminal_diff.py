"""Send the terminal only the cells that changed, the way curses does.

Textual repaints by lines: an update re-sends each dirty line from the left edge of the widget
that owns it to the end of the dirty region, with a full SGR sequence and a reset around every
segment. `ShadowScreen` keeps a copy of what the terminal shows and turns each of Textual's
updates into the cells that differ from it: runs of changed cells, one cursor move per run, an
SGR sequence only where the style changes. Nothing else changes: the app still renders what
it renders, and a full update after a resize (or `invalidate()`) is sent whole.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.cells import cell_len, get_character_cell_size
from rich.color import ColorSystem
from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.style import Style
from textual._compositor import ChopsUpdate, CompositorUpdate, LayoutUpdate
from textual.strip import Strip

#: (text of the cell, SGR parameters, hyperlink): the text is "" in the right half of a wide
#: character.
Cell = tuple[str, str, str]
_BLANK: Cell = (" ", "", "")
#: Unchanged cells between two changed runs re-sent rather than moving the cursor (a move
#: costs about as many bytes).
MERGE_GAP = 6
_RESET = "\x1b[0m"
_LINK_END = "\x1b]8;;\x1b\\"


class RawUpdate(CompositorUpdate):
    """Terminal sequences computed already (for `App._display`)."""

    def __init__(self, sequences: str) -> None:
        self.sequences = sequences

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield Segment(self.sequences)

    def render_segments(self, console: Console) -> str:
        return self.sequences


class ShadowScreen:
    """What the terminal shows, cell by cell, and the diff of each update against it."""

    def __init__(self) -> None:
        self._lines: list[list[Cell]] = []
        #: Per line, the strips whose cells the shadow holds, by their first column.
        self._known: list[dict[int, Strip]] = []
        self._width = 0
        self._valid = False

    def invalidate(self) -> None:
        """Forget what the terminal shows: the next full update is sent whole."""
        self._valid = False

    def diff(self, update: CompositorUpdate, console: Console) -> RawUpdate | None:
        """The sequences that bring the terminal from its current content to `update`'s;
        None when nothing visible changes. Updates of other kinds pass through whole."""
        color_system = console._color_system or ColorSystem.TRUECOLOR
        if isinstance(update, LayoutUpdate):
            return self._layout(update, console, color_system)
        if isinstance(update, ChopsUpdate) and self._valid:
            return self._chops(update, color_system)
        if isinstance(update, ChopsUpdate):
            # Nothing to compare with yet: send it as Textual would.
            return RawUpdate(update.render_segments(console))
        return None

    # -- updates ------------------------------------------------------------------------------

    def _layout(
        self, update: LayoutUpdate, console: Console, color_system: ColorSystem
    ) -> RawUpdate | None:
        region = update.region
        rows = [list(chops) for chops in update.strips]
        if not self._valid or region.x or region.y or self._size() != (region.width, len(rows)):
            self._lines, self._known = [], []
            for chops in rows:
                line: list[Cell] = []
                known: dict[int, Strip] = {}
                for strip in chops:
                    known[len(line)] = strip
                    line.extend(_cells(strip, color_system))
                self._lines.append(_fit(line, region.width))
                self._known.append(known)
            self._width, self._valid = region.width, True
            return RawUpdate(update.render_segments(console))
        out: list[str] = []
        state = _State()
        for y, chops in enumerate(rows):
            x = 0
            placed = []
            for strip in chops:
                placed.append((x, x + strip.cell_length, strip))
                x += strip.cell_length
            self._take(y, 0, self._width, placed, color_system, out, state)
        return _finish(out, state)

    def _chops(self, update: ChopsUpdate, color_system: ColorSystem) -> RawUpdate | None:
        out: list[str] = []
        state = _State()
        height = len(self._lines)
        for y, x1, x2 in update.spans:
            if y >= height:
                continue
            x2 = min(x2, self._width)
            if x2 <= x1:
                continue
            placed = [
                (x, end, strip)
                for end, (x, strip) in zip(
                    update.chop_ends[y], update.chops[y].items(), strict=False
                )
                if strip is not None and x < x2 and end > x1
            ]
            self._take(y, x1, x2, placed, color_system, out, state)
        return _finish(out, state)

    def _take(
        self,
        y: int,
        x1: int,
        x2: int,
        placed: list[tuple[int, int, Strip]],
        color_system: ColorSystem,
        out: list[str],
        state: _State,
    ) -> None:
        """Columns [x1, x2) of line `y` now show the strips `placed` (start, end, strip): write
        what differs. A strip the shadow already holds at the same place (the same object:
        Textual reuses the strips of lines that did not change) is not even compared."""
        known = self._known[y]
        new: list[Cell] | None = None
        fresh: dict[int, Strip] = {}
        for x, end, strip in placed:
            inside = x >= x1 and end <= x2
            if inside and known.get(x) is strip:
                fresh[x] = strip
                continue
            if new is None:
                new = self._lines[y][x1:x2]
            cells = _cells(strip, color_system)
            start = max(x, x1)
            stop = min(end, x2, x + len(cells))
            new[start - x1 : stop - x1] = cells[start - x : stop - x]
            if inside:
                fresh[x] = strip
        for x in [x for x, strip in known.items() if x < x2 and x + strip.cell_length > x1]:
            del known[x]
        known.update(fresh)
        if new is not None:
            self._apply(y, x1, _fit(new, x2 - x1), out, state)

    def _size(self) -> tuple[int, int]:
        return self._width, len(self._lines)

    def _apply(self, y: int, x1: int, new: list[Cell], out: list[str], state: _State) -> None:
        """Compare `new` (cells from column `x1` of line `y`) with the shadow; write the runs
        that differ to `out` and take them into the shadow."""
        old = self._lines[y]
        for start, stop in _runs(old, new, x1):
            while start < stop and not new[start - x1][0]:
                start += 1  # the right half of a wide character left of the span: kept
            if start == stop:
                continue
            out.append(f"\x1b[{y + 1};{start + 1}H")
            for cell in new[start - x1 : stop - x1]:
                state.write(cell, out)
            old[start:stop] = new[start - x1 : stop - x1]
            last = old[stop - 1]
            if stop < len(old) and cell_len(last[0]) == 2:
                old[stop] = ("", last[1], last[2])  # drawn by the wide character beside it


class _State:
    """The terminal's current SGR and hyperlink while a frame is written."""

    def __init__(self) -> None:
        self.sgr = ""
        self.link = ""
        self.wrote = False

    def write(self, cell: Cell, out: list[str]) -> None:
        text, sgr, link = cell
        self.wrote = True
        if not text:
            return  # the right half of a wide character: written with its left half
        if link != self.link:
            if self.link:
                out.append(_LINK_END)
            if link:
                out.append(f"\x1b]8;;{link}\x1b\\")
            self.link = link
        if sgr != self.sgr:
            out.append(f"\x1b[0;{sgr}m" if sgr else _RESET)
            self.sgr = sgr
        out.append(text)


def _finish(out: list[str], state: _State) -> RawUpdate | None:
    if not state.wrote:
        return None
    if state.link:
        out.append(_LINK_END)
    if state.sgr:
        out.append(_RESET)
    return RawUpdate("".join(out))


def _runs(old: list[Cell], new: list[Cell], x1: int) -> Iterable[tuple[int, int]]:
    """Column ranges [start, stop) where `new` (from column `x1`) differs from `old`, close
    runs merged. (A wide character that changed differs in its left cell, so a run never
    starts on the right half of one, except at the edge of the update.)"""
    run_start = -1
    run_stop = -1
    for index, cell in enumerate(new):
        x = x1 + index
        if old[x] == cell:
            continue
        if run_start >= 0 and x - run_stop <= MERGE_GAP:
            run_stop = x + 1
            continue
        if run_start >= 0:
            yield run_start, run_stop
        run_start, run_stop = x, x + 1
    if run_start >= 0:
        yield run_start, run_stop


def _fit(line: list[Cell], width: int) -> list[Cell]:
    if len(line) < width:
        line.extend([_BLANK] * (width - len(line)))
    elif len(line) > width:
        del line[width:]
    return line


def _cells(strip: Strip, color_system: ColorSystem) -> list[Cell]:
    """One entry per terminal cell of `strip`."""
    cells: list[Cell] = []
    append = cells.append
    extend = cells.extend
    for text, style, control in strip:
        if control or not text:
            continue
        sgr, link = _style_key(style, color_system)
        if text.isascii():
            extend([(char, sgr, link) for char in text])
            continue
        for char in text:
            width = get_character_cell_size(char)
            if width == 0 and cells:
                previous = cells[-1]
                cells[-1] = (previous[0] + char, previous[1], previous[2])
            elif width == 2:
                append((char, sgr, link))
                append(("", sgr, link))
            elif width:
                append((char, sgr, link))
    return cells


def _style_key(style: Style | None, color_system: ColorSystem) -> tuple[str, str]:
    if style is None:
        return "", ""
    sgr = style._ansi
    if sgr is None:
        sgr = Strip.render_ansi(style, color_system)
    return sgr, style._link or ""
