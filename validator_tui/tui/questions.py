"""What the actions that ask first (`Action.confirm` in the action table) ask: the question,
its detail and buttons, built from the selection, and how the question goes stale."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from validator_tui.control import HostState
from validator_tui.sanitize import clean_line
from validator_tui.tui import refusals
from validator_tui.tui.format import short_id
from validator_tui.tui.screens.quit import running_jobs_text, stop_consequences
from validator_tui.tui.selection import Selection


def _never_stale(_sel: Selection) -> str | None:
    return None


@dataclass(frozen=True, slots=True)
class Ask:
    """A confirm question: `subject` is the id the action acts on; `stale` says why, in a later
    selection, the action no longer applies to what was asked about (None while it does)."""

    question: str
    detail: str
    label: str
    decline: str = "Keep it"
    subject: str = ""
    stale: Callable[[Selection], str | None] = _never_stale


def ask(name: str, sel: Selection) -> Ask | None:
    """The question action `name` asks about `sel` (None: it has nothing to ask about)."""
    return QUESTIONS[name](sel)


def _cancel_job(sel: Selection) -> Ask | None:
    job = sel.job
    if job is None:
        return None
    vm = f"its VM {short_id(job.vm_id)} is removed" if job.vm_id else "its VM is removed"
    return Ask(
        f"Cancel job {short_id(job.id)} ({job.state.value})?",
        f"The job stops: {vm} and the platform gets the error result "
        "“cancelled by operator” (score 0). It counts as cancelled, not failed.",
        "Cancel job",
        subject=job.id,
        stale=lambda now: refusals.job_question_stale(job, now),
    )


def _rebuild_challenge(sel: Selection) -> Ask | None:
    challenge = sel.challenge
    if challenge is None:
        return None
    name = clean_line(challenge.name or challenge.id, 60)
    running = challenge.jobs_running
    old = short_id(challenge.vm_id)
    return Ask(
        f"Rebuild the CVM of {name}?",
        "A fresh CVM is provisioned from the challenge's verified compose; once it is "
        f"active the engine switches to it and removes the old one ({old}). Jobs of {name} "
        "are not claimed until the new CVM is active"
        + (f"; the {running} running in their own VMs go on." if running else "."),
        "Rebuild CVM",
        subject=challenge.id,
        stale=lambda now: refusals.challenge_question_stale(challenge, now),
    )


def _stop_vm(sel: Selection) -> Ask | None:
    target = sel.vm
    if target is None:
        return None
    if target.job is not None:
        what = (
            f"Job {short_id(target.job.id)} ({target.job.state.value}) runs in it: the job "
            "fails and the platform gets its error result (score 0). To end a job, cancel "
            "it (x) instead."
        )
        question = f"Stop the VM of job {short_id(target.job.id)}?"
    else:
        name = clean_line(target.challenge.name if target.challenge else "", 60)
        what = (
            f"The challenge CVM of {name} stops and stays stopped until you start it (s) or "
            f"rebuild it (r); no job of {name} is claimed meanwhile. Jobs already running "
            "in their own VMs go on."
        )
        question = f"Stop the CVM of {name}?"
    return Ask(
        question,
        f"{target.label}\n{what}",
        "Stop VM",
        subject=target.vm_id,
        stale=lambda now: refusals.vm_question_stale("stop_vm", target, now),
    )


def _remove_vm(sel: Selection) -> Ask | None:
    target = sel.vm
    if target is None:
        return None
    if target.job is not None:
        what = (
            f"The VM and its disk are deleted. Job {short_id(target.job.id)} "
            f"({target.job.state.value}) fails and the platform gets its error result "
            "(score 0)."
            if target.job.state.active
            else "The VM and its disk are deleted; its job is already finished."
        )
        question = f"Remove the VM of job {short_id(target.job.id)}?"
    else:
        name = clean_line(target.challenge.name if target.challenge else "", 60)
        what = (
            f"The challenge CVM of {name} and its disk are deleted. The engine provisions a "
            f"fresh CVM for {name} at its next challenge check (a boot takes minutes); jobs "
            f"of {name} wait until it is active."
        )
        question = f"Remove the CVM of {name}?"
    return Ask(
        question,
        f"{target.label}\n{what}",
        "Remove VM",
        subject=target.vm_id,
        stale=lambda now: refusals.vm_question_stale("remove_vm", target, now),
    )


def _drain_host(sel: Selection) -> Ask | None:
    host = sel.host
    if host is None:
        return None
    name = clean_line(host.id, 40)
    cvms = sum(1 for c in sel.challenges.values() if c.host == host.id)
    running = sum(1 for j in sel.jobs.values() if j.state.active and j.host == host.id)
    others = [h for h in sel.hosts.values() if h.id != host.id and h.state is HostState.UP]
    where = (
        "to other hosts (a new CVM is active there before the old one is removed)"
        if others
        else "once another host takes VMs (none does now: they stay meanwhile)"
    )
    return Ask(
        f"Drain host {name}?",
        f"No new VM is placed on {name}. Its {cvms} challenge CVM(s) move {where}; its "
        f"{running} running job(s) finish there. Then it shows drained, until you undrain "
        "it (H). The drain is kept across restarts.",
        "Drain host",
        subject=host.id,
        stale=lambda now: refusals.host_question_stale("drain_host", host, now),
    )


def _undrain_host(sel: Selection) -> Ask | None:
    host = sel.host
    if host is None:
        return None
    name = clean_line(host.id, 40)
    return Ask(
        f"Return host {name} to the pool?",
        f"{name} is {host.state.value}: new job VMs and challenge CVMs may be placed on it "
        "again (CVMs that moved away stay where they are).",
        "Undrain host",
        decline="Keep it drained",
        subject=host.id,
        stale=lambda now: refusals.host_question_stale("undrain_host", host, now),
    )


def _stop_validator(sel: Selection) -> Ask:
    running = sel.running_jobs()
    closing = (
        "The console closes once the engine is stopping."
        if sel.embedded
        else "The engine stops; this console closes (there is nothing left to attach to)."
    )
    return Ask(
        f"Stop the validator? {running_jobs_text(running).capitalize()}.",
        f"{stop_consequences(running)}\n{closing}",
        "Stop validator",
        decline="Keep it running",
    )


#: The question of each action that asks first (`Action.confirm`).
QUESTIONS: dict[str, Callable[[Selection], Ask | None]] = {
    "cancel_job": _cancel_job,
    "rebuild_challenge": _rebuild_challenge,
    "stop_vm": _stop_vm,
    "remove_vm": _remove_vm,
    "drain_host": _drain_host,
    "undrain_host": _undrain_host,
    "stop_validator": _stop_validator,
}
