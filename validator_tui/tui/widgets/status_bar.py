"""The header: who we are, upstream connections, auto-claim, where metrics are served, job
counters; for an attached console also the engine it is attached to and the state of that link.

Every age on it ticks at the precision shown, and a tick repaints only the characters that
changed (`Lines`)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from validator_tui.control import EngineInfo, Header, HostRecord, HostState, Link, LinkStatus
from validator_tui.sanitize import clean_line
from validator_tui.tui.format import age, connection_text, short_hotkey
from validator_tui.tui.widgets.host_table import HOST_MARKERS, host_state_text
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
        banner: str = "",
        host: HostRecord | None = None,
    ) -> None:
        """Render `header` as of `now` (ages are measured with the app's clock); `attached`:
        the engine this console is attached to, with the `link` to it. `as_of`: when its label
        is set (`as of 12:34:56`), the header is not live: it is shown dimmed, as it was at
        that time, each line led by the label. `banner`: why claims are blocked as a whole
        (`claims_banner`); `host`: the pool's only host, whose state joins the vmm segment."""
        at, label = as_of
        shown = render_header(header, at if label else now, banner=banner, host=host)
        lines = [stale_line(line, label) for line in shown] if label else list(shown)
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


def claims_banner(header: Header, hosts: Sequence[HostRecord], waiting: Sequence[str]) -> str:
    """Why claims are blocked as a whole, in one line ("" when they are not): the engine's
    own pause if any, else auto-claim off, else no host taking VMs, else the one reason every
    pending job shares (`waiting`: the waiting reasons of the pending jobs shown)."""
    if header.claims_paused:
        return header.claims_paused
    if not header.auto_claim:
        count = len(waiting)
        jobs = f" ({count} pending job{' waits' if count == 1 else 's wait'})" if count else ""
        return f"claims blocked: auto-claim off{jobs}"
    if hosts and not any(host.state is HostState.UP for host in hosts):
        return f"claims blocked: {_no_taker(hosts)}"
    reasons = set(waiting)
    # Only what holds every job (capacity, hosts) starts with "waiting"; a CVM not active
    # or a claim to retry holds some challenges' jobs, which their rows say.
    if len(reasons) != 1 or not next(iter(reasons)).startswith("waiting"):
        return ""
    reason = clean_line(reasons.pop(), 160)
    capacity = "waiting for capacity ("
    if reason.startswith(capacity) and reason.endswith(")"):
        reason = f"no capacity for a job VM: {reason[len(capacity) : -1]}"
    return f"claims blocked: {reason}"


def _no_taker(hosts: Sequence[HostRecord]) -> str:
    """`host tdx-a drained`, `all hosts drained`, `no host takes VMs (tdx-a drained, …)`."""
    if len(hosts) == 1:
        return f"host {clean_line(hosts[0].id, 40)} {hosts[0].state.value}"
    if all(host.draining for host in hosts):
        return "all hosts drained"
    states = ", ".join(f"{clean_line(host.id, 40)} {host.state.value}" for host in hosts)
    return f"no host takes VMs ({states})"


def render_header(
    header: Header, now: float, *, banner: str = "", host: HostRecord | None = None
) -> tuple[Text, Text]:
    """The two header lines (no markup is parsed from any value): `banner` leads the second
    line; `host` (a single host's state other than up) follows the VMM's connection."""
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
    if host is not None and host.state is not HostState.UP:
        _, style = HOST_MARKERS[host.state]
        top.append(" · ")
        top.append(host_state_text(host, now), style=style)
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
    if banner:
        bottom.append(f"⚠ {clean_line(banner, 200)}", style="bold reverse yellow")
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
        if warning == banner:
            continue
        bottom.append_text(Text.assemble(_SEP, (f"⚠ {clean_line(warning, 200)}", "bold yellow")))
    return top, bottom
