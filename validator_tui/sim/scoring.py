"""The simulators' deterministic evaluator score, shared by the VMM simulator and the tests."""

from __future__ import annotations

import hashlib


def score_for_code(code: str) -> float:
    """A score in [0, 1] that depends only on the submission's code (6 decimals)."""
    digest = hashlib.sha256(code.encode("utf-8", "surrogatepass")).digest()
    return round(int.from_bytes(digest[:4], "big") / 0xFFFFFFFF, 6)
