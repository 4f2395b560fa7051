"""The VM console: follows one VM's log stream, sanitised, bounded, pausable, wrappable."""

from __future__ import annotations

import textwrap
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Log

from validator_tui.sanitize import clean_line
from validator_tui.tui.widgets.titles import QuietTitles

LogSource = Callable[[str], AsyncIterator[str]]
FLUSH_DELAY_S = 0.1


class VmConsole(Vertical, QuietTitles):
    """Shows the log of the VM given to `follow`; switching VMs cancels the old stream.
    While it follows no VM it carries the `-empty` class (a short screen then gives its rows
    to the feed). `z` zooms the panel as a whole, not just its log (`ALLOW_MAXIMIZE`).

    While following, the view stays on the newest line; `toggle_pause` holds new lines back
    (the view stays still, scroll freely) and shows them on resume;
    `toggle_wrap` re-renders the kept lines wrapped to the panel width. The mode (following
    or paused, wrap) leads the title, so it stays visible at any size.
    """

    ALLOW_MAXIMIZE = True

    def __init__(self, source: LogSource, *, max_lines: int = 2000, id: str | None = None) -> None:
        super().__init__(id=id, classes="-empty")
        self._source = source
        self.max_lines = max_lines
        self.vm_id: str | None = None
        self._label = ""
        self.paused = False
        self.wrap = False
        self._lines: deque[str] = deque(maxlen=max_lines)
        self._pending: list[str] = []
        self._held: deque[str] = deque(maxlen=max_lines)
        self._held_total = 0
        self._flush_scheduled = False
        self._wrap_width = 0

    def compose(self) -> ComposeResult:
        yield Log(max_lines=self.max_lines, id="vm-log")

    def on_mount(self) -> None:
        self._update_title()

    @property
    def lines(self) -> list[str]:
        """The sanitised lines received for the current VM (bounded, unwrapped)."""
        return list(self._lines)

    def follow(self, vm_id: str | None, label: str = "") -> None:
        """Show `vm_id`'s log (None: nothing); no-op when it is already shown."""
        if vm_id == self.vm_id:
            return
        self.vm_id = vm_id
        self._label = clean_line(label, 80)
        self._lines.clear()
        self._pending.clear()
        self._held.clear()
        self._held_total = 0
        self.query_one(Log).clear()
        self._update_title()
        self.set_class(vm_id is None, "-empty")
        if vm_id is None:
            self.workers.cancel_group(self, "vm-console")
        else:
            self._stream(vm_id)

    def toggle_pause(self) -> None:
        """Pause (hold new lines, keep the view still) or resume (show what was held)."""
        self.paused = not self.paused
        if not self.paused:
            self._write(list(self._held))
            self._held.clear()
            self._held_total = 0
        self._update_title()

    def toggle_wrap(self) -> None:
        """Wrap long lines to the panel width, or show them whole (scroll sideways)."""
        self.wrap = not self.wrap
        self._rewrite()
        self._update_title()

    def on_resize(self, event: events.Resize) -> None:
        if self.wrap and self._log_width() != self._wrap_width:
            self._rewrite()

    @work(exclusive=True, group="vm-console", exit_on_error=False)
    async def _stream(self, vm_id: str) -> None:
        stream: Any = self._source(vm_id)
        try:
            async with aclosing(stream) as lines:
                async for raw in lines:
                    self._receive(clean_line(raw))
            self._receive("── end of log ──")
        except Exception as exc:
            self._receive(f"── log stream ended: {clean_line(str(exc), 300)} ──")

    def _receive(self, line: str) -> None:
        if self.paused:
            self._held.append(line)
            self._held_total += 1
            self._update_title()
            return
        self._pending.append(line)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.set_timer(FLUSH_DELAY_S, self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        lines, self._pending = self._pending, []
        self._write(lines)

    def _write(self, lines: list[str]) -> None:
        if not lines:
            return
        self._lines.extend(lines)
        log = self.query_one(Log)
        log.write_lines(self._display(lines), scroll_end=False)
        self.call_after_refresh(log.scroll_end, animate=False)

    def _rewrite(self) -> None:
        log = self.query_one(Log)
        log.clear()
        self._wrap_width = self._log_width()
        log.write_lines(self._display(list(self._lines)))

    def _display(self, lines: list[str]) -> list[str]:
        if not self.wrap:
            return lines
        width = max(10, self._log_width())
        out: list[str] = []
        for line in lines:
            out.extend(textwrap.wrap(line, width, drop_whitespace=False) or [""])
        return out

    def _log_width(self) -> int:
        return self.query_one(Log).scrollable_content_region.width

    def _update_title(self) -> None:
        title = Text("VM console · ")
        if self.paused:
            title.append(f"paused · {self._held_total} new", style="bold yellow")
        else:
            title.append("following")
        title.append(" · wrap" if self.wrap else " · nowrap")
        if self.vm_id is None:
            title.append(" · select a job or challenge with a VM", style="dim")
        else:
            title.append(f" · {self._label or self.vm_id}", style="bold")
        self.set_title(title)
