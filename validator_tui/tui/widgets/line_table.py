"""A keyed table drawn with Textual's Line API.

The table holds records (not rendered rows): it renders only the rows on screen, each from its
record when it is first shown or has changed, and after every change it repaints only the
screen lines whose content differs from what was painted. Columns have a least width, a share
of the spare width and a priority for being dropped when the table is too narrow, so the
columns shown are never cut mid-word by the layout (only long values are, with an ellipsis).

The cursor is on a record, not on a row number: rows arriving above it or leaving never move
it to another record. Keys: up/down, page up/down, home/end, enter (selected); `<` `>` `!` and
header clicks sort.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import ClassVar, Generic, Literal, TypeVar

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widget import Widget

from validator_tui.tui.actions import Owner, bindings
from validator_tui.tui.format import fit, sorted_label
from validator_tui.tui.widgets.cached_style import CachedStyle
from validator_tui.tui.widgets.titles import QuietTitles

RecordT = TypeVar("RecordT")


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its least width; `ideal`, a width it takes whole when there is room (e.g. a
    full hotkey) or not at all; its share of the rest of the spare width (`grow`, up to
    `max_width`, 0 for no limit); when it is dropped for lack of width (`drop`: higher goes
    first, 0 never)."""

    key: str
    label: str
    width: int
    ideal: int = 0
    grow: int = 0
    max_width: int = 0
    drop: int = 0
    align: Literal["left", "right"] = "left"


@dataclass(frozen=True, slots=True)
class Cell:
    """What a row shows in one column: its full text (cut to the column when drawn), a short
    form for a column too narrow for the full text, and a style."""

    plain: str
    style: str = ""
    short: str = ""

    def shown(self, width: int) -> str:
        """The text for a column `width` cells wide."""
        if self.short and cell_len(self.plain) > width:
            return self.short
        return self.plain


@dataclass(frozen=True, slots=True)
class Placed:
    """A column as laid out: where it starts and how wide it is."""

    column: Column
    index: int
    x: int
    width: int


#: Columns are separated by one space; the first starts after one.
GAP = 1


