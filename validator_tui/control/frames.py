"""The control protocol's frames: pydantic models, one JSON object per line.

A frame is a UTF-8 JSON object followed by `\\n`, at most `MAX_FRAME_BYTES` including the
newline (JSON escapes every newline inside strings, so a line is a frame). The first frame in
each direction is a `hello` carrying `PROTOCOL_VERSION`. See docs/control-protocol.md.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError

from validator_tui.control.engine_info import EngineInfo
from validator_tui.shared.delta import Header, StateDelta
from validator_tui.shared.records import (
    ChallengeRecord,
    Event,
    HostRecord,
    JobRecord,
    OutboxRow,
    Outcome,
    VmRecord,
)

if TYPE_CHECKING:
    from validator_tui.engine.validator import Validator

#: 2: host records in state frames, drain_host / undrain_host commands.
PROTOCOL_VERSION = 2
#: The largest frame either side sends or accepts, newline included.
MAX_FRAME_BYTES = 1 << 20

Id = Annotated[str, StringConstraints(min_length=1, max_length=256)]
RequestId = Annotated[int, Field(ge=0, le=2**53)]
Scalar = str | int | float | bool | None


class _Frame(BaseModel):
    # Only field names are cached (see models.platform.WireModel): record ids are unique.
    model_config = ConfigDict(extra="forbid", frozen=True, cache_strings="keys")


# -- console → engine ---------------------------------------------------------------------------


class Hello(_Frame):
    """The console's first frame."""

    type: Literal["hello"] = "hello"
    protocol: int
    client: Annotated[str, StringConstraints(max_length=200)] = "console"
    read_only: bool = False


class _Command(_Frame, ABC):
    """An operator command: its fields, what it does in words, and how the engine runs it.
    The engine's command desk describes it, refuses it for a read-only console, and runs it."""

    @abstractmethod
    def describe(self) -> str:
        """What the command does, for the operator log (raw: the desk sanitises it)."""

    @abstractmethod
    async def run(self, validator: Validator) -> Outcome:
        """Run the command on the engine (on its loop, one command at a time)."""


class Claim(_Command):
    """Claim a pending job now (whatever the auto-claim setting)."""

    command: Literal["claim"] = "claim"
    job_id: Id

    def describe(self) -> str:
        return f"claim job {self.job_id}"

    async def run(self, validator: Validator) -> Outcome:
        return await validator.commands.claim(self.job_id)


class Cancel(_Command):
    """Abort a claimed or running job: its VM is destroyed, the platform gets the error result
    `cancelled by operator`."""

    command: Literal["cancel"] = "cancel"
    job_id: Id

    def describe(self) -> str:
        return f"cancel job {self.job_id}"

    async def run(self, validator: Validator) -> Outcome:
        return await validator.commands.cancel(self.job_id)


class Rebuild(_Command):
    """Provision a fresh CVM for the challenge, switch to it, destroy the old one."""

    command: Literal["rebuild"] = "rebuild"
    challenge_id: Id

    def describe(self) -> str:
        return f"rebuild the CVM of challenge {self.challenge_id}"

    async def run(self, validator: Validator) -> Outcome:
        return await validator.commands.rebuild(self.challenge_id)


class StartVm(_Command):
    """Start one of the engine's VMs."""

    command: Literal["start_vm"] = "start_vm"
    vm_id: Id

    def describe(self) -> str:
        return f"start VM {self.vm_id}"

    async def run(self, validator: Validator) -> Outcome:
        return await validator.commands.start_vm(self.vm_id)


class StopVm(_Command):
    """Stop one of the engine's VMs."""

    command: Literal["stop_vm"] = "stop_vm"
    vm_id: Id

    def describe(self) -> str:
        return f"stop VM {self.vm_id}"

    async def run(self, validator: Validator) -> Outcome:
        return await validator.commands.stop_vm(self.vm_id)


class RemoveVm(_Command):
    """Remove one of the engine's VMs."""

    command: Literal["remove_vm"] = "remove_vm"
    vm_id: Id

    def describe(self) -> str:
        return f"remove VM {self.vm_id}"

    async def run(self, validator: Validator) -> Outcome:
        return await validator.commands.remove_vm(self.vm_id)


