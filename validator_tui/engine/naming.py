"""VM names that carry their owner: `vt-<hotkey[:8]>-ch-<id>` and `vt-<hotkey[:8]>-job-<id>`."""

from __future__ import annotations

import hashlib
import re

_SAFE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _safe_part(value: str) -> str:
    """`value` if it is safe in a dstack VM name, else a stable hash of it."""
    if _SAFE.match(value):
        return value
    return "h" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class VmNaming:
    """Builds and recognises the names of the VMs owned by one hotkey."""

    def __init__(self, hotkey: str) -> None:
        self.prefix = f"vt-{hotkey[:8]}-"
        self.challenge_prefix = self.prefix + "ch-"
        self.job_prefix = self.prefix + "job-"

    def challenge_vm(self, challenge_id: str) -> str:
        return self.challenge_prefix + _safe_part(challenge_id)

    def job_vm(self, job_id: str) -> str:
        return self.job_prefix + _safe_part(job_id)

    def owns(self, name: str) -> bool:
        return name.startswith(self.prefix)

    def is_job_vm(self, name: str) -> bool:
        return name.startswith(self.job_prefix)

    def is_challenge_vm(self, name: str) -> bool:
        return name.startswith(self.challenge_prefix)

    def challenge_of(self, name: str) -> str:
        return name[len(self.challenge_prefix) :]
