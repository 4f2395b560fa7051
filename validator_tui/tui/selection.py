"""What the operator has selected on the main screen, as a plain value: the rows under the
tables' cursors, which table is active, and the records around them. The refusal rules and
the confirm questions are pure functions over it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from validator_tui.control import ChallengeRecord, HostRecord, JobRecord, VmRecord
from validator_tui.sanitize import clean_line
from validator_tui.tui.format import short_id

JOBS, CHALLENGES, HOSTS = "jobs", "challenges", "hosts"


@dataclass(frozen=True, slots=True)
class VmTarget:
    """The VM an action would act on: a job's VM or a challenge's CVM."""

    vm_id: str
    job: JobRecord | None = None
    challenge: ChallengeRecord | None = None

    @property
    def label(self) -> str:
        """`job 1234abcd · <vm id>` or `term-bench · <vm id>` (sanitised)."""
        if self.job is not None:
            owner = f"job {short_id(self.job.id)}"
        elif self.challenge is not None:
            owner = clean_line(self.challenge.name or self.challenge.id, 60)
        else:
            owner = "VM"
        return f"{owner} · {clean_line(self.vm_id, 80)}"


@dataclass(frozen=True, slots=True)
class Selection:
    """The main screen's selection and what the console knows around it (read, never
    changed: the records are the panels' own)."""

    #: The table the operator last worked in: JOBS, CHALLENGES or HOSTS.
    active_table: str = JOBS
    #: The rows under each table's cursor (whether or not that table is active).
    cursor_job: JobRecord | None = None
    cursor_challenge: ChallengeRecord | None = None
    cursor_host: HostRecord | None = None
    #: The job feed's jobs, the active challenges, the pool's hosts and the known VMs.
    jobs: Mapping[str, JobRecord] = field(default_factory=dict)
    challenges: Mapping[str, ChallengeRecord] = field(default_factory=dict)
    hosts: Mapping[str, HostRecord] = field(default_factory=dict)
    vms: Mapping[str, VmRecord] = field(default_factory=dict)
    #: Rows the job feed shows (after its filter).
    feed_rows: int = 0
    read_only: bool = False
    #: The engine runs in this process (else the console is attached to it).
    embedded: bool = True
    #: The job feed's filter and the event log's search in force.
    filter_text: str = ""
    search: str = ""
    #: The filter/search prompt is open; the prompt and escape act on the event log's search.
    prompt_open: bool = False
    events_searched: bool = False

    @property
    def job(self) -> JobRecord | None:
        """The job under the feed's cursor, when the job feed is the active table."""
        return self.cursor_job if self.active_table == JOBS else None

    @property
    def challenge(self) -> ChallengeRecord | None:
        """The challenge under the CVM table's cursor, when that table is the active one."""
        return self.cursor_challenge if self.active_table == CHALLENGES else None

    @property
    def only_host(self) -> HostRecord | None:
        """The pool's host when it has exactly one (no Hosts panel then)."""
        return next(iter(self.hosts.values())) if len(self.hosts) == 1 else None

    @property
    def host(self) -> HostRecord | None:
        """The host under the Hosts panel's cursor when that table is the active one, else the
        host of the selected job or challenge CVM; with a single host, that host."""
        if self.active_table == HOSTS:
            return self.cursor_host
        job, challenge = self.job, self.challenge
        name = job.host if job is not None else challenge.host if challenge is not None else ""
        return self.hosts.get(name) or self.only_host

    @property
    def vm(self) -> VmTarget | None:
        """The VM of the selection: the selected job's VM or the selected challenge's CVM."""
        job = self.job
        if job is not None and job.vm_id:
            return VmTarget(job.vm_id, job=job)
        challenge = self.challenge
        if challenge is not None and challenge.vm_id:
            return VmTarget(challenge.vm_id, challenge=challenge)
        return None

    def vm_status(self, vm_id: str) -> str:
        """The VM's last known status (from its challenge's record, else the VM list)."""
        for challenge in self.challenges.values():
            if challenge.vm_id == vm_id and challenge.vm_status:
                return challenge.vm_status
        vm = self.vms.get(vm_id)
        return "" if vm is None else vm.status

    def running_jobs(self) -> int:
        """Jobs claimed by this validator and not finished (the feed never drops one)."""
        return sum(1 for job in self.jobs.values() if job.state.active)

    def challenge_with_vm(
        self, challenge_id: str
    ) -> tuple[ChallengeRecord | None, VmRecord | None]:
        """The active challenge `challenge_id` and its CVM's record (None: not known)."""
        challenge = self.challenges.get(challenge_id)
        vm = None if challenge is None or not challenge.vm_id else self.vms.get(challenge.vm_id)
        return challenge, vm

    def orm_choices(self) -> tuple[list[tuple[str, str]], str | None]:
        """The challenges an ORM query may go to, as (name, id) by name, and the one of the
        selected job or challenge CVM (None: nothing selected)."""
        challenges = sorted(
            ((c.name or c.id, c.id) for c in self.challenges.values()),
            key=lambda pair: pair[0].casefold(),
        )
        job, challenge = self.job, self.challenge
        selected = job.challenge_id if job is not None else challenge.id if challenge else None
        return challenges, selected
