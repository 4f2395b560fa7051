"""The main screen's refusal rules and confirm questions, as pure functions over a `Selection`
(no app, no Pilot): each action says why it cannot act, in the words the console shows, and a
question says why it went stale."""

from __future__ import annotations

from dataclasses import replace

import pytest

from validator_tui.control import (
    ChallengeRecord,
    HostRecord,
    HostState,
    JobRecord,
    JobState,
    VmKind,
    VmRecord,
)
from validator_tui.tui.actions import ACTIONS, Owner
from validator_tui.tui.handlers import HANDLERS, ON_YES
from validator_tui.tui.questions import QUESTIONS, ask
from validator_tui.tui.refusals import MAIN_ACTIONS, READ_ONLY, why_not
from validator_tui.tui.selection import CHALLENGES, HOSTS, JOBS, Selection

JOB_ID = "1234abcd-0000-4000-8000-000000000001"
VM_ID = "feedbeef-0000-4000-8000-000000000002"
CVM_ID = "cafe0123-0000-4000-8000-000000000003"


def job(state: JobState, *, vm_id: str | None = None, host: str = "") -> JobRecord:
    return JobRecord(JOB_ID, "chal-1", state=state, vm_id=vm_id, host=host)


def cvm(vm_id: str | None = CVM_ID, vm_status: str = "running") -> ChallengeRecord:
    return ChallengeRecord("chal-1", "term-bench", vm_id=vm_id, vm_status=vm_status)


def on_job(record: JobRecord, **fields: object) -> Selection:
    """The job feed active with `record` under its cursor."""
    vms = (
        {record.vm_id: VmRecord(record.vm_id, "vm", VmKind.JOB, record.id)} if record.vm_id else {}
    )
    base = Selection(JOBS, cursor_job=record, jobs={record.id: record}, feed_rows=1, vms=vms)
    return replace(base, **fields)  # type: ignore[arg-type]


def on_challenge(record: ChallengeRecord) -> Selection:
    """The Challenge CVMs table active with `record` under its cursor."""
    return Selection(CHALLENGES, cursor_challenge=record, challenges={record.id: record})


def on_host(host: HostRecord) -> Selection:
    return Selection(HOSTS, cursor_host=host, hosts={host.id: host})


@pytest.mark.parametrize(
    ("state", "name", "reason"),
    [
        (JobState.COMPLETED, "claim_job", "is completed: only a pending job can be claimed"),
        (JobState.RUNNING, "claim_job", "is running: only a pending job can be claimed"),
        (JobState.FAILED, "cancel_job", "is already failed: there is nothing to cancel"),
        (JobState.CANCELLED, "cancel_job", "is already cancelled: there is nothing to cancel"),
        (
            JobState.PENDING,
            "cancel_job",
            "is pending: it is not claimed, there is nothing to cancel",
        ),
        (JobState.PENDING, "claim_job", None),
        (JobState.RUNNING, "cancel_job", None),
    ],
)
def test_job_actions_say_why_the_jobs_state_refuses_them(
    state: JobState, name: str, reason: str | None
) -> None:
    assert why_not(name, on_job(job(state))) == (
        None if reason is None else f"job 1234abcd {reason}"
    )


def test_job_actions_without_a_job_say_what_to_select() -> None:
    assert why_not("claim_job", on_challenge(cvm())) == "select a job in the job feed first"
    shown_none = Selection(JOBS, feed_rows=0)
    assert why_not("claim_job", shown_none) == "no job selected"
    filtered = Selection(JOBS, jobs={JOB_ID: job(JobState.PENDING)}, feed_rows=0)
    assert why_not("claim_job", filtered) == "no job selected: none matches the filter"
    no_cursor = Selection(JOBS, jobs={JOB_ID: job(JobState.PENDING)}, feed_rows=1)
    assert why_not("cancel_job", no_cursor) == "no job selected: ↑/↓ picks one"


def test_vm_actions_say_why_the_vm_cannot_be_acted_on() -> None:
    for name in ("start_vm", "stop_vm", "remove_vm", "copy_vm_id"):
        assert why_not(name, on_job(job(JobState.PENDING))) == "job 1234abcd has no VM"
        assert why_not(name, on_challenge(cvm(vm_id=None))) == "term-bench has no CVM yet"
        assert why_not(name, Selection(JOBS)) == "select a job or a challenge CVM with a VM"
    running = on_challenge(cvm())
    assert (
        why_not("start_vm", running) == "VM cafe0123 is running: only a stopped VM can be started"
    )
    assert why_not("stop_vm", running) is None
    stopped = on_challenge(cvm(vm_status="stopped"))
    assert why_not("stop_vm", stopped) == "VM cafe0123 is stopped: only a running VM can be stopped"
    assert why_not("start_vm", stopped) is None
    unknown = on_job(job(JobState.RUNNING, vm_id=VM_ID))
    assert why_not("stop_vm", unknown) == (
        "VM feedbeef is in an unknown state: only a running VM can be stopped"
    )
    gone = on_job(job(JobState.FAILED, vm_id=VM_ID), vms={})
    assert why_not("remove_vm", gone) == (
        "job 1234abcd is failed: its VM was removed when the job finished"
    )
    assert why_not("copy_vm_id", gone) is None


