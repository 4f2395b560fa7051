"""`FakeEngine`: an `EngineClient` over a hand-filled `EngineState`, for the console's tests.

No simulators, no engine loops, no threads: the test builds the state it wants to see (jobs in
every state, challenges, VMs, events, the header) with the builders below, at fixed instants
around `FIXED_NOW`, and the console reads it through the real change feed
(`EngineState.changes_since`). Every command the console sends is recorded in `calls` and
answered with the next scripted `Outcome` (`answer`), after an optional effect on the state
(`on`). `info`, `link`, `embedded` and `read_only` are plain attributes a test may set.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from tests.support.identities import ALICE, BOB
from validator_tui.control import (
    READ_ONLY_REFUSAL,
    ChallengeRecord,
    ChallengeState,
    ChallengeStats,
    ConnectionView,
    Counters,
    EngineInfo,
    EngineMode,
    Event,
    HostRecord,
    HostState,
    JobRecord,
    JobState,
    Link,
    OutboxRow,
    Outcome,
    QuotaUsage,
    Resources,
    StateDelta,
    TimelineEntry,
    VmKind,
    VmRecord,
    frames,
)
from validator_tui.control.frame_commands import ClientCommands
from validator_tui.engine.state import EngineState

#: The frozen "now" of every console test.
FIXED_NOW = 1_700_000_000.0
NO_RESOURCES = Resources()
HOST_TOTAL = Resources(vcpu=16, memory_mb=32768, disk_mb=512000)
MINERS = (ALICE, BOB, "5DAAnrj7VHTznn2AWBemMuyBwZWs6FNFjdyVXUeYum3PTXFy")


def uuid_like(seed: str) -> str:
    """A UUID-shaped id derived from `seed` (the same every run)."""
    h = hashlib.sha256(seed.encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}"


@dataclass(frozen=True, slots=True)
class Call:
    """One command the console sent: its name and arguments."""

    name: str
    args: tuple[object, ...] = ()


@dataclass
class FakeEngine(ClientCommands):
    """An engine the test fills by hand; see the module docstring."""

    hotkey: str = ALICE
    now: float = FIXED_NOW
    read_only: bool = False
    embedded: bool = True
    mode: EngineMode = EngineMode.CONSOLE
    state: EngineState = field(init=False)
    info: EngineInfo = field(init=False)
    link: Link = field(init=False)
    calls: list[Call] = field(default_factory=list)
    #: VM log lines by VM id; `vm_logs` of an id not here fails like a VM the VMM lost.
    logs: dict[str, list[str]] = field(default_factory=dict)
    #: Jobs only `job()` knows (the engine's history beyond what the console holds).
    history: dict[str, JobRecord] = field(default_factory=dict)
    #: The results outbox `list_outbox` answers (dead letters first, as the engine orders it).
    outbox: list[OutboxRow] = field(default_factory=list)
    #: Completions and failures per throughput bucket, as the header carries them.
    throughput: tuple[int, ...] = ()
    failures: tuple[int, ...] = ()
    stopping: bool = False
    _answers: dict[str, deque[Outcome]] = field(default_factory=lambda: defaultdict(deque))
    _effects: dict[str, Callable[..., None]] = field(default_factory=dict)
    _events: list[Event] = field(default_factory=list)
    _serial: int = 0

    def __post_init__(self) -> None:
        self.state = EngineState(self.hotkey)
        self.state.header.read_only = self.read_only
        self.state.header.auto_claim = False
        self.state.header.last_poll_at = self.now - 2
        self.state.header.platform = ConnectionView("connected", since=self.now - 600)
        self.state.header.vmm = ConnectionView("connected", since=self.now - 600)
        self.info = EngineInfo(
            state_dir="/var/lib/validator-tui",
            pid=4242,
            mode=self.mode,
            hotkey=self.hotkey,
            started_at=self.now - 3600,
        )
        self.link = Link(since=self.now - 3600)

    # -- builders -----------------------------------------------------------------------------

    def _next(self) -> int:
        self._serial += 1
        return self._serial

    def add_job(
        self,
        state: JobState = JobState.PENDING,
        *,
        challenge_id: str = "chal-1",
        age: float | None = None,
        **fields: Any,
    ) -> JobRecord:
        """A job in `state` with the fields that state implies (claim time, VM, score, error),
        created `age` seconds before `now` (later jobs are newer by default)."""
        n = self._next()
        created = self.now - (age if age is not None else 1000 - n)
        job = JobRecord(
            id=uuid_like(f"job {n}"),
            challenge_id=challenge_id,
            submission_id=f"sub-{n:04d}",
            miner_hotkey=MINERS[n % len(MINERS)],
            state=state,
            created_at=created,
            timeline=[TimelineEntry(created, "listed by the platform")],
        )
        if state is not JobState.PENDING:
            job.claimed_at = created + 1
            job.timeline.append(TimelineEntry(created + 1, "claimed"))
        if state.active or state in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED):
            job.vm_id = uuid_like(f"job vm {n}")
            job.host_port = 20000 + n
        if state.finished:
            job.finished_at = created + 30
        if state is JobState.COMPLETED:
            job.score = round(0.5 + (n % 5) / 10, 3)
            job.execution_time_ms = 28_500
            job.result_status = "accepted"
            job.logs = [f"evaluating {job.submission_id}", "score computed"]
            job.timeline.append(TimelineEntry(created + 30, "result accepted"))
        elif state is JobState.FAILED:
            job.score = 0.0
            job.error = "job timed out after 60s"
            job.result_status = "accepted"
            job.timeline.append(TimelineEntry(created + 30, "failed: job timed out after 60s"))
        elif state is JobState.CANCELLED:
            job.score = 0.0
            job.error = "cancelled by operator"
            job.result_status = "accepted"
        elif state is JobState.LOST:
            job.error = "claimed by another validator"
        for name, value in fields.items():
            setattr(job, name, value)
        self.state.put_job(job)
        return job

    def add_jobs(self, *states: JobState, challenge_id: str = "chal-1") -> list[JobRecord]:
        """One job per state given, oldest first."""
        return [self.add_job(state, challenge_id=challenge_id) for state in states]

    def add_challenge(
        self,
        name: str,
        state: ChallengeState = ChallengeState.ACTIVE,
        *,
        challenge_id: str | None = None,
        **fields: Any,
    ) -> ChallengeRecord:
        """A challenge with its CVM (running when active) and the CVM's `VmRecord`."""
        n = self._next()
        cid = challenge_id or f"chal-{len(self.state.challenges) + 1}"
        has_vm = state in (ChallengeState.BOOTING, ChallengeState.ACTIVE, ChallengeState.UPDATING)
        record = ChallengeRecord(
            id=cid,
            name=name,
            state=state,
            github_repo=f"https://github.com/platform/{name}",
            github_commit=f"{n:02x}c0ffee{n:02x}aa55deadbeef0000{n:08x}",
            compose_hash=f"{n:02x}5a17ed{n:02x}" + "ab" * 28,
            mechanism_id=n,
            emission_share=0.25,
            vm_id=uuid_like(f"cvm {n}") if has_vm else None,
            vm_status="running" if state is ChallengeState.ACTIVE else "",
            boot_progress="done" if state is ChallengeState.ACTIVE else "",
            host_port=(31000 + n) if has_vm else None,
            active_since=self.now - 5400 if state is ChallengeState.ACTIVE else None,
        )
        if state is ChallengeState.BOOTING:
            record.vm_status, record.boot_progress = "running", "init-scripts"
        if state is ChallengeState.FAILED:
            record.reason = record.last_error = "CVM did not become healthy within 300s"
        record.history = _history_up_to(state, self.now - 5460, record.reason)
        for name_, value in fields.items():
            setattr(record, name_, value)
        self.state.put_challenge(record)
        if record.vm_id:
            self.add_vm(
                record.vm_id,
                VmKind.CHALLENGE,
                cid,
                status=record.vm_status or "running",
                boot_progress=record.boot_progress,
                host_port=record.host_port,
            )
        return record

    def add_vm(
        self, vm_id: str, kind: VmKind, owner_id: str, *, status: str = "running", **fields: Any
    ) -> VmRecord:
        """One of the engine's VMs."""
        vm = VmRecord(vm_id, f"vt-5grwvaef-{kind.value}-{owner_id}", kind, owner_id, status=status)
        vm.created_at = self.now - 600
        for name, value in fields.items():
            setattr(vm, name, value)
        self.state.put_vm(vm)
        return vm

    def add_event(
        self,
        level: str,
        kind: str,
        message: str,
        *,
        ago: float = 0.0,
        job_id: str | None = None,
        challenge_id: str | None = None,
        vm_id: str | None = None,
    ) -> Event:
        """An event log line `ago` seconds before `now`."""
        event = Event(
            len(self._events) + 1,
            self.now - ago,
            level,
            kind,
            message,
            job_id,
            challenge_id,
            vm_id,
        )
        self._events.append(event)
        self.state.header_changed()
        return event

    def add_outbox_row(
        self, job_id: str, status: str, last_error: str = "", *, attempts: int = 1, ago: float = 60
    ) -> OutboxRow:
        """A result in the outbox, last changed `ago` seconds before `now`."""
        row = OutboxRow(job_id, status, attempts, last_error, self.now - ago - 30, self.now - ago)
        self.outbox.append(row)
        return row

    def set_quota(self, used: Resources, total: Resources, ports: tuple[int, int]) -> None:
        """The quota the header shows."""
        allocations = sum(1 for job in self.state.jobs.values() if job.state.active)
        self.state.header.quota = QuotaUsage(used, total, ports[0], ports[1], allocations)
        self.state.header_changed()

    def set_header(self, **fields: Any) -> None:
        """Set header fields (auto_claim, platform, vmm, …)."""
        for name, value in fields.items():
            setattr(self.state.header, name, value)
        self.state.header_changed()

    def recount(self) -> Counters:
        """Header counters computed from the jobs, as the engine keeps them."""
        jobs = list(self.state.jobs.values())
        counters = Counters(
            running=sum(1 for job in jobs if job.state.active),
            completed=sum(1 for job in jobs if job.state is JobState.COMPLETED),
            failed=sum(1 for job in jobs if job.state is JobState.FAILED),
            lost=sum(1 for job in jobs if job.state is JobState.LOST),
            cancelled=sum(1 for job in jobs if job.state is JobState.CANCELLED),
            claimed_total=sum(1 for job in jobs if job.claimed_at is not None),
            outbox_pending=self.state.header.counters.outbox_pending,
            dead_letters=self.state.header.counters.dead_letters,
        )
        self.state.header.counters = counters
        self.state.header_changed()
        return counters

    # -- changing what was built --------------------------------------------------------------

    def update_job(self, job_id: str, **fields: Any) -> JobRecord:
        job = self.state.jobs[job_id]
        for name, value in fields.items():
            setattr(job, name, value)
        self.state.put_job(job)
        return job

    def update_challenge(self, challenge_id: str, **fields: Any) -> ChallengeRecord:
        record = self.state.challenges[challenge_id]
        for name, value in fields.items():
            setattr(record, name, value)
        self.state.put_challenge(record)
        return record

    def add_host(
        self,
        name: str,
        state: HostState = HostState.UP,
        *,
        used: Resources = NO_RESOURCES,
        total: Resources = HOST_TOTAL,
        vms: int = 0,
        since_ago: float | None = None,
        **fields: Any,
    ) -> HostRecord:
        """A dstack host of the pool (its usage as a quota panel shows it)."""
        record = HostRecord(
            id=name,
            url=f"http://10.0.0.{len(self.state.hosts) + 1}:11530",
            state=state,
            since=None if since_ago is None else self.now - since_ago,
            draining=state in (HostState.DRAINING, HostState.DRAINED),
            usage=QuotaUsage(used, total, vms, 100, vms),
            vms=vms,
            **fields,
        )
        self.state.put_host(record)
        return record

    def update_vm(self, vm_id: str, **fields: Any) -> VmRecord:
        vm = self.state.vms[vm_id]
        for name, value in fields.items():
            setattr(vm, name, value)
        self.state.put_vm(vm)
        return vm

    def remove_job(self, job_id: str) -> None:
        """The job leaves the engine's state (it stays in `history` if put there)."""
        self.state.drop_job(job_id)

    # -- scripting ----------------------------------------------------------------------------

    def answer(self, command: str, *outcomes: Outcome) -> None:
        """The next answers to `command` (after them: done)."""
        self._answers[command].extend(outcomes)

    def on(self, command: str, effect: Callable[..., None]) -> None:
        """Run `effect(*args)` when `command` arrives (before it is answered)."""
        self._effects[command] = effect

    def sent(self, command: str) -> list[tuple[object, ...]]:
        """The arguments of every `command` the console sent, in order."""
        return [call.args for call in self.calls if call.name == command]

    def _unknown(self, command: frames.Command) -> Outcome | None:
        """The refusal of a command naming a job, challenge, VM or host this engine does not
        have (as the real engine refuses it: the message names what is missing)."""
        known = {
            "job_id": set(self.state.jobs) | set(self.history) | {r.job_id for r in self.outbox},
            "challenge_id": set(self.state.challenges),
            "vm_id": set(self.state.vms),
            "host": set(self.state.hosts),
        }
        for name, value in command.model_dump().items():
            if name in known and value not in known[name]:
                return Outcome.refused(f"unknown {name.removesuffix('_id')} {value}")
        return None

    # -- EngineClient -------------------------------------------------------------------------

    async def changes_since(self, version: int, event_seq: int) -> StateDelta:
        delta = self.state.changes_since(version, 0)
        events = [event for event in self._events if event.seq > event_seq]
        header = replace(delta.header, throughput=self.throughput, failures=self.failures)
        return replace(delta, events=events, header=header)

    async def job(self, job_id: str) -> JobRecord | None:
        found = self.state.job_copy(job_id)
        return found if found is not None else self.history.get(job_id)

    async def command(self, command: frames.Command) -> Outcome:
        """Record the command; refuse it for a read-only console or a missing target; else
        run its effect (`on`) and answer the next scripted outcome (`answer`), or done."""
        name = command.command
        args = tuple(command.model_dump(exclude={"command"}).values())
        self.calls.append(Call(name, args))
        if self.read_only:
            return Outcome.refused(READ_ONLY_REFUSAL)
        unknown = self._unknown(command)
        if unknown is not None:
            return unknown
        effect = self._effects.get(name)
        if effect is not None:
            effect(*args)
        answers = self._answers[name]
        outcome = answers.popleft() if answers else Outcome.done(f"{name}: done")
        if outcome.ok and isinstance(command, frames.SetAutoClaim):
            self.set_header(auto_claim=command.enabled)
        if outcome.ok and isinstance(command, frames.StopValidator):
            self.stopping = True
        return outcome

    async def list_outbox(self, limit: int = 1000) -> list[OutboxRow]:
        self.calls.append(Call("list_outbox", (limit,)))
        return self.outbox[:limit]

    async def vm_logs(
        self, vm_id: str, *, lines: int = 200, follow: bool = True
    ) -> AsyncIterator[str]:
        """The scripted lines of `vm_id` (the last `lines`), then, when following, nothing
        more until the console stops reading."""
        self.calls.append(Call("vm_logs", (vm_id,)))
        if vm_id not in self.logs:
            raise LookupError(f"VM {vm_id} not found")
        for line in self.logs[vm_id][-lines:]:
            yield line
        if follow:
            await asyncio.Event().wait()