def place_columns(columns: Sequence[Column], width: int) -> list[Placed]:
    """Lay `columns` out in `width` cells: drop the most droppable ones until the rest fit,
    then share the spare width among the growing ones (in proportion to `grow`, each up to its
    `max_width`; what is left goes to the last growing column without a limit)."""
    shown = list(range(len(columns)))

    def needed(indices: list[int]) -> int:
        return GAP + sum(columns[i].width + GAP for i in indices)

    while needed(shown) > width:
        droppable = [i for i in shown if columns[i].drop > 0]
        if not droppable:
            break
        shown.remove(max(droppable, key=lambda i: (columns[i].drop, i)))
    widths = {i: columns[i].width for i in shown}
    spare = width - needed(shown)
    for i in shown:
        extra = columns[i].ideal - widths[i]
        if 0 < extra <= spare:
            widths[i] += extra
            spare -= extra
    growing = [i for i in shown if columns[i].grow > 0]
    while spare > 0 and growing:
        total = sum(columns[i].grow for i in growing)
        given = 0
        for i in growing:
            share = max(1, spare * columns[i].grow // total)
            limit = columns[i].max_width
            if limit:
                share = min(share, limit - widths[i])
            share = min(share, spare - given)
            widths[i] += share
            given += share
        spare -= given
        growing = [
            i for i in growing if not columns[i].max_width or widths[i] < columns[i].max_width
        ]
        if given == 0:
            break
    placed = []
    x = GAP
    for i in shown:
        placed.append(Placed(columns[i], i, x, widths[i]))
        x += widths[i] + GAP
    return placed


class LineTable(ScrollView, QuietTitles, CachedStyle, Generic[RecordT], can_focus=True):
    """Records by key, sorted by one column, optionally filtered; see the module docstring.

    Subclasses say what a record shows (`cells`), how it sorts (`sort_value`), whether it is
    shown (`matches`) and whether its cells change with the clock (`ticking`).
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "line-table--header",
        "line-table--cursor",
    }
    DEFAULT_CSS = """
    LineTable {
        background: $surface;
        color: $foreground;
        overflow-x: hidden;
        overflow-y: auto;
        scrollbar-gutter: stable;
        scrollbar-size-vertical: 1;
        & > .line-table--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        & > .line-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        &:focus > .line-table--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: $block-cursor-text-style;
        }
    }
    """
    #: Whether the cursor starts on the first row; if not, no row is selected (and the view
    #: stays where it is as rows come and go) until the operator picks one.
    CURSOR_FROM_THE_START: ClassVar[bool] = True
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Select", show=False),
        Binding("up", "cursor_by(-1)", "Up", show=False),
        Binding("down", "cursor_by(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "cursor_to_end(False)", "First", show=False),
        Binding("end", "cursor_to_end(True)", "Last", show=False),
        *bindings(Owner.TABLE),
    ]

    class CursorMoved(Message):
        """The cursor is on another record (or on none)."""

        def __init__(self, table: LineTable[object], key: str | None) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> Widget:
            return self.table

    class RowSelected(Message):
        """`enter` (or a click on the cursor's row): the operator chose this record."""

        def __init__(self, table: LineTable[object], key: str) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> Widget:
            return self.table

    def __init__(
        self,
        columns: Sequence[Column],
        *,
        sort_key: str,
        sort_reverse: bool = False,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.columns = tuple(columns)
        #: Keys of columns not shown at all (whatever the width), e.g. a host column while
        #: the engine has one host.
        self.hidden: frozenset[str] = frozenset()
        self.sort_key = sort_key
        self.sort_reverse = sort_reverse
        self.records: dict[str, RecordT] = {}
        self.now = 0.0
        self._order: list[str] = []
        self._index: dict[str, int] = {}
        self._sort_values: dict[str, object] = {}
        self._shown_keys: set[str] = set()
        self._order_dirty = False
        self._cursor: str | None = None
        self._cells: dict[str, tuple[tuple[Cell, ...], float]] = {}
        self._strips: dict[str, Strip] = {}
        self._painted: dict[int, Strip] = {}
        self._placed: tuple[int, list[Placed]] = (-1, [])
        self._header: Strip | None = None

    # -- what subclasses say ------------------------------------------------------------------

    def cells(self, record: RecordT) -> Sequence[Cell]:
        """One cell per column (in `columns` order), as of `self.now`."""
        raise NotImplementedError

    def sort_value(self, record: RecordT, column: str) -> object:
        """What `record` sorts by in `column` (values of one column compare with each other)."""
        raise NotImplementedError

    def matches(self, record: RecordT) -> bool:
        """Whether `record` is shown (the filter)."""
        return True

    def ticking(self, record: RecordT) -> bool:
        """Whether `record`'s cells change with the clock (re-drawn by `tick` when visible)."""
        return False

    def operator_moved(self) -> None:
        """Called when the operator moves the cursor (keys, clicks, `move_cursor`)."""

    # -- records ------------------------------------------------------------------------------

    def put(self, key: str, record: RecordT) -> None:
        """Add or replace a record (shown after `commit`)."""
        self.records[key] = record
        self._cells.pop(key, None)
        self._strips.pop(key, None)
        self._place(key)

    def discard(self, key: str) -> None:
        """Remove a record (gone after `commit`)."""
        if self.records.pop(key, None) is not None:
            self._cells.pop(key, None)
            self._strips.pop(key, None)
            self._sort_values.pop(key, None)
            if key in self._shown_keys:
                self._shown_keys.discard(key)
                self._order_dirty = True

    def refilter(self) -> None:
        """Apply a changed filter to every record (shown after `commit`)."""
        for key in self.records:
            self._place(key)
        self._order_dirty = True

    def set_hidden(self, keys: Iterable[str]) -> None:
        """Hide the columns `keys` (and show the others); every line is drawn again."""
        hidden = frozenset(keys)
        if hidden == self.hidden:
            return
        self.hidden = hidden
        self._placed = (-1, [])
        self._header = None
        self._strips.clear()
        self._reconcile()

    def redraw_all(self) -> None:
        """Every row's cells are computed again (e.g. a name they show changed)."""
        self._cells.clear()
        self._strips.clear()

    def commit(self) -> None:
        """Re-sort if needed, keep the cursor on its record and repaint the lines that
        changed."""
        previous = self._cursor
        if self._order_dirty:
            self._rebuild_order(previous)
        if self._cursor is None and self._order and self.CURSOR_FROM_THE_START:
            self._cursor = self._order[0]
        self._set_virtual_height()
        self._keep_cursor_visible()
        self._reconcile()
        if self._cursor != previous:
            self.post_message(self.CursorMoved(self, self._cursor))  # type: ignore[arg-type]

    def tick(self, now: float) -> None:
        """The clock moved: redraw the visible rows whose cells depend on it."""
        self.now = now
        if self.sort_key in self.ticking_columns():
            for key in self.records:
                self._place(key)
            if self._order_dirty:
                self._rebuild_order(self._cursor)
        self._reconcile()

    def ticking_columns(self) -> frozenset[str]:
        """Columns whose values change with the clock."""
        return frozenset()

    def _place(self, key: str) -> None:
        record = self.records[key]
        shown = self.matches(record)
        was_shown = key in self._shown_keys
        if shown != was_shown:
            self._order_dirty = True
            if shown:
                self._shown_keys.add(key)
            else:
                self._shown_keys.discard(key)
        value = self.sort_value(record, self.sort_key)
        if shown and self._sort_values.get(key, _UNSET) != value:
            self._order_dirty = True
        self._sort_values[key] = value

    def _rebuild_order(self, keep: str | None) -> None:
        old_row = self._index.get(keep, 0) if keep is not None else 0
        values = self._sort_values
        try:
            self._order = sorted(
                self._shown_keys, key=lambda key: (values[key], key), reverse=self.sort_reverse
            )
        except TypeError:  # None or mixed types in the column
            self._order = sorted(
                self._shown_keys,
                key=lambda key: (_Sortable(values[key]), key),
                reverse=self.sort_reverse,
            )
        self._index = {key: index for index, key in enumerate(self._order)}
        self._order_dirty = False
        if keep is not None and keep not in self._index:
            # The record under the cursor left: the cursor takes the row where it was.
            self._cursor = self._order[min(old_row, len(self._order) - 1)] if self._order else None

    # -- reading ------------------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def cursor_row(self) -> int:
        """The cursor's row number (0 when the table is empty)."""
        return self._index.get(self._cursor, 0) if self._cursor is not None else 0

    @property
    def selected_key(self) -> str | None:
        """The key of the record under the cursor, if any."""
        return self._cursor

    def row_keys(self) -> list[str]:
        """Every shown record's key, in display order."""
        return list(self._order)

    def has_row(self, key: str) -> bool:
        return key in self._index

    def get_row_index(self, key: str) -> int:
        return self._index[key]

    def get_row(self, key: str) -> list[Cell]:
        """The cells of a shown record, every column (also those the width drops)."""
        return list(self._row_cells(key))

    def cell(self, key: str, column: str) -> Cell:
        """The cell a shown record has in `column`."""
        index = next(i for i, c in enumerate(self.columns) if c.key == column)
        return self._row_cells(key)[index]

    def visible_keys(self) -> list[str]:
        """Keys of the rows on screen now."""
        top = round(self.scroll_y)
        return self._order[top : top + self._page_rows()]

    # -- cursor -------------------------------------------------------------------------------

    def move_cursor(self, *, row: int) -> None:
        """Put the cursor on row `row` (as the operator would)."""
        if self._order:
            self._move_to(self._order[max(0, min(row, len(self._order) - 1))])

    def select_key(self, key: str) -> None:
        """Put the cursor on `key`'s row (as the operator would)."""
        if key in self._index:
            self._move_to(key)

    def set_cursor(self, key: str | None) -> None:
        """Put the cursor on `key` without counting it as the operator's move."""
        if key != self._cursor and (key is None or key in self._index):
            self._cursor_changed(key)

    def _move_to(self, key: str) -> None:
        self.operator_moved()
        if key != self._cursor:
            self._cursor_changed(key)

    def _cursor_changed(self, key: str | None) -> None:
        old, self._cursor = self._cursor, key
        for changed in (old, key):
            if changed is not None:
                self._strips.pop(changed, None)
        self._keep_cursor_visible()
        self._reconcile()
        self.post_message(self.CursorMoved(self, key))  # type: ignore[arg-type]

    def action_cursor_by(self, step: int) -> None:
        if self._cursor is None:  # nothing picked yet: the first move picks the top row shown
            self.move_cursor(row=round(self.scroll_y))
        elif self._order:
            self.move_cursor(row=self.cursor_row + step)

    def action_page(self, direction: int) -> None:
        if self._order:
            self.move_cursor(row=self.cursor_row + direction * max(1, self._page_rows() - 1))

    def action_cursor_to_end(self, last: bool) -> None:
        if self._order:
            self.move_cursor(row=len(self._order) - 1 if last else 0)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`enter` on an empty table goes on to the screen (which says there is nothing)."""
        if action == "select_cursor" and not self._order:
            return False
        return super().check_action(action, parameters)

    def action_select_cursor(self) -> None:
        if self._cursor is not None:
            self.post_message(self.RowSelected(self, self._cursor))  # type: ignore[arg-type]

    def _page_rows(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def _keep_cursor_visible(self) -> None:
        if self._cursor is None or not self.is_mounted:
            return
        row = self._index.get(self._cursor)
        if row is None:
            return
        top = round(self.scroll_y)
        page = self._page_rows()
        if row < top:
            self.scroll_to(y=row, animate=False)
        elif row >= top + page:
            self.scroll_to(y=row - page + 1, animate=False)

    # -- sorting ------------------------------------------------------------------------------

    def set_sort(self, column: str, reverse: bool) -> None:
        """Sort by `column`, keeping the cursor on its record."""
        self.sort_key = column
        self.sort_reverse = reverse
        self._header = None
        self.refilter()
        self.commit()

    def action_sort_column(self, step: int) -> None:
        keys = [placed.column.key for placed in self._layout()]
        index = keys.index(self.sort_key) if self.sort_key in keys else -1
        self.set_sort(keys[(index + step) % len(keys)], self.sort_reverse)

    def action_reverse_sort(self) -> None:
        self.set_sort(self.sort_key, not self.sort_reverse)

    async def _on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y == 0:
            for placed in self._layout():
                if placed.x <= offset.x < placed.x + placed.width + GAP:
                    key = placed.column.key
                    self.set_sort(key, not self.sort_reverse if key == self.sort_key else False)
                    return
            return
        row = round(self.scroll_y) + offset.y - 1
        if 0 <= row < len(self._order):
            key = self._order[row]
            if key == self._cursor:
                self.action_select_cursor()
            else:
                self._move_to(key)

    # -- drawing ------------------------------------------------------------------------------

    def on_resize(self, event: events.Resize) -> None:
        """Row strips are kept (a strip of another width is drawn again when shown)."""
        self._set_virtual_height()
        self._keep_cursor_visible()

    def notify_style_update(self) -> None:
        """Styles changed (focus, theme): every line is drawn again."""
        super().notify_style_update()
        self._strips.clear()
        self._header = None

    def _layout(self) -> list[Placed]:
        width = self.scrollable_content_region.width
        if self._placed[0] != width:
            shown = [i for i, column in enumerate(self.columns) if column.key not in self.hidden]
            placed = place_columns([self.columns[i] for i in shown], width)
            self._placed = (width, [replace(p, index=shown[p.index]) for p in placed])
        return self._placed[1]

    def _set_virtual_height(self) -> None:
        """The scrollable height follows the row count without a screen layout (the table's
        size is the stylesheet's; only its scrollbar changes)."""
        size = Size(self.scrollable_content_region.width, len(self._order) + 1)
        if size != self.virtual_size and self.is_mounted:
            self.set_reactive(Widget.virtual_size, size)
            self._scroll_update(size)

    def render_line(self, y: int) -> Strip:
        strip = self._line(y, self.scrollable_content_region.width)
        self._painted[y] = strip
        return strip

    def _line(self, y: int, width: int) -> Strip:
        if y == 0:
            if self._header is None or self._header.cell_length != width:
                self._header = self._header_strip(width)
            return self._header
        index = round(self.scroll_y) + y - 1
        if index >= len(self._order):
            return self.blank_line(width)
        key = self._order[index]
        cells = self._row_cells(key)
        strip = self._strips.get(key)
        if strip is None or strip.cell_length != width:
            strip = self._row_strip(cells, width, key == self._cursor)
            self._strips[key] = strip
        return strip

    def _row_cells(self, key: str) -> tuple[Cell, ...]:
        """The record's cells, computed again when they depend on a clock that moved."""
        cached = self._cells.get(key)
        record = self.records[key]
        if cached is not None and (cached[1] == self.now or not self.ticking(record)):
            return cached[0]
        cells = tuple(self.cells(record))
        if cached is not None and cached[0] != cells:
            self._strips.pop(key, None)
        self._cells[key] = (cells, self.now)
        return cells

    def _reconcile(self) -> None:
        """Repaint the screen lines whose content is not what was painted last."""
        if not self.is_mounted:
            return
        width, height = self.scrollable_content_region.size
        painted = self._painted
        regions = [
            Region(0, y, width, 1) for y in range(height) if painted.get(y) != self._line(y, width)
        ]
        for y in list(self._painted):
            if y >= height:
                del self._painted[y]
        if regions:
            self.refresh(*regions)

    def _header_strip(self, width: int) -> Strip:
        style = self.base_style + self.get_component_rich_style("line-table--header")
        segments = [Segment(" " * GAP, style)]
        for placed in self._layout():
            label = placed.column.label
            if placed.column.key == self.sort_key:
                marker = "▼" if self.sort_reverse else "▲"
                label = sorted_label(label, placed.width, marker)
            segments.append(Segment(fit(label, placed.width, placed.column.align), style))
            segments.append(Segment(" " * GAP, style))
        return Strip(segments).adjust_cell_length(width, style)

    def _row_strip(self, cells: Sequence[Cell], width: int, cursor: bool) -> Strip:
        base = self.base_style
        if cursor:
            base = base + self.get_component_rich_style("line-table--cursor")
        segments = [Segment(" " * GAP, base)]
        for placed in self._layout():
            cell = cells[placed.index]
            style = base + _style(cell.style) if cell.style else base
            if cursor:
                style = style + self.get_component_rich_style("line-table--cursor")
            text = fit(cell.shown(placed.width), placed.width, placed.column.align)
            segments.append(Segment(text, style))
            segments.append(Segment(" " * GAP, base))
        return Strip(segments).adjust_cell_length(width, base)


class _Unset:
    pass


_UNSET = _Unset()


class _Sortable:
    """Orders values of one column: None first, then by value (mixed types by type name)."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __lt__(self, other: _Sortable) -> bool:
        a, b = self.value, other.value
        if a is None or b is None:
            return a is None and b is not None
        try:
            return bool(a < b)  # type: ignore[operator]
        except TypeError:
            return type(a).__name__ < type(b).__name__


_STYLES: dict[str, Style] = {}


def _style(spec: str) -> Style:
    style = _STYLES.get(spec)
    if style is None:
        style = _STYLES[spec] = Style.parse(spec)
    return style