def test_selection_actions_say_what_is_missing() -> None:
    assert why_not("rebuild_challenge", on_job(job(JobState.RUNNING))) == (
        "select a challenge CVM first (tab to the Challenge CVMs table)"
    )
    assert why_not("rebuild_challenge", Selection(CHALLENGES)) == "no challenge CVM yet"
    assert why_not("rebuild_challenge", on_challenge(cvm())) is None
    for name in ("details", "copy_id"):
        assert why_not(name, Selection(JOBS)) == (
            "nothing selected: select a job or a challenge CVM"
        )
        assert why_not(name, on_challenge(cvm())) is None
    assert why_not("orm_query", Selection(JOBS)) == "no challenge to query yet"
    assert why_not("orm_query", on_challenge(cvm())) is None
    assert why_not("next_failed", on_job(job(JobState.RUNNING))) == "no failed job in the feed"
    assert why_not("next_failed", on_job(job(JobState.FAILED))) is None


def test_escape_clears_the_filter_or_the_search_that_is_in_force() -> None:
    assert why_not("clear_filter", Selection()) == "no filter to clear"
    assert why_not("clear_filter", Selection(filter_text="x")) is None
    assert why_not("clear_filter", Selection(prompt_open=True)) is None
    assert why_not("clear_filter", Selection(events_searched=True)) == "no search to clear"
    assert why_not("clear_filter", Selection(events_searched=True, search="boot")) is None
    assert why_not("clear_filter", Selection(events_searched=True, filter_text="x")) == (
        "no search to clear"
    )


def test_host_actions_follow_the_hosts_draining_state() -> None:
    up, draining = HostRecord("tdx-a", "http://a"), HostRecord("tdx-b", "http://b")
    draining = replace(draining, state=HostState.DRAINING, draining=True)
    assert why_not("drain_host", on_host(up)) is None
    assert why_not("undrain_host", on_host(up)) == (
        "host tdx-a is up: only a drained or draining host can be undrained"
    )
    assert why_not("drain_host", on_host(draining)) == (
        "host tdx-b is draining: it is already being drained"
    )
    assert why_not("drain_host", Selection(HOSTS)) == (
        "select a host in the Hosts panel (or a job or CVM on it)"
    )
    on_its_job = on_job(job(JobState.RUNNING, host="tdx-b"), hosts={"tdx-a": up, "tdx-b": draining})
    assert why_not("undrain_host", on_its_job) is None


def test_a_read_only_console_refuses_every_command_and_only_those() -> None:
    sel = replace(on_job(job(JobState.PENDING)), read_only=True)
    for action in ACTIONS:
        if action.owner is Owner.MAIN:
            refused = why_not(action.name, sel) == READ_ONLY
            assert refused is not action.read_only_safe, action.name


def test_actions_of_other_owners_are_never_refused() -> None:
    others = {action.name for action in ACTIONS} - MAIN_ACTIONS
    assert others and all(why_not(name, Selection(read_only=True)) is None for name in others)


def test_every_action_that_asks_first_has_its_question() -> None:
    assert set(QUESTIONS) == {action.name for action in ACTIONS if action.confirm}


def test_every_main_screen_action_has_one_handler_of_its_kind() -> None:
    asks_first = {action.name for action in ACTIONS if action.confirm}
    assert set(ON_YES) == asks_first
    assert set(HANDLERS) == MAIN_ACTIONS - asks_first
    main_bindings = {action.binding_action for action in ACTIONS if action.owner is Owner.MAIN}
    assert main_bindings == {f"run({name!r})" for name in MAIN_ACTIONS}


