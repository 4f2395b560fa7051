"""The seam between the console and the engine: the `EngineClient` interface and the data
that crosses it (the records of `validator_tui.shared`, re-exported for the console).

Importing this package loads nothing of the engine: the in-process client, the control
server and the socket client are modules of their own.
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
from validator_tui.shared.delta import THROUGHPUT_BUCKET_S, Header, StateDelta
from validator_tui.shared.records import (
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
    OutboxRow,
    Outcome,
    QuotaUsage,
    Resources,
    ResultStatus,
    TimelineEntry,
    VmKind,
    VmRecord,
)

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