class SetAutoClaim(_Command):
    """Turn auto-claim on or off."""

    command: Literal["set_auto_claim"] = "set_auto_claim"
    enabled: bool

    def describe(self) -> str:
        return f"auto-claim {'on' if self.enabled else 'off'}"

    async def run(self, validator: Validator) -> Outcome:
        return await validator.commands.set_auto_claim(self.enabled)


class OrmQuery(_Command):
    """Run a read-only ORM query on a challenge's database; rows come in the outcome."""

    command: Literal["orm_query"] = "orm_query"
    challenge_id: Id
    sql: Annotated[str, StringConstraints(max_length=65536)]
    params: Annotated[list[Scalar], Field(max_length=100)] = []

    def describe(self) -> str:
        """The query, never its parameters."""
        return f"ORM query on challenge {self.challenge_id}: {self.sql}"

    async def run(self, validator: Validator) -> Outcome:
        return await validator.commands.orm_query(self.challenge_id, self.sql, list(self.params))


class StopValidator(_Command):
    """Stop the validator the graceful way: no new claims, running jobs get their result, the
    outbox is flushed. Done once the engine has begun stopping."""

    command: Literal["stop_validator"] = "stop_validator"

    def describe(self) -> str:
        return "stop the validator"

    async def run(self, validator: Validator) -> Outcome:
        running = validator.running_job_count()
        await validator.stop()
        return Outcome.done(
            f"the validator is stopping: {running} running job(s) get their result, "
            "then the engine exits"
        )


class RetryDeadLetter(_Command):
    """Send a result the platform refused (a dead letter) again, now."""

    command: Literal["retry_dead_letter"] = "retry_dead_letter"
    job_id: Id

    def describe(self) -> str:
        return f"send the dead letter of job {self.job_id} again"

    async def run(self, validator: Validator) -> Outcome:
        return await validator.commands.retry_dead_letter(self.job_id)


class DiscardDeadLetter(_Command):
    """Give up on a dead letter for good (kept in the store as `discarded`)."""

    command: Literal["discard_dead_letter"] = "discard_dead_letter"
    job_id: Id

    def describe(self) -> str:
        return f"discard the dead letter of job {self.job_id}"

    async def run(self, validator: Validator) -> Outcome:
        return await validator.commands.discard_dead_letter(self.job_id)


class DrainHost(_Command):
    """Drain a dstack host: no new VMs there, its challenge CVMs move to other hosts (a new
    one active first), its running jobs finish; then it shows `drained`."""

    command: Literal["drain_host"] = "drain_host"
    host: Id

    def describe(self) -> str:
        return f"drain host {self.host}"

    async def run(self, validator: Validator) -> Outcome:
        return await validator.commands.drain_host(self.host)


class UndrainHost(_Command):
    """Return a drained (or draining) host to the pool."""

    command: Literal["undrain_host"] = "undrain_host"
    host: Id

    def describe(self) -> str:
        return f"undrain host {self.host}"

    async def run(self, validator: Validator) -> Outcome:
        return await validator.commands.undrain_host(self.host)


Command = Annotated[
    Claim
    | Cancel
    | Rebuild
    | StartVm
    | StopVm
    | RemoveVm
    | SetAutoClaim
    | OrmQuery
    | StopValidator
    | RetryDeadLetter
    | DiscardDeadLetter
    | DrainHost
    | UndrainHost,
    Field(discriminator="command"),
]


class CommandFrame(_Frame):
    """One operator command; the engine answers with an `outcome` frame of the same id."""

    type: Literal["command"] = "command"
    id: RequestId
    command: Command


class LogsOpen(_Frame):
    """Stream a VM's log as `log_lines` frames of this id, ended by `log_end`."""

    type: Literal["logs_open"] = "logs_open"
    id: RequestId
    vm_id: Id
    lines: Annotated[int, Field(ge=0, le=10000)] = 200
    follow: bool = True


class LogsClose(_Frame):
    type: Literal["logs_close"] = "logs_close"
    id: RequestId


