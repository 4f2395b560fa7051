"""A DataTable whose rows are keyed records, updated in place and sorted by a per-cell value."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self

from rich.text import Text
from textual.coordinate import Coordinate
from textual.geometry import Region
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, RowDoesNotExist

from validator_tui.tui.actions import Owner, bindings


class Cell(Text):
    """A table cell: the text shown, plus the value its column sorts by."""

    def __init__(self, text: str | Text, sort_value: object = None) -> None:
        if isinstance(text, Text):
            super().__init__(text.plain, style=text.style, no_wrap=True, overflow="ellipsis")
        else:
            super().__init__(text, no_wrap=True, overflow="ellipsis")
        self.sort_value: object = self.plain if sort_value is None else sort_value

    def same_as(self, other: Cell) -> bool:
        """Whether both cells look the same (text and style)."""
        return self.plain == other.plain and str(self.style) == str(other.style)


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    key: str
    label: str
    width: int


class KeyedTable(DataTable[Cell]):
    """Rows keyed by record id; `upsert`/`discard` touch only what changed, never rebuild.

    The cursor stays on the same record when rows are added, removed or re-sorted. Sorting is
    by one column (click its header, or `<`/`>` to pick the column), `!` reverses it.
    """

    BINDINGS = bindings(Owner.TABLE)

    def __init__(
        self,
        columns: Sequence[ColumnSpec],
        *,
        sort_key: str,
        sort_reverse: bool = False,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False, cell_padding=1)
        self._specs = list(columns)
        self._keys = [spec.key for spec in columns]
        self._cells: dict[str, list[Cell]] = {}
        self.sort_key = sort_key
        self.sort_reverse = sort_reverse
        self._needs_sort = False
        self._removing = False

    def on_mount(self) -> None:
        for spec in self._specs:
            self.add_column(Text(spec.label), width=spec.width, key=spec.key)
        self._label_columns()

    @property
    def selected_key(self) -> str | None:
        """The key of the row under the cursor, or None for an empty table."""
        if self.row_count == 0:
            return None
        try:
            row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except CellDoesNotExist:
            return None
        return row_key.value

    def row_keys(self) -> list[str]:
        """Every row's key, in display order."""
        return [
            self.coordinate_to_cell_key(Coordinate(i, 0)).row_key.value or ""
            for i in range(self.row_count)
        ]

    def upsert(self, key: str, cells: list[Cell]) -> None:
        """Add the row, or update the cells that changed; the table re-sorts on `settle`."""
        old = self._cells.get(key)
        if old is None:
            self.add_row(*cells, key=key)
            self._cells[key] = cells
            self._needs_sort = True
            return
        for column, cell in enumerate(cells):
            self.set_cell(key, column, cell)

    def set_cell(self, key: str, column: int, cell: Cell) -> None:
        """Show `cell` in column number `column` of a shown row, unless it looks the same."""
        row = self._cells[key]
        before = row[column]
        if before.same_as(cell):
            return
        row[column] = cell
        self.update_cell(key, self._keys[column], cell)
        if self._keys[column] == self.sort_key and before.sort_value != cell.sort_value:
            self._needs_sort = True

    def discard(self, key: str) -> None:
        """Remove the row if it is shown."""
        if self._cells.pop(key, None) is not None:
            self._removing = True
            try:
                self.remove_row(key)
            except RowDoesNotExist:
                return
            finally:
                self._removing = False

    def refresh(
        self,
        *regions: Region,
        repaint: bool = True,
        layout: bool = False,
        recompose: bool = False,
    ) -> Self:
        """As `Widget.refresh`, but removing a row repaints without a screen-wide layout.

        `DataTable.remove_row` asks for a layout every time; the table's size is its
        stylesheet's, and its scrollable height is re-measured when idle (a changed
        `virtual_size` lays the screen out again by itself), so the repaint is enough.
        """
        return super().refresh(
            *regions,
            repaint=repaint,
            layout=layout and not self._removing,
            recompose=recompose,
        )

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`enter` on an empty table goes on to the screen (which says there is nothing)."""
        if action == "select_cursor" and self.row_count == 0:
            return False
        return super().check_action(action, parameters)

    def has_row(self, key: str) -> bool:
        return key in self._cells

    def settle(self, keep: str | None) -> None:
        """Re-sort if needed and put the cursor back on the row `keep` (if still shown)."""
        if self._needs_sort:
            self._needs_sort = False
            self.sort(self.sort_key, key=_sort_value, reverse=self.sort_reverse)
        if keep is not None and keep in self._cells:
            index = self.get_row_index(keep)
            if index != self.cursor_row:
                self.move_cursor(row=index, scroll=False)

    def set_sort(self, column_key: str, reverse: bool) -> None:
        """Sort by `column_key` (toggling direction when asked) keeping the cursor's row."""
        keep = self.selected_key
        self.sort_key = column_key
        self.sort_reverse = reverse
        self._needs_sort = True
        self._label_columns()
        self.settle(keep)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        key = event.column_key.value or self.sort_key
        self.set_sort(key, not self.sort_reverse if key == self.sort_key else False)

    def action_sort_column(self, step: int) -> None:
        index = (self._keys.index(self.sort_key) + step) % len(self._keys)
        self.set_sort(self._keys[index], self.sort_reverse)

    def action_reverse_sort(self) -> None:
        self.set_sort(self.sort_key, not self.sort_reverse)

    def _label_columns(self) -> None:
        """Show the sort column and direction with an arrow in its header."""
        for spec in self._specs:
            column = self.columns.get(spec.key)  # type: ignore[call-overload]
            if column is None:
                continue
            arrow = (" ▼" if self.sort_reverse else " ▲") if spec.key == self.sort_key else ""
            column.label = Text(spec.label + arrow)
        self.refresh()


def _sort_value(cell: Cell) -> object:
    return cell.sort_value
