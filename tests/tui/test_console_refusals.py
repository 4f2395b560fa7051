"""Every key answers (issue 12): an action that cannot act on the selection says why in a
toast and sends nothing; the footer dims what does not apply; a read-only console refuses
every command with "read-only console". On a FakeEngine: deterministic, no simulators."""

from __future__ import annotations

import pytest

from tests.support.console import Console, fake_console
from tests.support.fake_engine import FakeEngine, demo_state
from validator_tui.control import ChallengeState, JobState
from validator_tui.tui.actions import ACTIONS, Owner, by_binding
from validator_tui.tui.screens.confirm import ConfirmScreen

COMMANDS = {"claim", "cancel", "rebuild", "start_vm", "stop_vm", "remove_vm", "set_auto_claim"}
COMMANDS |= {"orm_query", "stop_validator", "retry_dead_letter", "discard_dead_letter"}


def commands_sent(engine: FakeEngine) -> list[str]:
    return [call.name for call in engine.calls if call.name in COMMANDS]


def job_in(engine: FakeEngine, state: JobState) -> str:
    return next(job.id for job in engine.state.jobs.values() if job.state is state)


async def select_job(console: Console, job_id: str) -> None:
    feed = console.app.main.feed
    feed.focus()
    feed.move_cursor(row=feed.get_row_index(job_id))
    await console.pilot.pause()


async def select_challenge(console: Console, challenge_id: str) -> None:
    table = console.app.main.challenge_table
    table.focus()
    table.move_cursor(row=table.get_row_index(challenge_id))
    await console.pilot.pause()


@pytest.mark.parametrize(
    ("state", "key", "reason"),
    [
        (JobState.COMPLETED, "c", "is completed: only a pending job can be claimed"),
        (JobState.RUNNING, "c", "is running: only a pending job can be claimed"),
        (JobState.FAILED, "x", "is already failed: there is nothing to cancel"),
        (JobState.CANCELLED, "x", "is already cancelled: there is nothing to cancel"),
        (JobState.PENDING, "x", "is pending: it is not claimed, there is nothing to cancel"),
        (JobState.PENDING, "s", "has no VM"),
        (JobState.PENDING, "S", "has no VM"),
        (JobState.PENDING, "D", "has no VM"),
        (JobState.PENDING, "Y", "has no VM"),
        (JobState.RUNNING, "s", "is running: only a stopped VM can be started"),
        (JobState.PENDING, "r", "select a challenge CVM first"),
        (JobState.COMPLETED, "D", "is completed: its VM was removed when the job finished"),
        (JobState.COMPLETED, "S", "is completed: its VM was removed when the job finished"),
        (JobState.FAILED, "s", "is failed: its VM was removed when the job finished"),
        (JobState.CANCELLED, "D", "is cancelled: its VM was removed when the job finished"),
        (JobState.RUNNING, "r", "select a challenge CVM first"),
    ],
)
async def test_impossible_job_actions_say_why(state: JobState, key: str, reason: str) -> None:
    engine = demo_state(FakeEngine())
    async with fake_console(engine) as console:
        job_id = job_in(engine, state)
        await select_job(console, job_id)
        toast = await console.press_for_toast(key)
        assert reason in toast
        if "job " in reason or "has no VM" in reason:
            assert job_id[:8] in toast
        assert not isinstance(console.app.screen, ConfirmScreen)
        assert commands_sent(engine) == []


async def test_impossible_cvm_actions_say_why() -> None:
    engine = demo_state(FakeEngine())
    engine.add_challenge("no-vm-yet", ChallengeState.FETCHING)
    async with fake_console(engine) as console:
        await select_challenge(console, "chal-1")
        assert "only a stopped VM can be started" in await console.press_for_toast("s")
        await select_challenge(console, "chal-4")
        for key in ("s", "S", "D"):
            assert "no-vm-yet has no CVM yet" in await console.press_for_toast(key)
        assert commands_sent(engine) == []


async def test_escape_without_a_filter_says_so() -> None:
    async with fake_console(demo_state(FakeEngine())) as console:
        assert "no filter to clear" in await console.press_for_toast("escape")


async def test_an_empty_console_says_there_is_nothing_to_act_on() -> None:
    engine = FakeEngine()
    async with fake_console(engine) as console:
        assert "no job selected" in await console.press_for_toast("c")
        assert "nothing selected" in await console.press_for_toast("enter")
        assert "no challenge to query yet" in await console.press_for_toast("o")
        assert commands_sent(engine) == []


READ_ONLY_REFUSED = [action for action in ACTIONS if not action.read_only_safe]


async def test_read_only_console_refuses_every_command_by_key() -> None:
    engine = demo_state(FakeEngine(read_only=True))
    async with fake_console(engine) as console:
        await select_job(console, job_in(engine, JobState.PENDING))
        assert {action.name for action in READ_ONLY_REFUSED} >= {
            "claim_job",
            "cancel_job",
            "rebuild_challenge",
            "start_vm",
            "stop_vm",
            "remove_vm",
            "toggle_auto_claim",
            "orm_query",
            "stop_validator",
        }
        for action in READ_ONLY_REFUSED:
            toast = await console.press_for_toast(action.key)
            assert "read-only console" in toast, action.name
            assert console.app.screen is console.app.main
        assert commands_sent(engine) == []
        shown = {b.binding.action for b in console.app.screen.active_bindings.values()}
        assert not shown & {action.binding_action for action in READ_ONLY_REFUSED}


async def test_footer_dims_what_does_not_apply_and_the_key_still_answers() -> None:
    engine = demo_state(FakeEngine())
    async with fake_console(engine) as console:
        main = console.app.main

        def enabled() -> dict[str, bool]:
            return {
                action.name: active.enabled
                for active in main.active_bindings.values()
                if active.node is main and (action := by_binding(active.binding.action))
            }

        await select_job(console, job_in(engine, JobState.PENDING))
        assert enabled()["claim_job"] and not enabled()["cancel_job"]
        assert not enabled()["rebuild_challenge"]
        await select_job(console, job_in(engine, JobState.RUNNING))
        assert not enabled()["claim_job"] and enabled()["cancel_job"]
        await select_challenge(console, "chal-1")
        assert enabled()["rebuild_challenge"] and enabled()["stop_vm"]
        assert not enabled()["start_vm"]
        main_actions = {action.name for action in ACTIONS if action.owner is Owner.MAIN}
        assert all(main.check_action("run", (name,)) is True for name in main_actions)
