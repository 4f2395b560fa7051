"""Wire models of the Platform API (REST bodies and WebSocket messages).

Tolerant where servers vary (extra fields ignored, status values case-insensitive),
strict where it matters (ids are non-empty strings, scores are finite numbers).
"""

from __future__ import annotations

import json
import math
import reprlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar, overload

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


Id = Annotated[str, Field(min_length=1, max_length=200)]
LowerStr = Annotated[str, BeforeValidator(_lower)]


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


FiniteFloat = Annotated[float, AfterValidator(_finite)]


class WireModel(BaseModel):
    """Base for inbound payloads: unknown fields are ignored."""

    # Values (job and submission ids) are unique: pydantic's JSON string cache would keep the
    # latest 16,384 of them alive for nothing (~1.4 MB); field names are worth caching.
    model_config = ConfigDict(extra="ignore", frozen=True, cache_strings="keys")


class Challenge(WireModel):
    """One entry of `GET /challenges/active`."""

    id: Id
    name: str = ""
    status: LowerStr = "active"
    github_repo: str = ""
    github_commit: str = ""
    compose_hash: str = ""
    mechanism_id: int = 0
    emission_share: FiniteFloat = 0.0


class ChallengesResponse(WireModel):
    """The envelope of `GET /challenges/active`; its entries are read one by one."""

    challenges: list[Any]


class Job(WireModel):
    """One entry of `GET /jobs/pending`."""

    id: Id
    challenge_id: Id
    submission_id: str = ""
    miner_hotkey: str = ""
    status: LowerStr = "pending"
    created_at: datetime | None = None


class PendingJobsResponse(WireModel):
    """The envelope of `GET /jobs/pending`; its entries are read one by one."""

    jobs: list[Any]


