"""The health of one upstream server (the Platform API, the dstack VMM), learnt from every
request its client makes: whether it answers, whether it answers in time, and whether it
refuses us (an auth outage: the engine says so with `refused`; the first 2xx answer after it
ends it).

Transitions are logged once each (down, back up), never per attempt; a slow request is one
warning at most once a minute. Listeners hear of every change (the engine pauses and resumes
claims with it, and shows it in the header).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from validator_tui.clients.errors import ApiError, ClientError
from validator_tui.clients.transport import RequestReport
from validator_tui.engine.events import log_event
from validator_tui.engine.state import EngineState

#: A slow-request warning is repeated at most this often.
SLOW_WARNING_EVERY_S = 60.0
#: A 401/403 to one piece of work (a result, a submission fetch) is retried this many times
#: (with backoff) outside an auth outage before it is that work's verdict. Within that time a
#: platform refusing our hotkey also refuses a poll, and a 403 "not claimed by this validator"
#: to a result can be a claim of ours that has not landed yet.
REFUSAL_RETRIES = 5


class ServerHealth:
    """Up or down, and the latest slow request, of one server."""

    def __init__(
        self,
        state: EngineState,
        name: str,
        kind: str,
        *,
        down_on_5xx: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = state
        self.name = name
        self.kind = kind
        self.down_on_5xx = down_on_5xx
        self.up = True
        #: A request has reported back at least once (before that, `up` is a presumption).
        self.heard = False
        self.last_error = ""
        self.down_since: float | None = None
        #: The latest slow request, shown in the header; "" once requests are in time again.
        self.slow = ""
        #: Why the server refuses every request of ours (an auth outage); "" while it does not.
        self.refusing = ""
        self._refused_since = 0.0
        self._clock = clock
        self._slow_warned_at = float("-inf")
        self._listeners: list[Callable[[], None]] = []

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call `listener()` after every change of `up` or `slow`."""
        self._listeners.append(listener)

    def observe(self, report: RequestReport) -> None:
        """Learn from one finished request."""
        status = report.status
        answered = status is not None and not (self.down_on_5xx and status >= 500)
        changed = self._reachability(answered, report.error or f"HTTP {status}")
        changed = self._slowness(report) or changed or not self.heard
        changed = self._accepted(status) or changed
        self.heard = True
        if changed:
            self._notify()

    def refused(self, reason: str) -> None:
        """The server refused a request that is about no particular job (401/403 to a poll):
        it refuses us, not one request. `reason` is logged once and shown until a request is
        accepted again."""
        if self.refusing:
            return
        self.refusing, self._refused_since = reason, self._clock()
        log_event(self.state, "error", self.kind, reason)
        self._notify()

    def refuses_us(self, exc: ClientError) -> bool:
        """True if `exc`, the answer to a request about no particular job (a poll), is a
        401/403: the server refuses our hotkey, not one request (an auth outage, see
        `refused`)."""
        if not isinstance(exc, ApiError) or not exc.refused:
            return False
        words = f" {exc.detail}" if exc.detail else ""
        self.refused(f"{self.kind} refuses our hotkey: {exc.status}{words}")
        return True

    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener()

    def _accepted(self, status: int | None) -> bool:
        """A 2xx answer ends an auth outage; True if one ended."""
        if not self.refusing or status is None or not 200 <= status < 300:
            return False
        refused_for = self._clock() - self._refused_since
        self.refusing = ""
        log_event(
            self.state,
            "info",
            self.kind,
            f"{self.name} accepts our requests again ({refused_for:.1f}s refused)",
        )
        return True

    def _reachability(self, answered: bool, error: str) -> bool:
        now = self._clock()
        if answered:
            if self.up:
                return False
            down_for = now - (self.down_since or now)
            self.up, self.down_since, self.last_error = True, None, ""
            log_event(
                self.state, "info", self.kind, f"{self.name} answers again ({down_for:.1f}s down)"
            )
            return True
        self.last_error = error
        if not self.up:
            return False
        self.up, self.down_since = False, now
        detail = error.removeprefix(self.name).lstrip()
        log_event(self.state, "warn", self.kind, f"{self.name} is not answering: {detail}")
        return True

    def _slowness(self, report: RequestReport) -> bool:
        if report.slow:
            took = "no answer" if report.timed_out else f"{report.elapsed:.1f}s"
            what = report.what.removeprefix(self.name).lstrip()
            text = f"slow {self.name}: {what}: {took} (deadline {report.deadline:g}s)"
            now = self._clock()
            if now - self._slow_warned_at >= SLOW_WARNING_EVERY_S:
                self._slow_warned_at = now
                log_event(self.state, "warn", self.kind, text)
            changed = text != self.slow
            self.slow = text
            return changed
        if self.slow and report.status is not None:
            self.slow = ""
            log_event(self.state, "info", self.kind, f"{self.name} answers in time again")
            return True
        return False


class RefusalBudget:
    """The 401/403 answers one piece of work may take before they are its verdict: refusals
    during an auth outage of `health` are retried without counting; others REFUSAL_RETRIES
    times."""

    def __init__(self, health: ServerHealth) -> None:
        self.health = health
        self.spent = 0

    def retry(self, exc: ClientError) -> bool:
        """Whether `exc`, a refusal (401/403), is to be retried; False for any other error."""
        if not isinstance(exc, ApiError) or not exc.refused:
            return False
        if self.health.refusing:
            return True
        self.spent += 1
        return self.spent <= REFUSAL_RETRIES
