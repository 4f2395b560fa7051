"""What the main screen's actions do: the one path every key, palette entry and footer click
of the main screen takes (`run`), and each action's handler, by its name in the action table.

`run` refuses an action that cannot act on the selection, with a toast that says why
(tui/refusals.py). An action that asks first (`Action.confirm` in the table) asks its question
about the selection (tui/questions.py) and, on yes, calls its `ON_YES` handler with what it
asked; any other action calls its `HANDLERS` entry. Commands reach the engine through the
screen's `CommandRunner`, which toasts the engine's answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING

from validator_tui.control import EngineClient, JobRecord, Outcome
from validator_tui.tui.actions import by_name
from validator_tui.tui.questions import Ask, ask
from validator_tui.tui.screens.challenge_details import ChallengeDetailsScreen
from validator_tui.tui.screens.job_details import JobDetailsScreen
from validator_tui.tui.screens.orm import OrmScreen
from validator_tui.tui.screens.outbox import OutboxScreen

if TYPE_CHECKING:
    from validator_tui.tui.screens.main import MainScreen

#: What an action that does not ask first does on the screen's selection.
Handler = Callable[["MainScreen"], None]
#: What an action that asks first does once the operator said yes to `Ask`.
OnYes = Callable[["MainScreen", Ask], None]


def run(screen: MainScreen, name: str) -> None:
    """Run the main screen's action `name` on its selection: refused (a toast says why), asked
    first (then done on yes, unless what it asked about changed meanwhile), or done."""
    commands = screen.commands
    if commands.refused(name):
        return
    if not by_name(name).confirm:
        HANDLERS[name](screen)
        return
    question = ask(name, screen.selection())
    if question is not None:
        on_yes = ON_YES[name]
        commands.confirm(question, lambda: on_yes(screen, question))


# -- jobs -------------------------------------------------------------------------------------


def claim_job(screen: MainScreen) -> None:
    """Claim the selected job now."""
    job = screen.selection().job
    if job is not None:
        screen.commands.run("claim", lambda: screen.console_app.engine.claim(job.id))


def details(screen: MainScreen) -> None:
    """The details of the selected job, else of the selected challenge CVM."""
    sel = screen.selection()
    job, challenge = sel.job, sel.challenge
    clock = screen.console_app.clock
    if job is not None:
        screen.app.push_screen(JobDetailsScreen(job.id, partial(lookup_job, screen), clock))
    elif challenge is not None:
        screen.app.push_screen(
            ChallengeDetailsScreen(
                challenge.id,
                lambda challenge_id: screen.selection().challenge_with_vm(challenge_id),
                screen.vm_log_lines,
                clock,
            )
        )


async def lookup_job(screen: MainScreen, job_id: str) -> tuple[JobRecord | None, str]:
    """The job as the feed shows it, else from the engine's history (the feed is bounded), with
    its challenge's name."""
    job = screen.feed.jobs.get(job_id) or await screen.console_app.engine.job(job_id)
    if job is None:
        return None, ""
    return job, screen.challenge_table.names().get(job.challenge_id, job.challenge_id)


def copy_id(screen: MainScreen) -> None:
    """Copy the selected job's id, else the selected challenge's."""
    sel = screen.selection()
    job, challenge = sel.job, sel.challenge
    if job is not None:
        screen.commands.copy("job id", job.id)
    elif challenge is not None:
        screen.commands.copy("challenge id", challenge.id)


def copy_vm_id(screen: MainScreen) -> None:
    """Copy the id of the selected job's VM or challenge's CVM."""
    target = screen.selection().vm
    if target is not None:
        screen.commands.copy("VM id", target.vm_id)


def next_failed(screen: MainScreen) -> None:
    """Move the feed's cursor to the next failed job (a toast when the filter hides them)."""
    screen.feed.focus()
    if screen.feed.next_failed() is None:
        screen.commands.toast(
            "no failed job shown: the filter hides them", title="Next failed: not done"
        )


def state_filter(screen: MainScreen) -> None:
    """Show the feed's next state filter (all, failed, running, …)."""
    screen.feed.set_state_filter(screen.feed.state_filter.next())
    screen.feed.focus()
    screen.selection_changed()


def follow_jobs(screen: MainScreen) -> None:
    """Turn the feed's following of the newest job on or off."""
    screen.feed.set_follow(not screen.feed.follow)
    screen.feed.focus()
    screen.selection_changed()


