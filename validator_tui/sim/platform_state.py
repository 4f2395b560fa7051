"""The Platform API simulator's world: challenges, jobs, results; seeded and deterministic.

Pure state and rules (no I/O): the HTTP layer in `platform_api.py` maps outcomes to responses.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from validator_tui.models.platform import JobResults, OrmQueryRequest
from validator_tui.sim.platform_compose import commit_for, compose_for, tampered
from validator_tui.sim.platform_orm import ChallengeDb, QueryError

JOB_HISTORY_LIMIT = 20_000
AGENTS_PER_CHALLENGE = 4
_SS58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_NAMES = ("term-bench", "code-arena", "math-forge", "sql-golf", "agent-maze", "prompt-duel")
_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass
class SimChallenge:
    id: str
    name: str
    mechanism_id: int
    emission_share: float
    db: ChallengeDb
    version: int = 1
    commit: str = ""
    compose_hash: str = ""
    active: bool = True


@dataclass
class SimJob:
    id: str
    challenge_id: str
    submission_id: str
    miner_hotkey: str
    code: str
    created_at: str
    status: str = "pending"
    claimed_by: str | None = None
    announced_ns: int | None = None
    claim_received_ns: int | None = None
    announce_written: bool = field(default=False, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """The control view of the job (what `PlatformSimulator.job` returns), with its code."""
        return {
            "id": self.id,
            "challenge_id": self.challenge_id,
            "submission_id": self.submission_id,
            "miner_hotkey": self.miner_hotkey,
            "code": self.code,
            "status": self.status,
            "claimed_by": self.claimed_by,
            "announced_ns": self.announced_ns,
            "claim_received_ns": self.claim_received_ns,
            "created_at": self.created_at,
        }

    def wire(self) -> dict[str, Any]:
        """The job as `GET /jobs/pending` lists it."""
        return {
            "id": self.id,
            "challenge_id": self.challenge_id,
            "submission_id": self.submission_id,
            "miner_hotkey": self.miner_hotkey,
            "status": self.status,
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class Reply:
    """An HTTP outcome: status and JSON body (None = no body)."""

    status: int
    body: dict[str, Any] | None = None


def _error(status: int, message: str) -> Reply:
    return Reply(status, {"error": message})


class PlatformState:
    """Challenges, jobs and accepted results; ids and data drawn from `random.Random(seed)`."""

    def __init__(self, seed: int, pending_limit: int) -> None:
        self.seed = seed
        self.pending_limit = pending_limit
        self.base_url = ""
        self.rng = random.Random(seed)
        self.challenges: dict[str, SimChallenge] = {}
        self.jobs: dict[str, SimJob] = {}
        self.results: dict[str, list[dict[str, Any]]] = {}
        self.stats: Counter[str] = Counter()
        self._composes: dict[tuple[str, str], bytes] = {}
        self._pending: dict[str, None] = {}
        #: Entries listed as pending that no claim can take (another validator's leftovers).
        self._unclaimable: dict[str, SimJob] = {}
        self._finished: dict[str, None] = {}
        self._job_count = 0

    # identities and data

    def new_id(self) -> str:
        """A uuid4-shaped id from the seeded generator."""
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def new_hotkey(self) -> str:
        """A plausible SS58-looking hotkey ("5", one of C-H, then 46 base58 characters)."""
        tail = "".join(self.rng.choice(_SS58_ALPHABET) for _ in range(46))
        return "5" + self.rng.choice("CDEFGH") + tail

    def _new_code(self, number: int, hotkey: str) -> str:
        weights = ", ".join(f"{self.rng.uniform(-1, 1):.3f}" for _ in range(3))
        return (
            f"# submission {number} by {hotkey[:8]}\n"
            "def solve(task):\n"
            f"    weights = [{weights}]\n"
            "    return sum(w * x for w, x in zip(weights, task))\n"
        )

    # challenges

    def add_challenge(self, name: str | None = None) -> SimChallenge:
        """Create an active challenge with its database and first compose version."""
        index = len(self.challenges)
        if name is None:
            name = _NAMES[index] if index < len(_NAMES) else f"challenge-{index + 1}"
        if any(challenge.name == name for challenge in self.challenges.values()):
            raise ValueError(f"challenge name {name!r} already exists")
        challenge = SimChallenge(
            id=self.new_id(),
            name=name,
            mechanism_id=index % 2 + 1,
            emission_share=round(self.rng.uniform(0.1, 0.6), 3),
            db=ChallengeDb(),
        )
        challenge.db.seed_agents(
            self.rng, [self.new_hotkey() for _ in range(AGENTS_PER_CHALLENGE)], name
        )
        self._publish_compose(challenge, bad_hash=False)
        self.challenges[challenge.id] = challenge
        return challenge

    def _publish_compose(self, challenge: SimChallenge, *, bad_hash: bool) -> None:
        compose = compose_for(self.seed, challenge.name, challenge.version)
        challenge.commit = commit_for(self.seed, challenge.name, challenge.version)
        challenge.compose_hash = hashlib.sha256(compose).hexdigest()
        self._composes[(challenge.name, challenge.commit)] = (
            tampered(compose) if bad_hash else compose
        )

    def challenge(self, challenge_id: str) -> SimChallenge:
        """The challenge (active or removed); KeyError if unknown."""
        try:
            return self.challenges[challenge_id]
        except KeyError:
            raise KeyError(f"unknown challenge {challenge_id!r}") from None

    def update_challenge(self, challenge_id: str, *, bad_hash: bool = False) -> SimChallenge:
        """Publish the next compose version under a new commit (bytes tampered if bad_hash)."""
        challenge = self.challenge(challenge_id)
        challenge.version += 1
        self._publish_compose(challenge, bad_hash=bad_hash)
        return challenge

    def remove_challenge(self, challenge_id: str) -> None:
        """Take the challenge off the active list (its composes stay served)."""
        self.challenge(challenge_id).active = False

    def challenge_dict(self, challenge: SimChallenge) -> dict[str, Any]:
        """The challenge as `GET /challenges/active` lists it."""
        return {
            "id": challenge.id,
            "name": challenge.name,
            "status": "active" if challenge.active else "inactive",
            "github_repo": f"{self.base_url}/repos/{challenge.name}",
            "github_commit": challenge.commit,
            "compose_hash": challenge.compose_hash,
            "mechanism_id": challenge.mechanism_id,
            "emission_share": challenge.emission_share,
        }

    def active_challenges(self) -> list[SimChallenge]:
        return [challenge for challenge in self.challenges.values() if challenge.active]

    def compose(self, name: str, commit: str) -> bytes | None:
        """The served app-compose.json bytes of a challenge at a commit, if any."""
        return self._composes.get((name, commit))

    # jobs

    def add_job(
        self,
        challenge_id: str | None = None,
        code: str | None = None,
        miner_hotkey: str | None = None,
    ) -> SimJob:
        """Create a pending job and its submission row (in the challenge's database)."""
        if challenge_id is None:
            active = self.active_challenges()
            if not active:
                raise ValueError("no active challenge to add a job to")
            challenge = self.rng.choice(active)
        else:
            challenge = self.challenge(challenge_id)
            if not challenge.active:
                raise ValueError(f"challenge {challenge_id!r} is not active")
        self._job_count += 1
        hotkey = miner_hotkey or self.new_hotkey()
        job = SimJob(
            id=self.new_id(),
            challenge_id=challenge.id,
            submission_id=self.new_id(),
            miner_hotkey=hotkey,
            code=self._new_code(self._job_count, hotkey) if code is None else code,
            created_at=(_EPOCH + timedelta(seconds=self._job_count))
            .isoformat()
            .replace("+00:00", "Z"),
        )
        challenge.db.add_submission(job.submission_id, hotkey, job.code, job.created_at)
        self.jobs[job.id] = job
        self._pending[job.id] = None
        self._trim_history()
        return job

    def job(self, job_id: str) -> SimJob:
        """The job; KeyError if unknown (or dropped from history)."""
        try:
            return self.jobs[job_id]
        except KeyError:
            raise KeyError(f"unknown job {job_id!r}") from None

    def add_unclaimable(self, count: int, challenge_id: str | None = None) -> list[str]:
        """List `count` pending entries whose claim answers 404 "job not found" (the leftovers
        of another validator): listed before every real job, never announced, never claimable.
        Returns their ids."""
        active = self.active_challenges()
        if challenge_id is None and not active:
            raise ValueError("no active challenge to list entries of")
        ids = []
        for _ in range(count):
            challenge = self.challenge(challenge_id) if challenge_id else self.rng.choice(active)
            job = SimJob(
                id=self.new_id(),
                challenge_id=challenge.id,
                submission_id=self.new_id(),
                miner_hotkey=self.new_hotkey(),
                code="",
                created_at=_EPOCH.isoformat().replace("+00:00", "Z"),
            )
            self._unclaimable[job.id] = job
            ids.append(job.id)
        return ids

    def pending_jobs(self) -> list[SimJob]:
        """Pending entries, oldest first (unclaimable ones, then unclaimed jobs), at most
        `pending_limit`."""
        out = list(self._unclaimable.values())[: self.pending_limit]
        for job_id in self._pending:
            if len(out) >= self.pending_limit:
                break
            out.append(self.jobs[job_id])
        return out

    def cancel_job(self, job_id: str) -> bool:
        """Cancel a pending or claimed job; False if it was already cancelled.

        ValueError if it has already completed.
        """
        job = self.job(job_id)
        if job.status == "cancelled":
            return False
        if job.status == "completed":
            raise ValueError(f"job {job_id!r} has already completed")
        job.status = "cancelled"
        self._finish(job)
        return True

    def claim(self, job_id: str, hotkey: str, received_ns: int) -> Reply:
        """`POST /jobs/{id}/claim` by `hotkey`, received at `received_ns` (time.monotonic_ns,
        kept as the job's first claim_received_ns): 200, 404, 409 or 410."""
        job = self.jobs.get(job_id)
        if job is None:
            self.stats["claims_not_found"] += 1
            return _error(404, "job not found")
        if job.claim_received_ns is None:
            job.claim_received_ns = received_ns
        if job.status == "cancelled":
            self.stats["claims_conflict"] += 1
            return _error(410, "job cancelled")
        if job.status != "pending":
            self.stats["claims_conflict"] += 1
            return _error(409, "job already claimed")
        job.status = "claimed"
        job.claimed_by = hotkey
        self._pending.pop(job.id, None)
        self.stats["claims_ok"] += 1
        return Reply(
            200,
            {
                "id": job.id,
                "challenge_id": job.challenge_id,
                "submission_id": job.submission_id,
                "status": "claimed",
            },
        )

    def submit(self, job_id: str, hotkey: str, body: bytes) -> Reply:
        """`POST /jobs/{id}/results` by `hotkey`: 204, 403, 404, 409, 410 or 422."""
        job = self.jobs.get(job_id)
        if job is None:
            return self._rejected(_error(404, "job not found"))
        try:
            results = JobResults.model_validate_json(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "body"
            return self._rejected(_error(422, f"invalid results: {where}: {first['msg']}"))
        if job.status == "cancelled":
            return self._rejected(_error(410, "job cancelled"))
        if job.claimed_by != hotkey:
            return self._rejected(_error(403, "job is not claimed by this validator"))
        if job.status == "completed":
            return self._rejected(_error(409, "results already submitted"))
        job.status = "completed"
        self.results.setdefault(job.id, []).append(results.model_dump(mode="json"))
        self._finish(job)
        self.stats["results_accepted"] += 1
        return Reply(204)

    def orm_query(self, challenge_id: str, body: bytes) -> Reply:
        """`POST /challenges/{id}/orm/query`: 200 with the rows, 400 or 404."""
        self.stats["orm_queries"] += 1
        challenge = self.challenges.get(challenge_id)
        if challenge is None:
            return _error(404, "challenge not found")
        try:
            query = OrmQueryRequest.model_validate_json(body)
        except ValidationError as exc:
            return _error(400, f"invalid query body: {exc.errors()[0]['msg']}")
        try:
            rows = challenge.db.query(query.query, query.params)
        except QueryError as exc:
            self.stats["orm_refused"] += 1
            return _error(400, f"query refused: {exc}")
        return Reply(200, {"rows": rows})

    def _rejected(self, reply: Reply) -> Reply:
        self.stats["results_rejected"] += 1
        return reply

    def _finish(self, job: SimJob) -> None:
        self._pending.pop(job.id, None)
        self._finished[job.id] = None

    def _trim_history(self) -> None:
        """Keep at most JOB_HISTORY_LIMIT jobs by forgetting the oldest finished ones."""
        while len(self.jobs) > JOB_HISTORY_LIMIT and self._finished:
            job_id = next(iter(self._finished))
            del self._finished[job_id]
            job = self.jobs.pop(job_id)
            self.results.pop(job_id, None)
            self.challenges[job.challenge_id].db.remove_submission(job.submission_id)
