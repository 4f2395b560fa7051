"""The header: who we are, upstream connections, auto-claim, where metrics are served, job
counters; for an attached console also the engine it is attached to and the state of that link.

Every age on it ticks at the precision shown, and a tick repaints only the characters that
changed (`Lines`)."""

from __future__ import annotations

from rich.text import Text

from validator_tui.control import EngineInfo, Header, Link, LinkStatus
from validator_tui.sanitize import clean_line
from validator_tui.tui.format import age, connection_text, short_hotkey
from validator_tui.tui.widgets.lines import Lines

_SEP = (" │ ", "dim")


class StatusBar(Lines):
    """Renders a `Header` snapshot (plus the engine line of an attached console)."""

    def show(
        self,
        header: Header,
        now: float,
        *,
        attached: EngineInfo | None = None,
        link: Link | None = None,
        as_of: tuple[float, str] = (0.0, ""),
    ) -> None:
        """Render `header` as of `now` (ages are measured with the app's clock); `attached`:
        the engine this console is attached to, with the `link` to it. `as_of`: when its label
        is set (`as of 12:34:56`), the header is not live: it is shown dimmed, as it was at
        that time, each line led by the label."""
        at, label = as_of
        if label:
            lines = [stale_line(line, label) for line in render_header(header, at)]
        else:
            lines = list(render_header(header, now))
        if attached is not None:
            lines.insert(0, engine_line(attached, link or Link(), now))
        self.set_class(attached is not None, "-attached")
        self.show_lines(lines)


def engine_line(info: EngineInfo, link: Link, now: float) -> Text:
    """`⇄ attached to pid 4242 (console) /var/lib/… · up 1h02m │ ● linked`, or the link's
    trouble in its colour: `◌ reconnecting in 3s`, `✗ engine gone`."""
    line = Text(no_wrap=True, overflow="ellipsis")
    line.append("⇄ attached to ", style="dim")
    line.append(f"pid {info.pid}", style="bold")
    line.append(f" ({clean_line(info.mode, 20)})")
    line.append(f" · up {age(now - info.started_at)}", style="dim")
    line.append(*_SEP)
    line.append_text(link_text(link, now))
    line.append(*_SEP)
    line.append(clean_line(info.state_dir, 200), style="dim")
    return line


def stale_line(line: Text, label: str) -> Text:
    """`line` as a figure no longer live: led by `label`, its colours gone, dimmed."""
    stale = Text(label, style="bold", no_wrap=True, overflow="ellipsis")
    stale.append(*_SEP)
    stale.append(line.plain, style="dim")
    return stale


def link_text(link: Link, now: float) -> Text:
    """The console's link to its engine: marker, words, colour."""
    detail = clean_line(link.detail, 80)
    if link.status is LinkStatus.CONNECTED:
        return Text("● linked", style="green")
    if link.status is LinkStatus.RECONNECTING:
        text = "◌ reconnecting"
        if link.retry_in is not None:
            text += f" in {age(max(0.0, link.since + link.retry_in - now))}"
        return Text(text + (f": {detail}" if detail else ""), style="bold yellow")
    return Text("✗ engine gone" + (f": {detail}" if detail else ""), style="bold red")


def render_header(header: Header, now: float) -> tuple[Text, Text]:
    """The two header lines (no markup is parsed from any value)."""
    top = Text(no_wrap=True, overflow="ellipsis")
    top.append(short_hotkey(header.hotkey) or "no hotkey", style="bold")
    top.append(*_SEP)
    top.append("platform ")
    top.append_text(connection_text(header.platform, now))
    polled = "never" if header.last_poll_at is None else age(now - header.last_poll_at)
    top.append(f" · poll {polled}", style="dim")
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
    if header.metrics_url:
        where = header.metrics_url.removeprefix("http://").removesuffix("/metrics")
        top.append(*_SEP)
        top.append(f"metrics {clean_line(where, 60)}", style="dim")

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
        bottom.append_text(Text.assemble(_SEP, (f"⚠ {clean_line(warning, 200)}", "bold yellow")))
    return top, bottom
