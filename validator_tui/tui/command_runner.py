"""How the main screen's actions reach the engine: a refused action says why in a toast, an
action that asks first (`Action.confirm`) asks its question, a question whose subject changed
closes itself, and the engine's answer is shown as a toast."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.notifications import SeverityLevel
from textual.screen import Screen

from validator_tui.control import Outcome
from validator_tui.sanitize import clean_line
from validator_tui.tui.actions import by_name
from validator_tui.tui.questions import Ask
from validator_tui.tui.refusals import why_not
from validator_tui.tui.screens.confirm import ConfirmScreen
from validator_tui.tui.selection import Selection

if TYPE_CHECKING:
    from validator_tui.tui.app import ValidatorApp


@dataclass(frozen=True, slots=True)
class Question:
    """An open confirm dialog: its screen and what it asks (whose `stale` says why it no
    longer applies)."""

    screen: ConfirmScreen
    ask: Ask


class CommandRunner:
    """Runs commands for `screen` on what `selection()` says is selected (the commands' workers
    belong to `screen`)."""

    def __init__(self, screen: Screen[None], selection: Callable[[], Selection]) -> None:
        self._screen = screen
        self._selection = selection
        self._question: Question | None = None

    @property
    def _app(self) -> ValidatorApp:
        from validator_tui.tui.app import ValidatorApp

        app = self._screen.app
        assert isinstance(app, ValidatorApp)
        return app

    def toast(
        self, message: str, *, title: str = "", severity: SeverityLevel = "information"
    ) -> None:
        """A toast whose text is shown as is (never parsed as markup)."""
        self._app.notify(message, title=title, severity=severity, markup=False)

    def refused(self, name: str) -> bool:
        """Toast why action `name` cannot act on the selection now; True if it cannot."""
        reason = why_not(name, self._selection())
        if reason is None:
            return False
        self.toast(reason, title=f"{by_name(name).title}: not done", severity="warning")
        return True

    def confirm(self, question: Ask, on_yes: Callable[[], object]) -> None:
        """Ask `question`; on yes, call `on_yes`. While the dialog is open, the question's
        `stale` says why the action no longer applies to what it asks about (None while it
        does): the dialog then closes itself with that reason (`recheck`), and a yes is
        checked against it once more."""
        screen = ConfirmScreen(
            question.question,
            question.detail,
            confirm_label=question.label,
            decline_label=question.decline,
        )

        def answered(yes: bool | None) -> None:
            self._question = None
            if not yes:
                return
            reason = question.stale(self._selection())
            if reason is not None:
                self._toast_stale(question.label, reason)
            else:
                on_yes()

        self._question = Question(screen, question)
        self._app.push_screen(screen, answered)

    def recheck(self) -> None:
        """Close the open question when what it asks about changed so that its action no
        longer applies, with a toast that says why. A question under another screen is checked
        once it is on top again (and its answer is checked in any case)."""
        question = self._question
        if question is None or self._app.screen is not question.screen:
            return
        reason = question.ask.stale(self._selection())
        if reason is not None:
            self._question = None
            question.screen.dismiss(False)
            self._toast_stale(question.ask.label, reason)

    def _toast_stale(self, label: str, reason: str) -> None:
        self.toast(reason, title=f"{label}: not done", severity="warning")

    def run(self, label: str, command: Callable[[], Awaitable[Outcome]]) -> None:
        """Send `command` (in a worker of the screen); toast the engine's answer titled
        `label`, then refresh the state shown."""
        self._screen.run_worker(self._run(label, command), group="command", exit_on_error=False)

    async def _run(self, label: str, command: Callable[[], Awaitable[Outcome]]) -> None:
        outcome = await command()
        message = clean_line(outcome.message, 300)
        if outcome.ok:
            self.toast(message, title=label)
        else:
            self.toast(message, title=f"{label}: refused", severity="error")
        await self._app.refresh_from_engine()

    def copy(self, what: str, value: str) -> None:
        """Put `value` on the operator's clipboard (OSC 52, written by the app itself)."""
        text = clean_line(value, 200)
        self._app.copy_to_clipboard(text)
        self.toast(
            f"{text}\n(sent to your terminal's clipboard with OSC 52; some terminals need it "
            "allowed)",
            title=f"copied {what}",
        )
