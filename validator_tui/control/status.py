"""The running engine's health as monitoring plugins report it (Nagios/Icinga exit codes):
OK, WARNING, CRITICAL or UNKNOWN, with every reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from validator_tui.sanitize import clean_line
from validator_tui.shared.delta import StateDelta
from validator_tui.shared.records import HostRecord, HostState

#: The engine's claim blocker when its store cannot be written (disk trouble).
CLAIMS_SUSPENDED = "claims are suspended"


class Level(IntEnum):
    """The monitoring-plugins exit codes."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


@dataclass(slots=True)
class Verdict:
    """The worst level found and every reason, most severe first."""

    level: Level = Level.OK
    reasons: list[tuple[Level, str]] = field(default_factory=list)
    figures: dict[str, int] = field(default_factory=dict)

    def add(self, level: Level, reason: str) -> None:
        self.reasons.append((level, clean_line(reason, 300)))
        self.level = max(self.level, level)

    def line(self) -> str:
        """One line: `VALIDATOR <LEVEL> - reason; reason | figure=n …`."""
        ordered = sorted(self.reasons, key=lambda item: -item[0])
        text = "; ".join(reason for _, reason in ordered) or "engine running"
        perf = " ".join(f"{name}={count}" for name, count in self.figures.items())
        return f"VALIDATOR {self.level.name} - {text}" + (f" | {perf}" if perf else "")

    def as_json(self) -> dict[str, object]:
        return {
            "status": self.level.name,
            "code": int(self.level),
            "reasons": [{"level": lvl.name, "reason": text} for lvl, text in self.reasons],
            **self.figures,
        }


def assess(delta: StateDelta) -> Verdict:
    """The health of the engine whose full state `delta` is."""
    verdict = Verdict()
    header = delta.header
    c = header.counters
    verdict.figures = {
        "running": c.running,
        "completed": c.completed,
        "failed": c.failed,
        "lost": c.lost,
        "outbox": c.outbox_pending,
        "dead_letters": c.dead_letters,
    }
    if not header.platform_up:
        verdict.add(Level.CRITICAL, "the platform API is not answering")
    if header.claims_paused.startswith(CLAIMS_SUSPENDED):
        verdict.add(Level.CRITICAL, header.claims_paused)
    _hosts(verdict, delta.hosts)
    if c.dead_letters:
        verdict.add(Level.WARNING, f"{c.dead_letters} dead letters (results the platform refused)")
    if header.capacity_warning:
        verdict.add(Level.WARNING, header.capacity_warning)
    if header.slow_request:
        verdict.add(Level.WARNING, header.slow_request)
    if header.conflict:
        verdict.add(Level.WARNING, header.conflict)
    return verdict


def _hosts(verdict: Verdict, hosts: list[HostRecord]) -> None:
    down = [host for host in hosts if host.state is HostState.DOWN]
    quiet = [host for host in hosts if host.state is HostState.UNREACHABLE]
    if hosts and len(down) == len(hosts):
        names = ", ".join(host.id for host in down)
        verdict.add(Level.CRITICAL, f"no dstack host is answering (down: {names})")
        return
    for host in down:
        verdict.add(Level.WARNING, f"host {host.id} is down: {host.last_error or 'no answer'}")
    for host in quiet:
        verdict.add(
            Level.WARNING, f"host {host.id} is not answering: {host.last_error or 'no answer'}"
        )
