"""ORM query screen: pick a challenge, write SQL and JSON params, see rows or the refusal.

A refusal replaces the results (nothing stale stays on screen) and wraps however long it is;
`enter` on a cell shows its whole value.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Footer, Input, Label, Select, Static, TextArea

from validator_tui.control import Outcome
from validator_tui.sanitize import clean_line, clean_lines

RunQuery = Callable[[str, str, list[object]], Awaitable[Outcome]]
MAX_ROWS_SHOWN = 1000
DEFAULT_SQL = "SELECT * FROM submissions LIMIT 20"
#: A cell's whole value is shown up to this many lines of this many characters.
MAX_CELL_LINES = 2000
MAX_CELL_LINE_CHARS = 2000


class ParamsError(ValueError):
    """The params field is not a JSON array."""


def parse_params(text: str) -> list[object]:
    """The params field as a list: empty means `[]`; anything but a JSON array is an error."""
    if not text.strip():
        return []
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParamsError(f"params are not valid JSON: {exc.msg} (column {exc.colno})") from exc
    if not isinstance(value, list):
        raise ParamsError('params must be a JSON array, e.g. [1, "abc"]')
    return value


def cell_text(value: object) -> Text:
    """One result value as plain, sanitised, single-line text."""
    if value is None:
        return Text("NULL", style="dim")
    shown = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return Text(clean_line(shown, 200), no_wrap=True, overflow="ellipsis")


def full_value(value: object) -> list[str]:
    """One result value whole, as sanitised lines: JSON values indented, text as it is."""
    if value is None:
        return ["NULL"]
    shown = (
        value
        if isinstance(value, str)
        else json.dumps(value, default=str, ensure_ascii=False, indent=2)
    )
    return clean_lines(shown.splitlines() or [""], MAX_CELL_LINES, MAX_CELL_LINE_CHARS)


class CellScreen(ModalScreen[None]):
    """One result cell, whole; `esc` or `enter` closes."""

    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("enter", "close", "Close", show=False),
    ]

    def __init__(self, column: str, row: int, value: object) -> None:
        super().__init__()
        self._column = column
        self._row = row
        self._value = value

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="cell-dialog") as dialog:
            dialog.border_title = Text(f"{clean_line(self._column, 60)} · row {self._row + 1}")
            dialog.border_subtitle = "esc close"
            yield Static(Text("\n".join(full_value(self._value))), id="cell-value")

    def action_close(self) -> None:
        self.dismiss(None)


class OrmScreen(Screen[None]):
    """Runs read-only queries through the engine; refusals and errors show inline."""

    BINDINGS = [
        Binding("ctrl+r", "run_query", "Run query", priority=True),
        Binding("escape", "close", "Close"),
    ]

    def __init__(
        self,
        challenges: Sequence[tuple[str, str]],
        run_query: RunQuery,
        *,
        selected: str | None = None,
        cursor_blink: bool = True,
    ) -> None:
        super().__init__()
        self._challenges = list(challenges)
        self._run_query = run_query
        self._selected = selected
        self._cursor_blink = cursor_blink
        self._rows: tuple[dict[str, object], ...] = ()
        self._columns: list[str] = []

    def compose(self) -> ComposeResult:
        options = [(Text(clean_line(name, 60)), cid) for name, cid in self._challenges]
        initial = (
            self._selected if any(cid == self._selected for _, cid in self._challenges) else None
        )
        if initial is None and options:
            initial = options[0][1]
        with Vertical(id="orm-form") as form:
            form.border_title = "ORM query (read-only)"
            with Horizontal(classes="orm-row"):
                yield Label("Challenge", classes="orm-label")
                yield Select(
                    options,
                    prompt="challenge",
                    allow_blank=initial is None,
                    value=initial if initial is not None else Select.NULL,
                    id="orm-challenge",
                )
            yield TextArea(DEFAULT_SQL, soft_wrap=True, id="orm-sql")
            with Horizontal(classes="orm-row"):
                yield Label("Params", classes="orm-label")
                yield Input(placeholder='JSON array, e.g. ["sub-1"]', id="orm-params")
                yield Button("Run ^r", id="orm-run", variant="primary")
            yield Static(id="orm-status")
        table: DataTable[Text] = DataTable(id="orm-results", cursor_type="cell")
        table.border_title = "Results"
        table.border_subtitle = "enter shows a cell whole"
        yield table
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#orm-sql", TextArea).focus()
        self.query_one("#orm-params", Input).cursor_blink = self._cursor_blink
        self.query_one("#orm-sql", TextArea).cursor_blink = self._cursor_blink
        self._status(Text("ctrl+r runs the query · only one SELECT is allowed", style="dim"))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_run_query()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_run_query()

    def action_close(self) -> None:
        self.dismiss(None)

    def action_run_query(self) -> None:
        """Validate the form, then run the query in a worker (the UI never waits)."""
        challenge = self.query_one("#orm-challenge", Select).value
        if not isinstance(challenge, str):
            self._status(Text("pick a challenge first", style="bold red"))
            return
        sql = self.query_one("#orm-sql", TextArea).text
        if not sql.strip():
            self._status(Text("write a query first", style="bold red"))
            return
        try:
            params = parse_params(self.query_one("#orm-params", Input).value)
        except ParamsError as exc:
            self._status(Text(str(exc), style="bold red"))
            return
        self._status(Text("running…", style="dim"))
        self._query(challenge, sql, params)

    @work(exclusive=True, group="orm", exit_on_error=False)
    async def _query(self, challenge_id: str, sql: str, params: list[object]) -> None:
        try:
            outcome = await self._run_query(challenge_id, sql, params)
        except Exception as exc:
            outcome = Outcome.refused(f"{type(exc).__name__}: {exc}")
        self.show_outcome(outcome)

    def show_outcome(self, outcome: Outcome) -> None:
        """Rows into the results table, or the refusal reason inline (the table emptied)."""
        table = self.query_one("#orm-results", DataTable)
        table.clear(columns=True)
        self._rows, self._columns = (), []
        if not outcome.ok:
            self._status(Text(f"✗ {clean_line(outcome.message, 2000)}", style="bold red"))
            return
        columns: list[str] = []
        for row in outcome.rows:
            for key in row:
                if key not in columns:
                    columns.append(key)
        self._rows, self._columns = outcome.rows[:MAX_ROWS_SHOWN], columns
        for column in columns:
            table.add_column(Text(clean_line(column, 40)), key=column)
        for row in outcome.rows[:MAX_ROWS_SHOWN]:
            table.add_row(*(cell_text(row.get(column)) for column in columns))
        count = len(outcome.rows)
        more = f" (showing the first {MAX_ROWS_SHOWN})" if count > MAX_ROWS_SHOWN else ""
        self._status(Text(f"{count} row{'s' if count != 1 else ''}{more}", style="green"))

    @on(DataTable.CellSelected, "#orm-results")
    def _cell_selected(self, event: DataTable.CellSelected) -> None:
        """`enter` on a cell: show its whole value."""
        row, column = event.coordinate.row, event.coordinate.column
        if row < len(self._rows) and column < len(self._columns):
            name = self._columns[column]
            self.app.push_screen(CellScreen(name, row, self._rows[row].get(name)))

    def _status(self, text: Text) -> None:
        self.query_one("#orm-status", Static).update(text)