EntryT = TypeVar("EntryT", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class SkippedEntry:
    """A list entry that could not be read: where, and the first bad field with its value."""

    index: int
    #: The entry's `id` when it had a usable one: the platform still lists that id.
    id: str | None
    #: Where in the entry: `created_at`, or `<entry>` for an entry that is not an object.
    field: str
    #: `created_at = 'yesterday': <why>` (unsanitised).
    problem: str

    def describe(self, what: str) -> str:
        """`skipped <what> entry 1 (id 'job-x'): created_at = 'yesterday': <why>`, sanitised."""
        named = f" (id {self.id!r})" if self.id is not None else ""
        return f"skipped {what} entry {self.index}{named}: {self.problem}"


@dataclass(frozen=True, slots=True)
class Listing(Sequence[EntryT]):
    """A list the platform sent, read entry by entry: the readable entries, in order, and the
    entries that were skipped."""

    entries: tuple[EntryT, ...]
    skipped: tuple[SkippedEntry, ...] = ()

    @overload
    def __getitem__(self, index: int) -> EntryT: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[EntryT]: ...
    def __getitem__(self, index: int | slice) -> EntryT | Sequence[EntryT]:
        return self.entries[index]

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def skipped_ids(self) -> frozenset[str]:
        """The ids of the skipped entries that had one (still listed, though unreadable)."""
        return frozenset(entry.id for entry in self.skipped if entry.id is not None)


def read_entries(raw: list[Any], model: type[EntryT]) -> Listing[EntryT]:
    """Validate each entry of `raw` as `model`; an invalid entry is skipped, never the list."""
    entries: list[EntryT] = []
    skipped: list[SkippedEntry] = []
    for index, item in enumerate(raw):
        try:
            entries.append(model.model_validate(item))
        except ValidationError as exc:
            where, problem = _first_error(exc)
            skipped.append(SkippedEntry(index, _entry_id(item), where, problem))
    return Listing(tuple(entries), tuple(skipped))


def _entry_id(item: Any) -> str | None:
    """The entry's `id`, if it is a string a valid entry could have."""
    value = item.get("id") if isinstance(item, dict) else None
    return value if isinstance(value, str) and 0 < len(value) <= 200 else None


_VALUE_REPR = reprlib.Repr()
_VALUE_REPR.maxstring = _VALUE_REPR.maxother = 60
_VALUE_REPR.maxlist = _VALUE_REPR.maxdict = 4
_VALUE_REPR.maxlevel = 2


def _first_error(exc: ValidationError) -> tuple[str, str]:
    """Where the first invalid field is, and `created_at = 'yesterday': <pydantic's words>`
    (the value abbreviated; sanitise before display)."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "<entry>"
    if first["type"] == "missing":
        return where, f"{where}: {first['msg']}"
    return where, f"{where} = {_VALUE_REPR.repr(first['input'])}: {first['msg']}"


class ClaimResponse(WireModel):
    """Body of a successful `POST /jobs/{id}/claim`."""

    id: Id
    challenge_id: Id
    submission_id: str = ""
    status: LowerStr = "claimed"


class JobResults(BaseModel):
    """Body of `POST /jobs/{id}/results`; serialises exactly as the reference shows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    score: FiniteFloat
    metrics: dict[str, Any] = Field(default_factory=dict)
    logs: list[str] = Field(default_factory=list)
    execution_time_ms: int = Field(ge=0)
    error: str | None = None

    @classmethod
    def failure(
        cls, error: str, execution_time_ms: int, logs: list[str] | None = None
    ) -> JobResults:
        """The result of a job that could not be evaluated: score 0, `error` set, and `logs`
        (by default the one line `[validator] <error>`)."""
        return cls(
            score=0.0,
            metrics={},
            logs=[f"[validator] {error}"] if logs is None else logs,
            execution_time_ms=max(0, execution_time_ms),
            error=error,
        )

    def to_json_bytes(self) -> bytes:
        """The exact request body: `score, metrics, logs, execution_time_ms, error`."""
        return json.dumps(self.model_dump(mode="json"), separators=(",", ":")).encode()


class OrmQueryRequest(BaseModel):
    """Body of `POST /challenges/{id}/orm/query`."""

    query: str
    params: list[Any] = Field(default_factory=list)


class OrmQueryResponse(WireModel):
    rows: list[dict[str, Any]]


class NewJobMessage(WireModel):
    type: Literal["new_job"]
    job_id: Id
    challenge_id: Id


class ChallengeUpdatedMessage(WireModel):
    type: Literal["challenge_updated"]
    challenge_id: Id
    github_commit: str = ""


class JobCancelledMessage(WireModel):
    type: Literal["job_cancelled"]
    job_id: Id


class UnknownMessage(WireModel):
    """A well-formed JSON object whose `type` this validator does not know."""

    type: str
    raw: dict[str, Any]


WsMessage = NewJobMessage | ChallengeUpdatedMessage | JobCancelledMessage | UnknownMessage

_KNOWN = Annotated[
    NewJobMessage | ChallengeUpdatedMessage | JobCancelledMessage,
    Field(discriminator="type"),
]
_known_adapter: TypeAdapter[NewJobMessage | ChallengeUpdatedMessage | JobCancelledMessage] = (
    TypeAdapter(_KNOWN)
)
KNOWN_TYPES = frozenset({"new_job", "challenge_updated", "job_cancelled"})


class MessageDecodeError(ValueError):
    """A WebSocket frame that is not a valid message (bad JSON, not an object, bad fields)."""


def parse_ws_message(frame: str | bytes) -> WsMessage:
    """Parse one WebSocket frame.

    Returns a typed message, or `UnknownMessage` for an object with an unknown `type`.
    Raises `MessageDecodeError` (only) for anything malformed.
    """
    try:
        data = json.loads(frame)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise MessageDecodeError(f"frame is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MessageDecodeError(f"frame is a JSON {type(data).__name__}, expected an object")
    kind = data.get("type")
    if not isinstance(kind, str):
        raise MessageDecodeError("frame has no string `type`")
    if kind not in KNOWN_TYPES:
        return UnknownMessage(type=kind[:100], raw=data)
    try:
        return _known_adapter.validate_python(data)
    except ValidationError as exc:
        raise MessageDecodeError(f"bad {kind!r} message: {_first_error(exc)[1]}") from None


class EvaluateRequest(BaseModel):
    """Body of the evaluator's `POST /evaluate` (the contract in DESIGN.md)."""

    job_id: str
    challenge_id: str
    submission_id: str
    miner_hotkey: str
    code: str


class EvaluateResponse(WireModel):
    """Evaluator answer. Score validity (finite, in [0, 1]) is checked by the executor."""

    score: float
    metrics: dict[str, Any] = Field(default_factory=dict)
    logs: list[str] = Field(default_factory=list)

    @field_validator("logs", mode="before")
    @classmethod
    def _logs_as_strings(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [v if isinstance(v, str) else json.dumps(v) for v in value]
        return value