_BRINGUP = (
    ChallengeState.FETCHING,
    ChallengeState.PROVISIONING,
    ChallengeState.BOOTING,
    ChallengeState.ACTIVE,
)


def _history_up_to(state: ChallengeState, start: float, reason: str) -> tuple[TimelineEntry, ...]:
    """The state changes a challenge goes through to reach `state`, 20 s apart."""
    steps = list(_BRINGUP[: _BRINGUP.index(state) + 1]) if state in _BRINGUP else []
    if state not in _BRINGUP:
        steps = [ChallengeState.FETCHING, state]
    entries = [TimelineEntry(start + 20 * i, step.value) for i, step in enumerate(steps)]
    if reason and entries:
        entries[-1] = TimelineEntry(entries[-1].at, f"{state.value}: {reason}")
    return tuple(entries)


def demo_state(engine: FakeEngine) -> FakeEngine:
    """A busy scene for snapshots and flows: three challenges (one booting), jobs in every
    state, their VMs, a quota, a few events and a log for every VM."""
    engine.add_challenge(
        "term-bench",
        jobs_run=41,
        stats=ChallengeStats(completed=37, failed=4, mean_score=0.612, p50_ms=1480, p95_ms=4210),
    )
    engine.add_challenge("swe-forge", jobs_run=17)
    engine.add_challenge("code-arena", ChallengeState.BOOTING)
    states = [*JobState, JobState.COMPLETED, JobState.PENDING, JobState.RUNNING]
    challenge_ids = list(engine.state.challenges)
    for index, state in enumerate(states):
        job = engine.add_job(state, challenge_id=challenge_ids[index % 2])
        if job.vm_id and state.active:
            engine.add_vm(job.vm_id, VmKind.JOB, job.id, host_port=job.host_port)
    for challenge_id in challenge_ids:
        running = [j for j in engine.state.jobs.values() if j.challenge_id == challenge_id]
        engine.update_challenge(
            challenge_id, jobs_running=sum(1 for job in running if job.state.active)
        )
    for vm_id in engine.state.vms:
        engine.logs[vm_id] = [f"[{vm_id}] boot: kernel up", f"[{vm_id}] app: listening"]
    engine.set_quota(
        Resources(vcpu=10, memory_mb=14336, disk_mb=143360),
        Resources(vcpu=16, memory_mb=32768, disk_mb=512000),
        (5, 100),
    )
    engine.throughput = tuple((i * 7) % 5 for i in range(60))
    engine.failures = tuple(int(i % 9 == 0) for i in range(60))
    finished = [job for job in engine.state.jobs.values() if job.state.finished and job.vm_id]
    engine.add_outbox_row(
        finished[0].id,
        "dead",
        "platform http://127.0.0.1:3000: 422 Unprocessable Entity: score must be within [0, 1]",
        attempts=3,
        ago=300,
    )
    engine.add_outbox_row(finished[1].id, "pending", "platform unreachable: timed out", ago=20)
    engine.add_outbox_row(finished[2].id, "sent", ago=900)
    engine.state.header.counters.dead_letters = 1
    engine.state.header.counters.outbox_pending = 1
    engine.recount()
    events: Iterable[tuple[str, str, str, float]] = (
        ("info", "challenge", "term-bench: CVM active", 5400.0),
        ("info", "challenge", "swe-forge: CVM active", 5300.0),
        ("warn", "platform", "poll took 4.2s", 120.0),
        ("error", "job", "job timed out after 60s", 60.0),
        ("info", "result", "result accepted", 30.0),
    )
    for level, kind, message, ago in events:
        engine.add_event(level, kind, message, ago=ago)
    return engine


