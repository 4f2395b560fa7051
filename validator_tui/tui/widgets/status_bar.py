"""The two-line header: who we are, upstream connections, auto-claim, job counters."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from validator_tui.control import Header
from validator_tui.tui.format import ago, connection_text, short_hotkey

_SEP = (" │ ", "dim")


class StatusBar(Static):
    """Renders a `Header` snapshot; re-renders only when what it shows has changed.

    Its size comes from the stylesheet, so an update repaints it without a screen layout.
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._shown: str = ""

    def show(self, header: Header, now: float) -> None:
        """Render `header` as of `now` (ages are measured with the app's clock)."""
        text = render_header(header, now)
        if text.markup != self._shown:
            self._shown = text.markup
            self.update(text, layout=False)


def render_header(header: Header, now: float) -> Text:
    """Both header lines as one Text (no markup is parsed from any value)."""
    top = Text(no_wrap=True, overflow="ellipsis")
    top.append(short_hotkey(header.hotkey) or "no hotkey", style="bold")
    top.append(*_SEP)
    top.append("platform ")
    top.append_text(connection_text(header.platform, now))
    top.append(f" · poll {ago(header.last_poll_at, now).removesuffix(' ago')}", style="dim")
    top.append(*_SEP)
    top.append("vmm ")
    top.append_text(connection_text(header.vmm, now))
    top.append(*_SEP)
    top.append("auto-claim ")
    top.append(
        "ON" if header.auto_claim else "OFF",
        style="bold green" if header.auto_claim else "bold yellow",
    )
    if header.read_only:
        top.append(*_SEP)
        top.append("READ-ONLY", style="bold reverse")

    counters = header.counters
    bottom = Text(no_wrap=True, overflow="ellipsis")
    if header.conflict:
        bottom.append(f"⚠ {header.conflict}", style="bold reverse red")
        bottom.append(*_SEP)
    parts = [
        ("●", "running", counters.running, "bold cyan"),
        ("✓", "done", counters.completed, "green"),
        ("✗", "failed", counters.failed, "bold red" if counters.failed else ""),
        ("↷", "lost", counters.lost, ""),
        ("⊘", "cancelled", counters.cancelled, ""),
        ("⇡", "outbox", counters.outbox_pending, "yellow" if counters.outbox_pending else ""),
    ]
    for index, (marker, label, value, style) in enumerate(parts):
        if index:
            bottom.append(*_SEP)
        bottom.append(f"{marker} {label} ")
        bottom.append(str(value), style=style or "bold")
    if counters.dead_letters:
        bottom.append(*_SEP)
        bottom.append(f"‼ dead letters {counters.dead_letters}", style="bold red")
    for warning in header.warnings():
        bottom.append_text(Text.assemble(_SEP, (f"⚠ {warning}", "bold yellow")))
    return Text("\n", no_wrap=True, overflow="ellipsis").join([top, bottom])
