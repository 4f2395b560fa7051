"""ValidatorApp: the operator's console, running the engine in workers and showing it live."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import ClassVar

from textual import events, on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.command import CommandPalette
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.widgets import DataTable, Footer, Input
from textual.worker import Worker, WorkerState

from validator_tui.control import (
    ConsoleExit,
    EngineClient,
    Header,
    JobRecord,
    JobState,
    Outcome,
    StateDelta,
    VmRecord,
)
from validator_tui.sanitize import clean_line
from validator_tui.tui.commands import ActionsProvider
from validator_tui.tui.format import short_id
from validator_tui.tui.screens.confirm import ConfirmScreen
from validator_tui.tui.screens.help import HelpScreen
from validator_tui.tui.screens.job_details import JobDetailsScreen
from validator_tui.tui.screens.orm import OrmScreen
from validator_tui.tui.widgets.challenge_table import ChallengeTable
from validator_tui.tui.widgets.event_log import EventLog
from validator_tui.tui.widgets.job_feed import JobFeed
from validator_tui.tui.widgets.quota_panel import QuotaGauges, QuotaPanel
from validator_tui.tui.widgets.status_bar import StatusBar
from validator_tui.tui.widgets.vm_console import VmConsole

#: Actions that send a command to the engine: all hidden in read-only mode.
COMMAND_ACTIONS = frozenset(
    {
        "claim_job",
        "cancel_job",
        "rebuild_challenge",
        "start_vm",
        "stop_vm",
        "remove_vm",
        "toggle_auto_claim",
        "orm_query",
    }
)
#: Actions on the main screen's selection: not while another screen or a dialog is up.
MAIN_SCREEN_ACTIONS = COMMAND_ACTIONS | {
    "job_details",
    "filter",
    "clear_filter",
    "toggle_follow",
    "toggle_wrap",
    "help",
}
STARTABLE_VM = frozenset({"stopped", "exited"})
STOPPABLE_VM = frozenset({"running", "stopping"})


class ValidatorApp(App[ConsoleExit | None]):
    """The console of one engine: drains its change feed on a timer, sends its commands."""

    CSS_PATH = "app.tcss"
    TITLE = "validator-tui"
    COMMANDS: ClassVar = App.COMMANDS | {ActionsProvider}
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-medium"), (150, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "toggle_auto_claim", "Auto-claim"),
        Binding("o", "orm_query", "ORM"),
        Binding("slash", "filter", "Filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("f", "toggle_follow", "Log pause"),
        Binding("w", "toggle_wrap", "Wrap", show=False),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self,
        engine: EngineClient,
        *,
        clock: Callable[[], float] = time.time,
        refresh_hz: float = 4.0,
        cursor_blink: bool = True,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.clock = clock
        self.refresh_hz = refresh_hz
        self.cursor_blink = cursor_blink
        self.read_only = engine.read_only
        self.header = Header(hotkey=engine.info.hotkey)
        self.vms: dict[str, VmRecord] = {}
        self._version = 0
        self._event_seq = 0
        self._last_second = -1
        self._active_table: str = "jobs"
        self._bindings_signature: tuple[bool | None, ...] = ()
        self._quitting = False

    # -- layout -------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        with Horizontal(id="body"):
            with Vertical(id="left"):
                yield Input(placeholder="filter jobs (esc clears)", id="filter")
                yield JobFeed(id="jobs")
                yield ChallengeTable(id="challenges")
            with Vertical(id="right"):
                yield QuotaPanel(id="quota")
                yield EventLog(id="events")
        yield QuotaGauges(id="quota-line", classes="compact")
        yield VmConsole(self._vm_log_lines, id="console")
        yield Footer()

    @property
    def feed(self) -> JobFeed:
        return self.query_one("#jobs", JobFeed)

    @property
    def challenge_table(self) -> ChallengeTable:
        return self.query_one("#challenges", ChallengeTable)

    @property
    def vm_console(self) -> VmConsole:
        return self.query_one("#console", VmConsole)

    def on_mount(self) -> None:
        for widget in (self.feed, self.challenge_table, self.query_one("#quota"), self.vm_console):
            widget.add_class("panel")
        self.query_one("#events").add_class("panel")
        self.query_one("#filter", Input).cursor_blink = self.cursor_blink
        self.feed.focus()
        self.set_interval(1.0 / self.refresh_hz, self.refresh_from_engine)
        self.call_later(self.refresh_from_engine)

    def on_resize(self, event: events.Resize) -> None:
        footer = self.query_one(Footer)
        footer.compact = event.size.width < 120
        footer.show_command_palette = event.size.width >= 100

    # -- engine -------------------------------------------------------------------------------

    def _vm_log_lines(self, vm_id: str) -> AsyncIterator[str]:
        return self.engine.vm_logs(vm_id, lines=200, follow=True)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A command that failed is shown (toast + event log); the app stays up."""
        worker = event.worker
        if event.state is WorkerState.ERROR:
            error = clean_line(f"{type(worker.error).__name__}: {worker.error}", 300)
            self.notify(error, title="command error", severity="error", markup=False)
            self.query_one(EventLog).note("error", f"command error: {error}", self.clock())

    async def refresh_from_engine(self) -> None:
        """Apply what changed in the engine since the last call, and once a second refresh the
        relative times (nothing at all when neither is due)."""
        delta = await self.engine.changes_since(self._version, self._event_seq)
        now = self.clock()
        changed = delta.version != self._version
        new_second = int(now) != self._last_second
        if not changed and not new_second:
            return
        try:
            with self.batch_update():
                if changed:
                    self._apply(delta, now)
                if new_second:
                    self._tick(now)
        except NoMatches:
            # compose() always yields these widgets: they are missing only while the app is
            # being torn down, and a last tick then has nothing to update.
            return

    def _apply(self, delta: StateDelta, now: float) -> None:
        self._version = delta.version
        feed, table = self.feed, self.challenge_table
        removed_jobs: list[str] = delta.removed_jobs
        removed_challenges: list[str] = delta.removed_challenges
        removed_vms: list[str] = delta.removed_vms
        if delta.full:
            removed_jobs = list(feed.jobs.keys() - {job.id for job in delta.jobs})
            removed_challenges = list(
                table.challenges.keys() - {challenge.id for challenge in delta.challenges}
            )
            removed_vms = list(self.vms.keys() - {vm.id for vm in delta.vms})
        for vm_id in removed_vms:
            self.vms.pop(vm_id, None)
        self.vms.update((vm.id, vm) for vm in delta.vms)
        table.apply(delta.challenges, removed_challenges, now)
        feed.rename_challenges(table.names(), now)
        feed.apply(delta.jobs, removed_jobs, now)
        if delta.events:
            self._event_seq = delta.events[-1].seq
            self.query_one(EventLog).add_events(delta.events, now)
        self.header = delta.header
        self._show_header(now)
        self._sync_console()
        self._sync_bindings()

    def _tick(self, now: float) -> None:
        self._last_second = int(now)
        self.feed.tick(now)
        self.challenge_table.tick(now)
        self._show_header(now)

    def _show_header(self, now: float) -> None:
        self.query_one(StatusBar).show(self.header, now)
        self.query_one(QuotaPanel).show(self.header.quota, self.header.throughput)
        line = self.query_one("#quota-line", QuotaGauges)
        if line.usage != self.header.quota:
            line.usage = self.header.quota

    # -- selection ----------------------------------------------------------------------------

    def selected_vm(self) -> tuple[str, str] | None:
        """(VM id, label) of the selection in the job feed or the challenge table."""
        if self._active_table == "challenges":
            challenge = self.challenge_table.selected_challenge
            if challenge is not None and challenge.vm_id:
                return challenge.vm_id, f"{challenge.name or challenge.id} · {challenge.vm_id}"
            return None
        job = self.feed.selected_job
        if job is not None and job.vm_id:
            return job.vm_id, f"job {short_id(job.id)} · {job.vm_id}"
        return None

    def vm_status(self, vm_id: str) -> str:
        """The VM's last known status (from the VM list, else its challenge's record)."""
        vm = self.vms.get(vm_id)
        if vm is not None:
            return vm.status
        for challenge in self.challenge_table.challenges.values():
            if challenge.vm_id == vm_id:
                return challenge.vm_status
        return ""

    def _sync_console(self) -> None:
        selected = self.selected_vm()
        if selected is None:
            self.vm_console.follow(None)
        else:
            self.vm_console.follow(*selected)

    def _sync_bindings(self) -> None:
        """Refresh the footer only when what the actions can do has changed."""
        signature = tuple(
            self.check_action(name, ())
            for name in (*sorted(COMMAND_ACTIONS), "job_details", "clear_filter")
        )
        if signature != self._bindings_signature:
            self._bindings_signature = signature
            self.refresh_bindings()

    @on(DataTable.RowHighlighted)
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        table_id = event.data_table.id
        if table_id in ("jobs", "challenges") and event.data_table.has_focus:
            self._active_table = table_id
        self._sync_console()
        self._sync_bindings()

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        focused = self.focused
        if focused is not None and focused.id in ("jobs", "challenges"):
            self._active_table = focused.id
            self._sync_console()
            self._sync_bindings()

    # -- actions ------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Hide every command in read-only mode; grey out what the selection can't take."""
        if action in COMMAND_ACTIONS and self.read_only:
            return False
        if action in MAIN_SCREEN_ACTIONS and not self._main_screen_active():
            return False
        if action == "clear_filter":
            return bool(self.feed.filter_text) or None
        job = self.feed.selected_job if self._is_mounted else None
        if action == "claim_job":
            return (job is not None and job.state is JobState.PENDING) or None
        if action == "cancel_job":
            return (job is not None and job.state.active) or None
        if action == "job_details":
            return job is not None or None
        if action == "rebuild_challenge":
            return self.challenge_table.selected_challenge is not None or None
        if action in ("start_vm", "stop_vm", "remove_vm"):
            selected = self.selected_vm()
            if selected is None:
                return None
            status = self.vm_status(selected[0])
            if action == "start_vm":
                return status in STARTABLE_VM or None
            if action == "stop_vm":
                return status in STOPPABLE_VM or None
        return True

    def _main_screen_active(self) -> bool:
        """True when the main screen is on top (the command palette does not count)."""
        stack = self.screen_stack
        top = [screen for screen in stack if not isinstance(screen, CommandPalette)]
        return len(top) == 1

    def action_claim_job(self) -> None:
        job = self.feed.selected_job
        if job is not None:
            self._run_command("claim", lambda: self.engine.claim(job.id))

    def action_cancel_job(self) -> None:
        job = self.feed.selected_job
        if job is None:
            return
        self._confirm(
            f"Cancel job {short_id(job.id)}?",
            "Its VM is destroyed and the platform gets an error result "
            "(“cancelled by operator”, score 0).",
            "cancel",
            lambda: self.engine.cancel(job.id),
        )

    def action_rebuild_challenge(self) -> None:
        challenge = self.challenge_table.selected_challenge
        if challenge is None:
            return
        self._confirm(
            f"Rebuild the CVM of {clean_line(challenge.name or challenge.id, 60)}?",
            "A fresh CVM is provisioned; jobs of this challenge wait until it is active.",
            "rebuild",
            lambda: self.engine.rebuild(challenge.id),
        )

    def action_start_vm(self) -> None:
        selected = self.selected_vm()
        if selected is not None:
            vm_id = selected[0]
            self._run_command("start VM", lambda: self.engine.start_vm(vm_id))

    def action_stop_vm(self) -> None:
        selected = self.selected_vm()
        if selected is None:
            return
        vm_id, label = selected
        self._confirm(
            f"Stop VM {short_id(vm_id)}?",
            f"{label}\nA job running in it fails.",
            "stop VM",
            lambda: self.engine.stop_vm(vm_id),
        )

    def action_remove_vm(self) -> None:
        selected = self.selected_vm()
        if selected is None:
            return
        vm_id, label = selected
        self._confirm(
            f"Remove VM {short_id(vm_id)}?",
            f"{label}\nA job in it fails; a challenge CVM is provisioned again.",
            "remove VM",
            lambda: self.engine.remove_vm(vm_id),
        )

    def action_toggle_auto_claim(self) -> None:
        enabled = not self.header.auto_claim
        self._run_command("auto-claim", lambda: self.engine.set_auto_claim(enabled))

    def action_orm_query(self) -> None:
        challenges = sorted(
            ((c.name or c.id, c.id) for c in self.challenge_table.challenges.values()),
            key=lambda pair: pair[0].casefold(),
        )
        selected = self.challenge_table.selected_challenge
        self.push_screen(
            OrmScreen(
                challenges,
                self.engine.orm_query,
                selected=None if selected is None else selected.id,
                cursor_blink=self.cursor_blink,
            )
        )

    def action_job_details(self) -> None:
        job = self.feed.selected_job
        if job is not None:
            self.push_screen(JobDetailsScreen(job.id, self._lookup_job, self.clock))

    async def _lookup_job(self, job_id: str) -> tuple[JobRecord | None, str]:
        """The job as the feed shows it, else from the engine's history (the feed is bounded)."""
        job = self.feed.jobs.get(job_id) or await self.engine.job(job_id)
        if job is None:
            return None, ""
        return job, self.challenge_table.names().get(job.challenge_id, job.challenge_id)

    def action_filter(self) -> None:
        field = self.query_one("#filter", Input)
        field.add_class("-active")
        field.focus()

    def action_clear_filter(self) -> None:
        field = self.query_one("#filter", Input)
        field.value = ""
        field.remove_class("-active")
        self.feed.set_filter("", self.clock())
        self.feed.focus()
        self._sync_bindings()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.feed.set_filter(event.value, self.clock())
        self._sync_console()
        self._sync_bindings()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            self.action_clear_filter()
        else:
            self.feed.focus()

    def action_toggle_follow(self) -> None:
        self.vm_console.toggle_pause()

    def action_toggle_wrap(self) -> None:
        self.vm_console.toggle_wrap()

    def action_help(self) -> None:
        self.push_screen(HelpScreen(read_only=self.read_only))

    async def action_quit(self) -> None:
        """Quit: ask first when jobs are running, then stop the engine cleanly and exit."""
        if self._quitting:
            return
        if not self.engine.embedded:
            self.exit(ConsoleExit.DETACH)  # an attached console only detaches
            return
        running = sum(1 for job in self.feed.jobs.values() if job.state.active)
        if running:
            self.push_screen(
                ConfirmScreen(
                    f"{running} job{'s are' if running != 1 else ' is'} running. Quit?",
                    "The engine stops them, sends error results and exits cleanly.",
                    confirm_label="Quit",
                ),
                self._quit_answered,
            )
        else:
            self._stop_engine_and_exit()

    def _quit_answered(self, yes: bool | None) -> None:
        if yes:
            self._stop_engine_and_exit()

    @work(exit_on_error=False, group="shutdown")
    async def _stop_engine_and_exit(self) -> None:
        self._quitting = True
        self.notify("stopping the engine…", title="quit", markup=False)
        await self.engine.stop_validator()
        self.exit()

    # -- command plumbing ---------------------------------------------------------------------

    def _confirm(
        self,
        question: str,
        detail: str,
        label: str,
        command: Callable[[], Awaitable[Outcome]],
    ) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self._run_command(label, command)

        self.push_screen(
            ConfirmScreen(question, detail, confirm_label=label.capitalize()), answered
        )

    @work(exit_on_error=False, group="command")
    async def _run_command(self, label: str, command: Callable[[], Awaitable[Outcome]]) -> None:
        outcome = await command()
        message = clean_line(outcome.message, 300)
        if outcome.ok:
            self.notify(message, title=label, markup=False)
        else:
            self.notify(message, title=f"{label}: refused", severity="error", markup=False)
        await self.refresh_from_engine()
