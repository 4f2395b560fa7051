"""ServerHealth: up/down from request reports, logged once per transition; slow requests."""

from validator_tui.clients.errors import ApiError, NotSent
from validator_tui.clients.transport import RequestReport
from validator_tui.engine.health import (
    REFUSAL_RETRIES,
    SLOW_WARNING_EVERY_S,
    RefusalBudget,
    ServerHealth,
)
from validator_tui.engine.state import EngineState


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(down_on_5xx=False):
    state = EngineState("hk")
    clock = Clock()
    health = ServerHealth(state, "platform", "platform", down_on_5xx=down_on_5xx, clock=clock)
    changes: list[bool] = []
    health.subscribe(lambda: changes.append(health.up))
    return state, clock, health, changes


def ok(elapsed=0.01, status=200):
    return RequestReport("GET /x", elapsed, 10.0, status)


def refused():
    return RequestReport("GET /x", 0.01, 10.0, None, sent=False, error="GET /x: refused")


def messages(state):
    return [(e.level, e.message) for e in state.events]


def test_down_and_up_are_one_event_each_however_many_failures():
    state, clock, health, changes = make()
    for _ in range(50):
        health.observe(refused())
    assert not health.up and health.last_error == "GET /x: refused"
    clock.now += 12.5
    for _ in range(50):
        health.observe(ok())
    assert health.up
    assert messages(state) == [
        ("warn", "platform is not answering: GET /x: refused"),
        ("info", "platform answers again (12.5s down)"),
    ]
    assert changes == [False, True]


def test_5xx_counts_as_down_only_when_asked():
    _, _, platform, _ = make(down_on_5xx=False)
    platform.observe(ok(status=503))
    assert platform.up
    _, _, vmm, _ = make(down_on_5xx=True)
    vmm.observe(ok(status=502))
    assert not vmm.up


def test_slow_requests_warn_at_most_once_a_minute_and_clear_when_in_time():
    state, clock, health, _ = make()
    timed_out = RequestReport("GET /jobs/pending", 10.0, 10.0, None, timed_out=True, error="x")
    health.observe(timed_out)
    assert health.slow == "slow platform: GET /jobs/pending: no answer (deadline 10s)"
    clock.now += 30
    health.observe(ok(elapsed=6.0))
    assert health.slow == "slow platform: GET /x: 6.0s (deadline 10s)"
    clock.now += SLOW_WARNING_EVERY_S
    health.observe(ok(elapsed=7.0))
    slow_warnings = [m for level, m in messages(state) if m.startswith("slow")]
    assert len(slow_warnings) == 2
    health.observe(ok(elapsed=0.1))
    assert health.slow == ""
    assert messages(state)[-1] == ("info", "platform answers in time again")


def test_messages_name_the_server_once():
    state = EngineState("hk")
    name = "VMM unix:/run/dstack/vmm.sock"
    health = ServerHealth(state, name, "vmm", down_on_5xx=True)
    health.observe(
        RequestReport(
            f"{name} Status",
            0.01,
            10.0,
            None,
            sent=False,
            error=f"{name} Status: unreachable: connection refused",
        )
    )
    assert messages(state) == [
        ("warn", f"{name} is not answering: Status: unreachable: connection refused")
    ]
    health.observe(RequestReport(f"{name} Status", 9.0, 10.0, 200))
    assert health.slow == f"slow {name}: Status: 9.0s (deadline 10s)"


def test_an_auth_outage_is_logged_once_and_ends_at_the_first_2xx():
    state, clock, health, changes = make()
    health.refused("platform refuses our hotkey: 401 bad signature")
    health.refused("platform refuses our hotkey: 401 bad signature")
    health.observe(ok(status=401))
    health.observe(ok(status=503))
    health.observe(ok(status=404))
    assert health.refusing == "platform refuses our hotkey: 401 bad signature"
    clock.now += 25.0
    health.observe(ok(status=204))
    health.observe(ok())
    assert health.refusing == "" and health.up
    assert messages(state) == [
        ("error", "platform refuses our hotkey: 401 bad signature"),
        ("info", "platform accepts our requests again (25.0s refused)"),
    ]
    assert len(changes) == 3


def test_a_refusal_budget_counts_only_refusals_outside_an_outage():
    _, _, health, _ = make()
    budget = RefusalBudget(health)
    refusal = ApiError(403, "job is not claimed by this validator")
    assert not budget.retry(ApiError(400, "bad body"))
    assert not budget.retry(NotSent("refused"))
    health.refused("platform refuses our hotkey: 403")
    assert all(budget.retry(refusal) for _ in range(50))
    health.observe(ok())
    assert [budget.retry(ApiError(401, "")) for _ in range(REFUSAL_RETRIES + 1)] == [
        *[True] * REFUSAL_RETRIES,
        False,
    ]