def with_hosts(engine: FakeEngine) -> FakeEngine:
    """Spread `engine`'s challenges and claimed jobs over three hosts: `tdx-a` up, `tdx-b`
    down for 95 s (its CVM moved to `tdx-c`), `tdx-c` draining."""
    names = ("tdx-a", "tdx-c")
    for index, challenge_id in enumerate(sorted(engine.state.challenges)):
        engine.update_challenge(challenge_id, host=names[index % 2])
    claimed = [job for job in engine.state.jobs.values() if job.claimed_at is not None]
    for index, job in enumerate(claimed):
        job.host = ("tdx-a", "tdx-b", "tdx-c")[index % 3]
        engine.state.put_job(job)
    for vm in list(engine.state.vms.values()):
        owner = engine.state.jobs.get(vm.owner_id) or engine.state.challenges.get(vm.owner_id)
        engine.update_vm(vm.id, host=getattr(owner, "host", ""))
    per_vm = Resources(vcpu=2, memory_mb=2048, disk_mb=20480)
    total = Resources(vcpu=16, memory_mb=32768, disk_mb=512000)
    for name, state, since in (
        ("tdx-a", HostState.UP, None),
        ("tdx-b", HostState.DOWN, 95.0),
        ("tdx-c", HostState.DRAINING, None),
    ):
        vms = sum(1 for vm in engine.state.vms.values() if vm.host == name)
        engine.add_host(name, state, used=per_vm.times(vms), total=total, vms=vms, since_ago=since)
    return engine
