"""A confirm dialog asks about the thing as it was when the key was pressed: when that thing
changes underneath so that the action no longer applies, the dialog closes itself and a toast
says why; `y` never acts on something that is no longer what the question said (FakeEngine)."""

from __future__ import annotations

from tests.support.console import Console, fake_console, job_in, open_dialog, select
from tests.support.fake_engine import FakeEngine, demo_state
from validator_tui.control import HostState, JobState
from validator_tui.tui.screens.confirm import ConfirmScreen

COMMANDS = ("cancel", "stop_vm", "remove_vm", "rebuild", "drain_host", "undrain_host")


def nothing_sent(engine: FakeEngine) -> bool:
    return all(engine.sent(command) == [] for command in COMMANDS)


async def closed_with_toast(console: Console) -> str:
    """Wait until the dialog has closed itself; the toast it left."""
    before = len(console.toasts())
    await console.sync()
    await console.until(lambda: console.app.screen is console.app.main, "the dialog closed")
    await console.until(lambda: len(console.toasts()) > before, "a toast")
    return console.toasts()[-1]


async def test_cancel_dialog_closes_when_the_job_completes_meanwhile() -> None:
    engine = demo_state(FakeEngine())
    job_id = job_in(engine, JobState.RUNNING)
    async with fake_console(engine) as console:
        await select(console, "jobs", job_id)
        text, _ = await open_dialog(console, "x")
        assert f"Cancel job {job_id[:8]} (running)?" in text
        engine.update_job(job_id, state=JobState.COMPLETED, score=0.9)
        toast = await closed_with_toast(console)
        assert f"job {job_id[:8]} completed meanwhile: nothing to cancel" in toast
        await console.pilot.press("y")
        assert nothing_sent(engine)


async def test_a_dialog_stays_while_its_job_only_moves_on() -> None:
    engine = demo_state(FakeEngine())
    job_id = job_in(engine, JobState.RUNNING)
    async with fake_console(engine) as console:
        await select(console, "jobs", job_id)
        await open_dialog(console, "x")
        engine.update_job(job_id, state=JobState.SUBMITTING)
        engine.add_job(JobState.PENDING)
        await console.sync()
        assert isinstance(console.app.screen, ConfirmScreen)
        await console.pilot.press("y")
        await console.until(lambda: engine.sent("cancel") == [(job_id,)], "cancel sent")


async def test_remove_vm_dialog_closes_when_the_job_fails_meanwhile() -> None:
    engine = demo_state(FakeEngine())
    job_id = job_in(engine, JobState.RUNNING)
    vm_id = engine.state.jobs[job_id].vm_id
    assert vm_id is not None
    async with fake_console(engine) as console:
        await select(console, "jobs", job_id)
        await open_dialog(console, "D")
        engine.update_job(job_id, state=JobState.FAILED, error="evaluator crashed")
        engine.state.drop_vm(vm_id)
        toast = await closed_with_toast(console)
        assert (
            f"job {job_id[:8]} failed meanwhile: its VM was removed when the job finished" in toast
        )
        assert nothing_sent(engine)


async def test_stop_cvm_dialog_closes_when_the_cvm_stops_or_is_replaced_meanwhile() -> None:
    engine = demo_state(FakeEngine())
    cvm = engine.state.challenges["chal-1"].vm_id
    assert cvm is not None
    async with fake_console(engine) as console:
        await select(console, "challenges", "chal-1")
        await open_dialog(console, "S")
        engine.update_challenge("chal-1", vm_status="stopped")
        toast = await closed_with_toast(console)
        assert f"VM {cvm[:8]} is now stopped: only a running VM can be stopped" in toast

        engine.update_challenge("chal-1", vm_status="running")
        await console.sync()
        await open_dialog(console, "D")
        engine.update_challenge("chal-1", vm_id="f" * 36)
        toast = await closed_with_toast(console)
        assert f"the CVM of term-bench was replaced meanwhile (VM {'f' * 8})" in toast
        assert nothing_sent(engine)


async def test_drain_dialog_closes_when_the_host_is_drained_meanwhile() -> None:
    engine = demo_state(FakeEngine())
    engine.add_host("tdx-a")
    engine.add_host("tdx-b")
    async with fake_console(engine) as console:
        await select(console, "hosts", "tdx-b")
        await open_dialog(console, "h")
        engine.add_host("tdx-b", HostState.DRAINING)
        toast = await closed_with_toast(console)
        assert "host tdx-b is now draining: it is already being drained" in toast
        assert nothing_sent(engine)
