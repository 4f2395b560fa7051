"""Why an action of the main screen cannot act on the selection (`why_not`), and why a
question the operator was asked no longer applies (the `*_stale` checks): pure functions over
a `Selection`, worded for a toast."""

from __future__ import annotations

from validator_tui.control import (
    READ_ONLY_REFUSAL,
    ChallengeRecord,
    HostRecord,
    JobRecord,
    JobState,
)
from validator_tui.sanitize import clean_line
from validator_tui.tui.actions import Owner, actions_of, by_name
from validator_tui.tui.format import short_id
from validator_tui.tui.selection import CHALLENGES, JOBS, Selection, VmTarget

STARTABLE_VM = frozenset({"stopped", "exited"})
STOPPABLE_VM = frozenset({"running", "stopping"})
#: The refusal of every command in a read-only console.
READ_ONLY = READ_ONLY_REFUSAL
#: The main screen's own actions (the footer dims those that do not apply).
MAIN_ACTIONS = frozenset(action.name for action in actions_of(Owner.MAIN))


def why_not(name: str, sel: Selection) -> str | None:
    """Why the main screen's action `name` cannot act on `sel` now; None when it can (and
    for actions that are not the main screen's)."""
    if name not in MAIN_ACTIONS:
        return None
    if sel.read_only and not by_name(name).read_only_safe:
        return READ_ONLY
    if name in ("claim_job", "cancel_job"):
        return _job_refusal(name, sel)
    if name == "rebuild_challenge":
        if sel.active_table != CHALLENGES:
            return "select a challenge CVM first (tab to the Challenge CVMs table)"
        return None if sel.challenge is not None else "no challenge CVM yet"
    if name in ("start_vm", "stop_vm", "remove_vm", "copy_vm_id"):
        return _vm_refusal(name, sel)
    if name in ("details", "copy_id"):
        nothing = sel.job is None and sel.challenge is None
        return "nothing selected: select a job or a challenge CVM" if nothing else None
    if name == "next_failed" and not any(job.state is JobState.FAILED for job in sel.jobs.values()):
        return "no failed job in the feed"
    if name == "clear_filter":
        if sel.events_searched:
            return None if sel.search or sel.prompt_open else "no search to clear"
        return None if sel.filter_text or sel.prompt_open else "no filter to clear"
    if name == "orm_query" and not sel.challenges:
        return "no challenge to query yet"
    if name in ("drain_host", "undrain_host"):
        host = sel.host
        if host is None:
            return "select a host in the Hosts panel (or a job or CVM on it)"
        return host_state_refusal(name, host)
    return None


def _job_refusal(name: str, sel: Selection) -> str | None:
    if sel.active_table != JOBS:
        return "select a job in the job feed first"
    job = sel.cursor_job
    if job is None:
        if sel.feed_rows:
            return "no job selected: ↑/↓ picks one"
        return "no job selected" + (": none matches the filter" if sel.jobs else "")
    return job_state_refusal(name, job)


def _vm_refusal(name: str, sel: Selection) -> str | None:
    target = sel.vm
    if target is None:
        job, challenge = sel.job, sel.challenge
        if job is not None:
            return f"job {short_id(job.id)} has no VM"
        if challenge is not None:
            return f"{clean_line(challenge.name or challenge.id, 60)} has no CVM yet"
        return "select a job or a challenge CVM with a VM"
    return None if name == "copy_vm_id" else vm_state_refusal(name, target, sel)


def _job_now(job: JobRecord, meanwhile: bool) -> str:
    """`job 1234abcd is completed`, or as news: `job 1234abcd completed meanwhile`."""
    if meanwhile:
        return f"job {short_id(job.id)} {job.state.value} meanwhile"
    return f"job {short_id(job.id)} is {job.state.value}"


def job_state_refusal(name: str, job: JobRecord, *, meanwhile: bool = False) -> str | None:
    """Why job action `name` cannot act on `job` in its state (`meanwhile`: worded as a change
    since the operator was asked)."""
    if name == "claim_job" and job.state is not JobState.PENDING:
        return f"{_job_now(job, meanwhile)}: only a pending job can be claimed"
    if name == "cancel_job":
        if job.state is JobState.PENDING:
            return f"{_job_now(job, meanwhile)}: it is not claimed, there is nothing to cancel"
        if job.state.finished:
            if meanwhile:
                return f"{_job_now(job, meanwhile)}: nothing to cancel"
            return (
                f"job {short_id(job.id)} is already {job.state.value}: there is nothing to cancel"
            )
    return None