class JobRequest(_Frame):
    """The engine's record of one job (also one older than the snapshot carries)."""

    type: Literal["job"] = "job"
    id: RequestId
    job_id: Id


class OutboxRequest(_Frame):
    """The results outbox: dead letters first, then unsent, then the latest answered."""

    type: Literal["outbox"] = "outbox"
    id: RequestId
    limit: Annotated[int, Field(ge=1, le=1000)] = 1000


ClientFrame = Annotated[
    Hello | CommandFrame | LogsOpen | LogsClose | JobRequest | OutboxRequest,
    Field(discriminator="type"),
]


# -- engine → console ---------------------------------------------------------------------------


class EngineHello(_Frame):
    """The engine's answer to `hello`: who it is and what this connection may do."""

    type: Literal["hello"] = "hello"
    protocol: int
    engine: EngineInfo
    read_only: bool
    connection: int
    origin: str


class StateFrame(_Frame):
    """Part of a snapshot (`snapshot`: replace everything) or of a delta; the part with
    `final` set carries the header and completes it."""

    type: Literal["state"] = "state"
    snapshot: bool
    final: bool
    version: int
    jobs: list[JobRecord] = []
    removed_jobs: list[str] = []
    challenges: list[ChallengeRecord] = []
    removed_challenges: list[str] = []
    vms: list[VmRecord] = []
    removed_vms: list[str] = []
    events: list[Event] = []
    hosts: list[HostRecord] = []
    header: Header | None = None


class OutcomeFrame(_Frame):
    type: Literal["outcome"] = "outcome"
    id: RequestId
    outcome: Outcome


class JobAnswer(_Frame):
    type: Literal["job"] = "job"
    id: RequestId
    job: JobRecord | None


class OutboxAnswer(_Frame):
    """`rows` of the outbox (as many as fit in a frame; `total` were asked for)."""

    type: Literal["outbox"] = "outbox"
    id: RequestId
    rows: list[OutboxRow]
    total: int


class LogLines(_Frame):
    type: Literal["log_lines"] = "log_lines"
    id: RequestId
    lines: list[str]


class LogEnd(_Frame):
    type: Literal["log_end"] = "log_end"
    id: RequestId
    error: str = ""


class ErrorFrame(_Frame):
    """Something the other side sent was refused; `fatal`: the connection closes next."""

    type: Literal["error"] = "error"
    code: str
    message: str
    fatal: bool = False


class Bye(_Frame):
    """The engine closes this connection (`reason`: stopped, cut_off, closing)."""

    type: Literal["bye"] = "bye"
    reason: str
    message: str


ServerFrame = Annotated[
    EngineHello
    | StateFrame
    | OutcomeFrame
    | JobAnswer
    | OutboxAnswer
    | LogLines
    | LogEnd
    | ErrorFrame
    | Bye,
    Field(discriminator="type"),
]

_CLIENT: TypeAdapter[ClientFrame] = TypeAdapter(ClientFrame, config=_Frame.model_config)
_SERVER: TypeAdapter[ServerFrame] = TypeAdapter(ServerFrame, config=_Frame.model_config)


class FrameError(ValueError):
    """A frame that cannot be accepted; `code` names why (malformed, too_large, version…)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def encode(frame: _Frame) -> bytes:
    """The frame as one line; FrameError if it would exceed MAX_FRAME_BYTES."""
    data = frame.model_dump_json().encode() + b"\n"
    if len(data) > MAX_FRAME_BYTES:
        raise FrameError("too_large", f"{type(frame).__name__} of {len(data)} bytes")
    return data


def _decode(adapter: TypeAdapter[Any], line: bytes) -> Any:
    if len(line) > MAX_FRAME_BYTES:
        raise FrameError("too_large", f"frame of {len(line)} bytes (limit {MAX_FRAME_BYTES})")
    try:
        return adapter.validate_json(line)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "frame"
        raise FrameError("malformed", f"{where}: {first['msg']}"[:300]) from None


def decode_client(line: bytes) -> ClientFrame:
    """A console's frame, validated; FrameError if it is not one."""
    frame: ClientFrame = _decode(_CLIENT, line)
    return frame


