"""Deterministic dstack app-compose documents and commit ids for simulated challenges."""

from __future__ import annotations

import hashlib
import json

EVALUATOR_PORT = 8080


def commit_for(seed: int, name: str, version: int) -> str:
    """A 40-hex "git commit" that depends only on (seed, challenge name, version)."""
    return hashlib.sha1(f"{seed}:{name}:{version}".encode(), usedforsecurity=False).hexdigest()


def compose_for(seed: int, name: str, version: int) -> bytes:
    """A valid app-compose.json (manifest v2, docker-compose runner, evaluator on 8080).

    Deterministic per (seed, name, version) and dumped with `json.dumps(indent=4)`, as the
    dstack CLI does, so its sha256 is the compose hash.
    """
    docker_compose = "\n".join(
        [
            "services:",
            "  evaluator:",
            f"    image: ghcr.io/platform-sim/{name}-evaluator:v{version}",
            "    ports:",
            f'      - "{EVALUATOR_PORT}:{EVALUATOR_PORT}"',
            "    environment:",
            f"      - SIM_SEED={seed}",
            "      - JOB_ID",
            "      - CHALLENGE_ID",
            "      - SUBMISSION_ID",
            "      - MINER_HOTKEY",
            "    restart: unless-stopped",
            "",
        ]
    )
    document = {
        "manifest_version": 2,
        "name": name,
        "runner": "docker-compose",
        "docker_compose_file": docker_compose,
        "kms_enabled": False,
        "gateway_enabled": False,
        "public_logs": True,
        "public_sysinfo": True,
        "allowed_envs": ["JOB_ID", "CHALLENGE_ID", "SUBMISSION_ID", "MINER_HOTKEY"],
        "no_instance_id": False,
    }
    return json.dumps(document, indent=4).encode()


def tampered(compose: bytes) -> bytes:
    """The same document with one extra trailing newline: same meaning, different sha256."""
    return compose + b"\n"
