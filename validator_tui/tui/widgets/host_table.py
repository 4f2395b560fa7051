"""The hosts panel: one row per dstack host of the pool, with its state (up, unreachable,
down since, draining, drained), its gauges and how many of our VMs run there. Shown while
the engine has several hosts; `h`/`H` drain and undrain the host under its cursor."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from rich.text import Text

from validator_tui.control import HostRecord, HostState
from validator_tui.sanitize import clean_line
from validator_tui.tui.format import age, bar
from validator_tui.tui.widgets.line_table import Cell, Column, LineTable
from validator_tui.tui.widgets.quota_panel import megabytes

COLUMNS = (
    Column("host", "Host", 5, grow=1, max_width=16),
    Column("state", "State", 10, grow=1, max_width=17),
    Column("cpu", "CPU", 10),
    Column("mem", "Mem", 9, drop=2),
    Column("gpu", "GPU", 3, drop=1),
    Column("vms", "VMs", 3, align="right"),
)
TICKING = frozenset({"state"})

#: Marker and style of each host state.
HOST_MARKERS: dict[HostState, tuple[str, str]] = {
    HostState.UP: ("●", "green"),
    HostState.UNREACHABLE: ("◌", "bold yellow"),
    HostState.DOWN: ("✗", "bold red"),
    HostState.DRAINING: ("◐", "yellow"),
    HostState.DRAINED: ("○", "dim"),
}
_STATE_ORDER = {state: index for index, state in enumerate(HostState)}


def host_state_text(host: HostRecord, now: float) -> str:
    """`up`, `down 3m12s`, `unreachable 12s`, `draining`, `drained`."""
    marker, _ = HOST_MARKERS[host.state]
    text = f"{marker} {host.state.value}"
    if host.since is not None and host.state in (HostState.DOWN, HostState.UNREACHABLE):
        text += f" {age(max(0.0, now - host.since))}"
    return text


def host_state_short(host: HostRecord) -> str:
    """The state in at most 10 cells, for a narrow panel (`◌ unreach`, `✗ down`)."""
    marker, _ = HOST_MARKERS[host.state]
    return f"{marker} {host.state.value[:7]}"


class HostTable(LineTable[HostRecord]):
    """The engine's dstack hosts, by name."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(COLUMNS, sort_key="host", id=id)

    def on_mount(self) -> None:
        self.set_title(Text("Hosts"))

    @property
    def hosts(self) -> dict[str, HostRecord]:
        """The hosts shown, by name."""
        return self.records

    @property
    def selected_host(self) -> HostRecord | None:
        """The host under the cursor, if any."""
        key = self.selected_key
        return None if key is None else self.records.get(key)

    def apply(self, changed: Iterable[HostRecord], now: float, *, full: bool) -> None:
        """Show the hosts that changed (`full`: `changed` is every host)."""
        self.now = now
        changed = list(changed)
        if full:
            for name in self.records.keys() - {host.id for host in changed}:
                self.discard(name)
        for host in changed:
            self.put(host.id, host)
        self.commit()
        counts = Counter(host.state for host in self.records.values())
        title = f"Hosts ({len(self.records)})"
        for state in HostState:
            if state is not HostState.UP and counts[state]:
                title += f" · {counts[state]} {state.value}"
        self.set_title(Text(title))

    def cells(self, record: HostRecord) -> Sequence[Cell]:
        host = record
        _, style = HOST_MARKERS[host.state]
        used, total = host.usage.used, host.usage.total
        cpu = bar(used.vcpu, total.vcpu, 3).plain + f" {used.vcpu}/{total.vcpu}"
        mem = f"{megabytes(used.memory_mb)}/{megabytes(total.memory_mb)}"
        full = total.vcpu > 0 and used.vcpu >= total.vcpu
        return (
            Cell(clean_line(host.id, 40)),
            Cell(host_state_text(host, self.now), style, short=host_state_short(host)),
            Cell(cpu, "bold red" if full else ""),
            Cell(mem),
            Cell(f"{used.gpu}/{total.gpu}" if total.gpu else "-"),
            Cell(str(host.vms)),
        )

    def sort_value(self, record: HostRecord, column: str) -> object:
        host = record
        if column == "state":
            return _STATE_ORDER[host.state]
        if column == "cpu":
            return host.usage.used.vcpu
        if column == "mem":
            return host.usage.used.memory_mb
        if column == "gpu":
            return host.usage.used.gpu
        if column == "vms":
            return host.vms
        return host.id

    def ticking(self, record: HostRecord) -> bool:
        return record.since is not None

    def ticking_columns(self) -> frozenset[str]:
        return TICKING