def decode_server(line: bytes) -> ServerFrame:
    """An engine's frame, validated; FrameError if it is not one."""
    frame: ServerFrame = _decode(_SERVER, line)
    return frame


# -- state frames, cut to size ------------------------------------------------------------------

_JOB: TypeAdapter[JobRecord] = TypeAdapter(JobRecord)
_CHALLENGE: TypeAdapter[ChallengeRecord] = TypeAdapter(ChallengeRecord)
_VM: TypeAdapter[VmRecord] = TypeAdapter(VmRecord)
_EVENT: TypeAdapter[Event] = TypeAdapter(Event)
_HOST: TypeAdapter[HostRecord] = TypeAdapter(HostRecord)
_STR: TypeAdapter[str] = TypeAdapter(str)
_HEADER: TypeAdapter[Header] = TypeAdapter(Header)
#: Room kept in every state frame for the envelope and the field names.
_ENVELOPE = 400


def _slim_job(job: JobRecord) -> JobRecord:
    note = f"[validator-tui] {len(job.logs)} log lines too long for the control socket"
    return replace(job, logs=[note], metrics={}, timeline=job.timeline[-4:], vm_log=())


def state_frames(
    delta: StateDelta, *, snapshot: bool, limit: int = MAX_FRAME_BYTES
) -> Iterator[bytes]:
    """`delta` as state frames of at most `limit` bytes each, the last one `final` with the
    header. Records are encoded as the frames are taken, so a caller can yield between them.
    A record too large for a frame on its own is sent slimmed (a job without its logs)."""
    header = _HEADER.dump_json(delta.header)
    budget = limit - len(header) - _ENVELOPE
    fields: list[tuple[str, Callable[[Any], bytes], Sequence[Any]]] = [
        ("jobs", _encode_job, delta.jobs),
        ("removed_jobs", _STR.dump_json, delta.removed_jobs),
        ("challenges", _CHALLENGE.dump_json, delta.challenges),
        ("removed_challenges", _STR.dump_json, delta.removed_challenges),
        ("vms", _VM.dump_json, delta.vms),
        ("removed_vms", _STR.dump_json, delta.removed_vms),
        ("events", _EVENT.dump_json, delta.events),
        ("hosts", _HOST.dump_json, delta.hosts),
    ]
    current: dict[str, list[bytes]] = {}
    size = 0
    for name, dump, items in fields:
        for item in items:
            data = dump(item)
            if len(data) + len(name) + 8 > budget:
                continue  # only a pathological record: _encode_job already slims jobs
            if size + len(data) + len(name) + 8 > budget:
                yield _state_frame(current, snapshot, False, delta.version, None)
                current, size = {}, 0
            bucket = current.setdefault(name, [])
            size += len(data) + 1 + (len(name) + 8 if len(bucket) == 0 else 0)
            bucket.append(data)
    yield _state_frame(current, snapshot, True, delta.version, header)


def _encode_job(job: JobRecord) -> bytes:
    data = _JOB.dump_json(job)
    if len(data) > MAX_FRAME_BYTES // 2:
        data = _JOB.dump_json(_slim_job(job))
    return data


def fit_job(job: JobRecord | None) -> JobRecord | None:
    """`job`, or a copy without its logs if it would not fit in half a frame."""
    if job is not None and len(_JOB.dump_json(job)) > MAX_FRAME_BYTES // 2:
        return _slim_job(job)
    return job


def _state_frame(
    parts: dict[str, list[bytes]], snapshot: bool, final: bool, version: int, header: bytes | None
) -> bytes:
    out = bytearray(b'{"type":"state","snapshot":')
    out += b"true" if snapshot else b"false"
    out += b',"final":' + (b"true" if final else b"false")
    out += b',"version":' + str(int(version)).encode()
    for name, items in parts.items():
        out += b',"' + name.encode() + b'":[' + b",".join(items) + b"]"
    if header is not None:
        out += b',"header":' + header
    out += b"}\n"
    return bytes(out)
