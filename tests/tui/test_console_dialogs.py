"""Confirm dialogs say what really happens to the selected thing, name their buttons with
their keys, and send the command for the row the operator saw (FakeEngine)."""

from __future__ import annotations

from tests.support.console import fake_console, job_in, open_dialog, select
from tests.support.fake_engine import FakeEngine, demo_state
from validator_tui.control import JobState, Outcome, VmKind


async def test_stopping_a_challenge_cvm_says_its_jobs_wait_not_fail() -> None:
    engine = demo_state(FakeEngine())
    cvm = engine.state.challenges["chal-1"].vm_id
    async with fake_console(engine) as console:
        await select(console, "challenges", "chal-1")
        text, buttons = await open_dialog(console, "S")
        assert "Stop the CVM of term-bench?" in text
        assert "stays stopped until you start it (s) or" in text
        assert "no job of term-bench is claimed meanwhile" in text
        assert "fail" not in text.split("Stop the CVM")[1]
        assert buttons == ["Stop VM (y)", "Keep it (n · esc)"]
        await console.pilot.press("y")
        await console.until(lambda: engine.sent("stop_vm") == [(cvm,)], "stop_vm sent")


async def test_removing_a_job_vm_says_the_job_fails_not_a_reprovision() -> None:
    engine = demo_state(FakeEngine())
    job_id = job_in(engine, JobState.RUNNING)
    vm_id = engine.state.jobs[job_id].vm_id
    async with fake_console(engine) as console:
        await select(console, "jobs", job_id)
        text, buttons = await open_dialog(console, "D")
        assert f"Remove the VM of job {job_id[:8]}?" in text
        assert f"Job {job_id[:8]} (running) fails" in text
        assert "provision" not in text
        assert buttons == ["Remove VM (y)", "Keep it (n · esc)"]
        await console.pilot.press("n")
        assert console.app.screen is console.app.main
        assert engine.sent("remove_vm") == []
        await console.pilot.press("D", "y")
        await console.until(lambda: engine.sent("remove_vm") == [(vm_id,)], "remove_vm sent")


async def test_removing_a_challenge_cvm_says_a_fresh_one_is_provisioned() -> None:
    engine = demo_state(FakeEngine())
    async with fake_console(engine) as console:
        await select(console, "challenges", "chal-2")
        text, _ = await open_dialog(console, "D")
        assert "Remove the CVM of swe-forge?" in text
        assert "provisions a" in text and "fresh CVM for swe-forge" in text
        assert "fails" not in text


async def test_stopping_a_job_vm_says_the_job_fails() -> None:
    engine = demo_state(FakeEngine())
    job_id = job_in(engine, JobState.RUNNING)
    async with fake_console(engine) as console:
        await select(console, "jobs", job_id)
        text, buttons = await open_dialog(console, "S")
        assert f"Stop the VM of job {job_id[:8]}?" in text
        assert "the job fails" in text and "cancel it (x) instead" in text
        assert "stays stopped" not in text
        assert buttons[0] == "Stop VM (y)"


async def test_cancel_acts_on_the_job_seen_when_the_key_was_pressed() -> None:
    engine = demo_state(FakeEngine())
    job_id = job_in(engine, JobState.RUNNING)
    async with fake_console(engine) as console:
        await select(console, "jobs", job_id)
        text, buttons = await open_dialog(console, "x")
        assert f"Cancel job {job_id[:8]} (running)?" in text
        assert "“cancelled by operator”" in text and "counts as cancelled" in text
        assert buttons == ["Cancel job (y)", "Keep it (n · esc)"]
        for _ in range(5):
            engine.add_job(JobState.PENDING)
        await console.sync()
        await console.pilot.press("escape")
        assert engine.sent("cancel") == []
        await console.pilot.press("x", "y")
        await console.until(lambda: engine.sent("cancel") == [(job_id,)], "cancel sent")
        await console.until(lambda: any("cancel job" in t for t in console.toasts()), "toast")


async def test_rebuild_confirms_then_sends_it_and_a_refusal_is_shown() -> None:
    engine = demo_state(FakeEngine())
    engine.answer("rebuild", Outcome.refused("unknown challenge, or it is leaving the active list"))
    async with fake_console(engine) as console:
        await select(console, "challenges", "chal-1")
        text, buttons = await open_dialog(console, "r")
        assert "Rebuild the CVM of term-bench?" in text
        assert buttons == ["Rebuild CVM (y)", "Keep it (n · esc)"]
        await console.pilot.press("y")
        await console.until(lambda: engine.sent("rebuild") == [("chal-1",)], "rebuild sent")
        await console.until(
            lambda: any("rebuild cvm: refused: unknown challenge" in t for t in console.toasts()),
            "refusal shown",
        )


async def test_start_vm_needs_no_confirm() -> None:
    engine = demo_state(FakeEngine())
    engine.update_challenge("chal-1", vm_status="stopped")
    vm_id = engine.state.challenges["chal-1"].vm_id
    assert vm_id is not None
    engine.update_vm(vm_id, status="stopped")
    assert engine.state.vms[vm_id].kind is VmKind.CHALLENGE
    async with fake_console(engine) as console:
        await select(console, "challenges", "chal-1")
        await console.pilot.press("s")
        await console.until(lambda: engine.sent("start_vm") == [(vm_id,)], "start_vm sent")