def open_filter(screen: MainScreen) -> None:
    """Open the prompt: it searches the event log while that has the focus, else it filters
    the job feed."""
    log = screen.event_log
    events = screen.focused_panel() is log
    value = log.search if events else screen.feed.filter_text
    screen.filter_bar.open(events=events, value=value)


def clear_filter(screen: MainScreen) -> None:
    """Clear the event log's search or the job feed's filter (whichever the prompt is on) and
    close the prompt."""
    screen.filter_bar.clear()
    if screen.selection().events_searched:
        screen.event_log.set_search("")
    else:
        screen.feed.set_filter("", screen.console_app.clock())
    screen.close_filter_prompt()


# -- CVMs, VMs and hosts ------------------------------------------------------------------------


def start_vm(screen: MainScreen) -> None:
    """Start the selected job's VM or challenge's CVM."""
    target = screen.selection().vm
    if target is not None:
        screen.commands.run("start VM", lambda: screen.console_app.engine.start_vm(target.vm_id))


def _sends(command: Callable[[EngineClient], Callable[[str], Awaitable[Outcome]]]) -> OnYes:
    """On yes: send the engine's `command` on what the question asked about; its answer is
    toasted under the question's label."""

    def on_yes(screen: MainScreen, question: Ask) -> None:
        send = command(screen.console_app.engine)
        screen.commands.run(question.label.lower(), lambda: send(question.subject))

    return on_yes


# -- console ----------------------------------------------------------------------------------


def toggle_auto_claim(screen: MainScreen) -> None:
    """Turn the engine's auto-claim on or off."""
    enabled = not screen.header.auto_claim
    screen.commands.run("auto-claim", lambda: screen.console_app.engine.set_auto_claim(enabled))


def orm_query(screen: MainScreen) -> None:
    """Open the ORM query screen on the selected job's or CVM's challenge."""
    app = screen.console_app
    challenges, selected = screen.selection().orm_choices()
    app.push_screen(
        OrmScreen(
            challenges, app.engine.orm_query, selected=selected, cursor_blink=app.cursor_blink
        )
    )


def outbox(screen: MainScreen) -> None:
    """Open the results outbox."""
    app = screen.console_app
    engine = app.engine
    app.push_screen(
        OutboxScreen(
            engine.list_outbox,
            engine.retry_dead_letter,
            engine.discard_dead_letter,
            app.clock,
            read_only=app.read_only,
        )
    )


def zoom(screen: MainScreen) -> None:
    """Zoom the focused panel to the full screen, or back."""
    if screen.maximized is not None:
        screen.minimize()
        return
    panel = screen.focused_panel()
    if panel is None:
        screen.commands.toast("nothing to zoom: focus a panel first (tab)", title="Zoom: not done")
        return
    screen.maximize(panel, container=False)


def stop_validator(screen: MainScreen, _question: Ask) -> None:
    """On yes: stop the validator the graceful way and close the console."""
    screen.console_app.stop_validator_and_exit()


#: The main screen's actions that do not ask first, by name.
HANDLERS: dict[str, Handler] = {
    "claim_job": claim_job,
    "details": details,
    "copy_id": copy_id,
    "copy_vm_id": copy_vm_id,
    "next_failed": next_failed,
    "state_filter": state_filter,
    "follow_jobs": follow_jobs,
    "filter": open_filter,
    "clear_filter": clear_filter,
    "start_vm": start_vm,
    "toggle_auto_claim": toggle_auto_claim,
    "orm_query": orm_query,
    "outbox": outbox,
    "toggle_follow": lambda screen: screen.vm_console.toggle_pause(),
    "toggle_wrap": lambda screen: screen.vm_console.toggle_wrap(),
    "zoom": zoom,
}

#: The main screen's actions that ask first (`Action.confirm`), by name: what each does on yes.
ON_YES: dict[str, OnYes] = {
    "cancel_job": _sends(lambda engine: engine.cancel),
    "rebuild_challenge": _sends(lambda engine: engine.rebuild),
    "stop_vm": _sends(lambda engine: engine.stop_vm),
    "remove_vm": _sends(lambda engine: engine.remove_vm),
    "drain_host": _sends(lambda engine: engine.drain_host),
    "undrain_host": _sends(lambda engine: engine.undrain_host),
    "stop_validator": stop_validator,
}
