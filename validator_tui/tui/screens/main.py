"""The main screen: header, job feed, challenge CVMs, quota, events and the VM console, with
the actions on what the operator selected. Its bindings go quiet while a dialog is up."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from textual import events, on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Input

from validator_tui.control import (
    Header,
    JobRecord,
    JobState,
    Outcome,
    StateDelta,
    VmRecord,
)
from validator_tui.sanitize import clean_line
from validator_tui.tui.actions import Owner, bindings, by_name
from validator_tui.tui.format import short_id
from validator_tui.tui.screens.confirm import ConfirmScreen
from validator_tui.tui.screens.job_details import JobDetailsScreen
from validator_tui.tui.screens.orm import OrmScreen
from validator_tui.tui.widgets.challenge_table import ChallengeTable
from validator_tui.tui.widgets.event_log import EventLog
from validator_tui.tui.widgets.job_feed import JobFeed
from validator_tui.tui.widgets.line_table import LineTable
from validator_tui.tui.widgets.quota_panel import QuotaGauges, QuotaPanel
from validator_tui.tui.widgets.status_bar import StatusBar
from validator_tui.tui.widgets.vm_console import VmConsole

if TYPE_CHECKING:
    from validator_tui.tui.app import ValidatorApp

STARTABLE_VM = frozenset({"stopped", "exited"})
STOPPABLE_VM = frozenset({"running", "stopping"})
#: Actions whose availability depends on the selection (the footer follows them).
SELECTION_ACTIONS = (
    "claim_job",
    "cancel_job",
    "job_details",
    "rebuild_challenge",
    "start_vm",
    "stop_vm",
    "remove_vm",
    "clear_filter",
)


class MainScreen(Screen[None]):
    """Shows the engine's state (fed by the app) and acts on the selection."""

    BINDINGS = bindings(Owner.MAIN)

    def __init__(self) -> None:
        super().__init__()
        self.header = Header()
        self.vms: dict[str, VmRecord] = {}
        self._active_table: str = "jobs"
        self._bindings_signature: tuple[bool | None, ...] = ()

    @property
    def console_app(self) -> ValidatorApp:
        """The app, typed."""
        from validator_tui.tui.app import ValidatorApp

        assert isinstance(self.app, ValidatorApp)
        return self.app

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
        self.query_one("#filter", Input).cursor_blink = self.console_app.cursor_blink
        self.header = Header(hotkey=self.console_app.engine.info.hotkey)
        self.feed.focus()

    def on_resize(self, event: events.Resize) -> None:
        footer = self.query_one(Footer)
        footer.compact = event.size.width < 120
        footer.show_command_palette = event.size.width >= 100

    def _vm_log_lines(self, vm_id: str) -> AsyncIterator[str]:
        return self.console_app.engine.vm_logs(vm_id, lines=200, follow=True)

    # -- engine state -------------------------------------------------------------------------

    def apply(self, delta: StateDelta, now: float) -> None:
        """Show what changed in the engine (`delta.full`: replace everything)."""
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
        feed.apply(delta.jobs, removed_jobs, now, full=delta.full)
        if delta.events:
            self.query_one(EventLog).add_events(delta.events, now)
        self.header = delta.header
        self._show_header(now)
        self._sync_console()
        self._sync_bindings()

    def tick(self, now: float) -> None:
        """Refresh what shows relative times."""
        self.feed.tick(now)
        self.challenge_table.tick(now)
        self._show_header(now)

    def _show_header(self, now: float) -> None:
        engine = self.console_app.engine
        attached = None if engine.embedded else engine.info
        self.query_one(StatusBar).show(self.header, now, attached=attached, link=engine.link)
        self.query_one(QuotaPanel).show(self.header.quota, self.header.throughput)
        self.query_one("#quota-line", QuotaGauges).show(self.header.quota)

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
        signature = tuple(self.check_action(name, ()) for name in SELECTION_ACTIONS)
        if signature != self._bindings_signature:
            self._bindings_signature = signature
            self.refresh_bindings()

    @on(LineTable.RowSelected, "#jobs")
    def _job_selected(self) -> None:
        """`enter` on the job feed opens the job's details."""
        self.action_job_details()

    @on(LineTable.CursorMoved)
    def _row_highlighted(self, event: LineTable.CursorMoved) -> None:
        table_id = event.table.id
        if table_id in ("jobs", "challenges") and event.table.has_focus:
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
        if self.console_app.read_only and not _read_only_safe(action):
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

    def action_claim_job(self) -> None:
        job = self.feed.selected_job
        if job is not None:
            self._run_command("claim", lambda: self.console_app.engine.claim(job.id))

    def action_cancel_job(self) -> None:
        job = self.feed.selected_job
        if job is None:
            return
        self._confirm(
            f"Cancel job {short_id(job.id)}?",
            "Its VM is destroyed and the platform gets an error result "
            "(“cancelled by operator”, score 0).",
            "cancel",
            lambda: self.console_app.engine.cancel(job.id),
        )

    def action_rebuild_challenge(self) -> None:
        challenge = self.challenge_table.selected_challenge
        if challenge is None:
            return
        self._confirm(
            f"Rebuild the CVM of {clean_line(challenge.name or challenge.id, 60)}?",
            "A fresh CVM is provisioned; jobs of this challenge wait until it is active.",
            "rebuild",
            lambda: self.console_app.engine.rebuild(challenge.id),
        )

    def action_start_vm(self) -> None:
        selected = self.selected_vm()
        if selected is not None:
            vm_id = selected[0]
            self._run_command("start VM", lambda: self.console_app.engine.start_vm(vm_id))

    def action_stop_vm(self) -> None:
        selected = self.selected_vm()
        if selected is None:
            return
        vm_id, label = selected
        self._confirm(
            f"Stop VM {short_id(vm_id)}?",
            f"{label}\nA job running in it fails.",
            "stop VM",
            lambda: self.console_app.engine.stop_vm(vm_id),
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
            lambda: self.console_app.engine.remove_vm(vm_id),
        )

    def action_toggle_auto_claim(self) -> None:
        enabled = not self.header.auto_claim
        self._run_command("auto-claim", lambda: self.console_app.engine.set_auto_claim(enabled))

    def action_orm_query(self) -> None:
        challenges = sorted(
            ((c.name or c.id, c.id) for c in self.challenge_table.challenges.values()),
            key=lambda pair: pair[0].casefold(),
        )
        selected = self.challenge_table.selected_challenge
        self.app.push_screen(
            OrmScreen(
                challenges,
                self.console_app.engine.orm_query,
                selected=None if selected is None else selected.id,
                cursor_blink=self.console_app.cursor_blink,
            )
        )

    def action_job_details(self) -> None:
        job = self.feed.selected_job
        if job is not None:
            self.app.push_screen(JobDetailsScreen(job.id, self._lookup_job, self.console_app.clock))

    async def _lookup_job(self, job_id: str) -> tuple[JobRecord | None, str]:
        """The job as the feed shows it, else from the engine's history (the feed is bounded)."""
        job = self.feed.jobs.get(job_id) or await self.console_app.engine.job(job_id)
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
        self.feed.set_filter("", self.console_app.clock())
        self.feed.focus()
        self._sync_bindings()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.feed.set_filter(event.value, self.console_app.clock())
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

        self.app.push_screen(
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
        await self.console_app.refresh_from_engine()


def _read_only_safe(name: str) -> bool:
    try:
        return by_name(name).read_only_safe
    except KeyError:
        return True