def host_state_refusal(name: str, host: HostRecord, *, meanwhile: bool = False) -> str | None:
    """Why host action `name` cannot act on `host` in its state (`meanwhile`: since asked)."""
    shown = f"host {clean_line(host.id, 40)} is {'now ' if meanwhile else ''}{host.state.value}"
    if name == "drain_host" and host.draining:
        return f"{shown}: it is already being drained"
    if name == "undrain_host" and not host.draining:
        return f"{shown}: only a drained or draining host can be undrained"
    return None


def vm_state_refusal(
    name: str, target: VmTarget, sel: Selection, *, meanwhile: bool = False
) -> str | None:
    """Why VM action `name` cannot act on `target` as `sel` knows it (`meanwhile`: worded as
    a change since the operator was asked)."""
    job = target.job
    if job is not None and job.state.finished and target.vm_id not in sel.vms:
        return f"{_job_now(job, meanwhile)}: its VM was removed when the job finished"
    status = sel.vm_status(target.vm_id)
    shown = f"VM {short_id(target.vm_id)} is {'now ' if meanwhile else ''}"
    shown += clean_line(status, 40) or "in an unknown state"
    if name == "start_vm" and status not in STARTABLE_VM:
        return f"{shown}: only a stopped VM can be started"
    if name == "stop_vm" and status not in STOPPABLE_VM:
        return f"{shown}: only a running VM can be stopped"
    return None


def job_question_stale(asked: JobRecord, sel: Selection) -> str | None:
    """Why cancelling `asked` (as the question showed it) no longer applies in `sel`."""
    job = sel.jobs.get(asked.id)
    if job is None:
        return f"job {short_id(asked.id)} left the feed meanwhile"
    return job_state_refusal("cancel_job", job, meanwhile=True)


def vm_question_stale(name: str, asked: VmTarget, sel: Selection) -> str | None:
    """Why VM action `name` on `asked` (as the question showed it) no longer applies in
    `sel`: its job finished, its CVM was replaced or removed, or the VM's status changed."""
    if asked.job is not None:
        job = sel.jobs.get(asked.job.id)
        if job is None:
            return f"job {short_id(asked.job.id)} left the feed meanwhile"
        ended = job.state.finished and not asked.job.state.finished
        if ended and asked.vm_id in sel.vms:
            return (
                f"{_job_now(job, True)}: the engine removes its VM as the job ends "
                "(ask again if the VM stays)"
            )
        return vm_state_refusal(name, VmTarget(asked.vm_id, job=job), sel, meanwhile=True)
    challenge = sel.challenges.get(asked.challenge.id if asked.challenge else "")
    if challenge is None:
        return f"{asked.label} left the active list meanwhile"
    shown = clean_line(challenge.name or challenge.id, 60)
    if challenge.vm_id != asked.vm_id:
        if not challenge.vm_id:
            return f"the CVM of {shown} was removed meanwhile"
        return f"the CVM of {shown} was replaced meanwhile (VM {short_id(challenge.vm_id)})"
    current = VmTarget(asked.vm_id, challenge=challenge)
    return vm_state_refusal(name, current, sel, meanwhile=True)


def challenge_question_stale(asked: ChallengeRecord, sel: Selection) -> str | None:
    """Why rebuilding `asked` no longer applies in `sel`: it left the active list."""
    if asked.id in sel.challenges:
        return None
    return f"{clean_line(asked.name or asked.id, 60)} left the active list meanwhile"


def host_question_stale(name: str, asked: HostRecord, sel: Selection) -> str | None:
    """Why host action `name` on `asked` no longer applies in `sel` (it left, or its state
    did)."""
    host = sel.hosts.get(asked.id)
    if host is None:
        return f"host {clean_line(asked.id, 40)} left the pool meanwhile"
    return host_state_refusal(name, host, meanwhile=True)
