"""The results outbox: every result not yet accepted by the platform, dead letters (results the
platform refused, with its words) first. `r` sends a dead letter again, `d` discards one (asks
first), `enter` shows a row whole; the list refreshes while open."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from validator_tui.control import READ_ONLY_REFUSAL, OutboxRow, Outcome, ResultStatus
from validator_tui.sanitize import clean_line
from validator_tui.tui.format import short_id, when
from validator_tui.tui.screens.confirm import ConfirmScreen

REFRESH_S = 2.0
#: Rows asked of the engine: dead letters and unsent results come first.
LIMIT = 1000
DEAD = "dead"
#: Each outbox status's mark and style (its words are the status's own).
STATUS_LOOK: dict[ResultStatus, tuple[str, str]] = {
    ResultStatus.DEAD: ("‼", "bold red"),
    ResultStatus.PENDING: ("⇡", "yellow"),
    ResultStatus.SENT: ("✓", "green"),
    ResultStatus.DROPPED: ("⊘", "magenta"),
    ResultStatus.NOT_OURS: ("↷", "dim"),
    ResultStatus.DISCARDED: ("✗", "dim"),
}

ListOutbox = Callable[[int], Awaitable[list[OutboxRow]]]
Command = Callable[[str], Awaitable[Outcome]]


def status_text(status: str) -> Text:
    """`‼ dead letter` in red, `⇡ unsent` in yellow, …; an unknown status as it is."""
    if status not in STATUS_LOOK:
        return Text(clean_line(status, 30))
    known = ResultStatus(status)
    mark, style = STATUS_LOOK[known]
    return Text(f"{mark} {known.words}", style=style)


def row_details(row: OutboxRow, now: float) -> Text:
    """One outbox row whole: the job, status, attempts, times and the last error."""
    text = Text()
    for label, value in (
        ("job", clean_line(row.job_id, 100)),
        ("status", status_text(row.status).plain),
        ("attempts", str(row.attempts)),
        ("queued", when(row.created_at, now)),
        ("last change", when(row.updated_at, now)),
    ):
        text.append(f"{label:>13}  ", style="bold")
        text.append(f"{value}\n")
    label = "platform said" if row.status == DEAD else "last error"
    text.append(f"{label:>13}  ", style="bold")
    text.append(clean_line(row.last_error, 4000) or "-", style="red" if row.last_error else "")
    return text


class OutboxScreen(ModalScreen[None]):
    """Lists the outbox through the engine and acts on dead letters."""

    BINDINGS = [
        Binding("r", "retry", "Send again"),
        Binding("d", "discard", "Discard"),
        Binding("escape", "close", "Close"),
        Binding("q", "close", "Close", show=False),
    ]

    def __init__(
        self,
        list_outbox: ListOutbox,
        retry: Command,
        discard: Command,
        clock: Callable[[], float],
        *,
        read_only: bool = False,
    ) -> None:
        super().__init__()
        self._list = list_outbox
        self._retry = retry
        self._discard = discard
        self._clock = clock
        self._read_only = read_only
        self.rows: dict[str, OutboxRow] = {}

    def compose(self) -> ComposeResult:
        with Vertical(id="outbox-dialog") as dialog:
            dialog.border_title = "Results outbox"
            dialog.border_subtitle = (
                "r send a dead letter again · d discard it · enter whole row · esc close"
            )
            table: DataTable[Text] = DataTable(id="outbox-table", cursor_type="row")
            for label in ("Job", "Status", "Tries", "Last change", "Platform said / last error"):
                table.add_column(label, key=label)
            yield table
            with VerticalScroll(id="outbox-row-scroll"):
                yield Static(id="outbox-row")

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
        self.refresh_rows()
        self.set_interval(REFRESH_S, self.refresh_rows)

    @property
    def table(self) -> DataTable[Text]:
        return self.query_one("#outbox-table", DataTable)

    @work(exclusive=True, group="outbox", exit_on_error=False)
    async def refresh_rows(self) -> None:
        """Ask the engine for the outbox and show it, keeping the cursor on its job."""
        rows = await self._list(LIMIT)
        self.show_rows(rows)

    def show_rows(self, rows: list[OutboxRow]) -> None:
        """Replace the rows shown (dead letters first, as the engine orders them)."""
        table, now = self.table, self._clock()
        keep = self.selected_row()
        self.rows = {row.job_id: row for row in rows}
        table.clear()
        for row in rows:
            table.add_row(
                Text(short_id(row.job_id)),
                status_text(row.status),
                Text(str(row.attempts)),
                Text(when(row.updated_at, now)),
                Text(clean_line(row.last_error, 300) or "-", no_wrap=True, overflow="ellipsis"),
                key=row.job_id,
            )
        dead = sum(1 for row in rows if row.status == DEAD)
        unsent = sum(1 for row in rows if row.status == "pending")
        self.query_one(
            "#outbox-dialog"
        ).border_title = (
            f"Results outbox · {dead} dead letter{'s' if dead != 1 else ''} · {unsent} unsent"
        )
        if keep is not None and keep.job_id in self.rows:
            table.move_cursor(row=table.get_row_index(keep.job_id))
        self._show_selected()
        if not rows:
            self.query_one("#outbox-row", Static).update(
                Text("The outbox is empty: every result has been answered.", style="dim")
            )

    def selected_row(self) -> OutboxRow | None:
        table = self.table
        if table.row_count == 0:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return self.rows.get(str(row_key.value))

    @on(DataTable.RowHighlighted)
    def _highlighted(self) -> None:
        self._show_selected()

    @on(DataTable.RowSelected)
    def _selected(self) -> None:
        self._show_selected()
        self.query_one("#outbox-row-scroll").focus()

    def _show_selected(self) -> None:
        row = self.selected_row()
        if row is not None:
            self.query_one("#outbox-row", Static).update(row_details(row, self._clock()))

    def _dead_letter(self, verb: str) -> OutboxRow | None:
        """The selected dead letter, or None after a toast saying why `verb` cannot be done."""
        row = self.selected_row()
        reason = None
        if self._read_only:
            reason = READ_ONLY_REFUSAL
        elif row is None:
            reason = "the outbox is empty"
        elif row.status != DEAD:
            shown = status_text(row.status).plain.lstrip("‼⇡✓⊘↷✗ ")
            reason = f"only a dead letter can be {verb}; this result is {shown}"
        if reason is not None:
            self.app.notify(reason, title=f"{verb}: not done", severity="warning", markup=False)
            return None
        return row

    def action_retry(self) -> None:
        row = self._dead_letter("sent again")
        if row is not None:
            self._run("send again", lambda: self._retry(row.job_id))

    def action_discard(self) -> None:
        row = self._dead_letter("discarded")
        if row is None:
            return
        job_id = row.job_id

        def answered(yes: bool | None) -> None:
            if yes:
                self._run("discard", lambda: self._discard(job_id))

        self.app.push_screen(
            ConfirmScreen(
                f"Discard the result of job {short_id(job_id)}?",
                f"The platform refused it: {clean_line(row.last_error, 300) or '-'}\n"
                "It is never sent again; the store keeps it as discarded.",
                confirm_label="Discard",
                decline_label="Keep it",
            ),
            answered,
        )

    @work(group="outbox-command", exit_on_error=False)
    async def _run(self, label: str, command: Callable[[], Awaitable[Outcome]]) -> None:
        outcome = await command()
        self.app.notify(
            clean_line(outcome.message, 300),
            title=label if outcome.ok else f"{label}: refused",
            severity="information" if outcome.ok else "error",
            markup=False,
        )
        self.refresh_rows()

    def action_close(self) -> None:
        self.dismiss(None)