def test_a_cancel_question_goes_stale_when_the_job_ends_or_leaves() -> None:
    question = ask("cancel_job", on_job(job(JobState.RUNNING, vm_id=VM_ID)))
    assert question is not None and question.subject == JOB_ID
    assert question.question == "Cancel job 1234abcd (running)?"
    assert "its VM feedbeef is removed" in question.detail
    assert question.stale(on_job(job(JobState.RUNNING, vm_id=VM_ID))) is None
    assert question.stale(on_job(job(JobState.COMPLETED))) == (
        "job 1234abcd completed meanwhile: nothing to cancel"
    )
    assert question.stale(Selection()) == "job 1234abcd left the feed meanwhile"


def test_a_vm_question_goes_stale_when_the_job_ends_or_the_cvm_changes() -> None:
    on_vm = ask("remove_vm", on_job(job(JobState.RUNNING, vm_id=VM_ID)))
    assert on_vm is not None and on_vm.subject == VM_ID
    assert on_vm.stale(on_job(job(JobState.FAILED, vm_id=VM_ID))) == (
        "job 1234abcd failed meanwhile: the engine removes its VM as the job ends "
        "(ask again if the VM stays)"
    )
    assert on_vm.stale(on_job(job(JobState.FAILED, vm_id=VM_ID), vms={})) == (
        "job 1234abcd failed meanwhile: its VM was removed when the job finished"
    )
    on_cvm = ask("stop_vm", on_challenge(cvm()))
    assert on_cvm is not None and on_cvm.question == "Stop the CVM of term-bench?"
    assert on_cvm.stale(on_challenge(cvm())) is None
    assert on_cvm.stale(on_challenge(cvm(vm_status="stopped"))) == (
        "VM cafe0123 is now stopped: only a running VM can be stopped"
    )
    assert on_cvm.stale(on_challenge(cvm(vm_id="f" * 36))) == (
        "the CVM of term-bench was replaced meanwhile (VM ffffffff)"
    )
    assert on_cvm.stale(on_challenge(cvm(vm_id=None))) == (
        "the CVM of term-bench was removed meanwhile"
    )
    assert on_cvm.stale(Selection()) == f"term-bench · {CVM_ID} left the active list meanwhile"


def test_rebuild_and_host_questions_go_stale_when_their_subject_leaves_or_changes() -> None:
    rebuild = ask("rebuild_challenge", on_challenge(cvm()))
    assert rebuild is not None and rebuild.subject == "chal-1"
    assert rebuild.stale(Selection()) == "term-bench left the active list meanwhile"
    host = HostRecord("tdx-b", "http://b")
    drain = ask("drain_host", on_host(host))
    assert drain is not None and drain.question == "Drain host tdx-b?"
    assert "once another host takes VMs" in drain.detail
    now_draining = replace(host, state=HostState.DRAINING, draining=True)
    assert drain.stale(on_host(now_draining)) == (
        "host tdx-b is now draining: it is already being drained"
    )
    assert drain.stale(Selection()) == "host tdx-b left the pool meanwhile"


def test_the_stop_question_counts_the_running_jobs_and_never_goes_stale() -> None:
    question = ask("stop_validator", on_job(job(JobState.RUNNING), embedded=False))
    assert question is not None
    assert question.question == "Stop the validator? 1 job is running."
    assert question.detail.endswith(
        "The engine stops; this console closes (there is nothing left to attach to)."
    )
    assert (question.label, question.decline) == ("Stop validator", "Keep it running")
    assert question.stale(Selection()) is None


def test_the_selected_host_is_the_hosts_panels_else_that_of_the_job_else_the_only_one() -> None:
    a, b = HostRecord("tdx-a", "http://a"), HostRecord("tdx-b", "http://b")
    both = {"tdx-a": a, "tdx-b": b}
    assert Selection(HOSTS, cursor_host=b, hosts=both).host == b
    assert on_job(job(JobState.RUNNING, host="tdx-b"), hosts=both).host == b
    assert on_job(job(JobState.RUNNING), hosts=both).host is None
    assert on_job(job(JobState.RUNNING), hosts={"tdx-a": a}).host == a


def test_a_challenge_is_looked_up_with_its_cvm_and_orm_choices_are_sorted_by_name() -> None:
    record = cvm()
    vm = VmRecord(CVM_ID, "cvm", VmKind.CHALLENGE, "chal-1", status="running")
    sel = replace(on_challenge(record), vms={CVM_ID: vm})
    assert sel.challenge_with_vm("chal-1") == (record, vm)
    assert sel.challenge_with_vm("gone") == (None, None)
    other = ChallengeRecord("chal-0", "Arena")
    both = replace(sel, challenges={"chal-1": record, "chal-0": other})
    assert both.orm_choices() == ([("Arena", "chal-0"), ("term-bench", "chal-1")], "chal-1")
    assert replace(both, active_table=HOSTS).orm_choices()[1] is None
