"""The seam between the console and the engine: the `EngineClient` interface, its in-process
implementation, and the data that crosses it.

The console imports the engine's record types from here, never from `validator_tui.engine`.
"""

from validator_tui.control.interface import (
    READ_ONLY_REFUSAL,
    ConsoleExit,
    EngineClient,
    EngineInfo,
    EngineMode,
    Link,
    LinkStatus,
)
from validator_tui.engine.records import (
    ChallengeRecord,
    ChallengeState,
    ChallengeStats,
    ConnectionView,
    Counters,
    Event,
    HostRecord,
    HostState,
    JobRecord,
    JobState,
    Outcome,
    QuotaUsage,
    Resources,
    ResultStatus,
    TimelineEntry,
    VmKind,
    VmRecord,
)
from validator_tui.engine.state import THROUGHPUT_BUCKET_S, Header, StateDelta
from validator_tui.engine.store import OutboxRow

__all__ = [
    "READ_ONLY_REFUSAL",
    "THROUGHPUT_BUCKET_S",
    "ChallengeRecord",
    "ChallengeState",
    "ChallengeStats",
    "ConnectionView",
    "ConsoleExit",
    "Counters",
    "EngineClient",
    "EngineInfo",
    "EngineMode",
    "Event",
    "Header",
    "HostRecord",
    "HostState",
    "JobRecord",
    "JobState",
    "Link",
    "LinkStatus",
    "OutboxRow",
    "Outcome",
    "QuotaUsage",
    "Resources",
    "ResultStatus",
    "StateDelta",
    "TimelineEntry",
    "VmKind",
    "VmRecord",
]
