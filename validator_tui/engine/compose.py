"""Fetch a challenge's `app-compose.json` at its pinned commit and verify its hash."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from validator_tui.clients.errors import ClientError
from validator_tui.clients.platform import PlatformClient

_GITHUB = re.compile(r"^https?://github\.com/([^/]+)/([^/]+?)(?:\.git)?/?$")
_HASH = re.compile(r"^[0-9a-f]{64}$")


class ComposeError(Exception):
    """The compose cannot be fetched, or its bytes do not match the challenge's hash."""


def compose_url(github_repo: str, commit: str) -> str:
    """Where `app-compose.json` lives for this repo and commit (raw GitHub for github.com)."""
    match = _GITHUB.match(github_repo)
    if match:
        owner, repo = match.groups()
        return f"https://raw.githubusercontent.com/{owner}/{repo}/{commit}/app-compose.json"
    return f"{github_repo.rstrip('/')}/raw/{commit}/app-compose.json"


class ComposeCache:
    """Compose files by hash, on disk under the state directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def get(self, compose_hash: str) -> bytes | None:
        if not _HASH.match(compose_hash):
            return None
        path = self.directory / f"{compose_hash}.json"
        try:
            data = path.read_bytes()
        except OSError:
            return None
        return data if hashlib.sha256(data).hexdigest() == compose_hash else None

    def put(self, compose_hash: str, data: bytes) -> None:
        """Best effort: a cache that cannot be written only costs a re-fetch."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            (self.directory / f"{compose_hash}.json").write_bytes(data)
        except OSError:
            return


async def fetch_verified_compose(
    platform: PlatformClient,
    cache: ComposeCache,
    github_repo: str,
    commit: str,
    compose_hash: str,
) -> bytes:
    """The compose bytes whose sha256 equals `compose_hash`; raise `ComposeError` otherwise."""
    expected = compose_hash.lower().removeprefix("sha256:")
    if not _HASH.match(expected):
        raise ComposeError(f"compose_hash {compose_hash[:80]!r} is not a sha256 hex digest")
    if not commit:
        raise ComposeError("the challenge has no pinned github_commit")
    cached = cache.get(expected)
    if cached is not None:
        return cached
    url = compose_url(github_repo, commit)
    try:
        data = await platform.fetch_bytes(url)
    except ClientError as exc:
        raise ComposeError(f"cannot fetch app-compose.json at {commit[:12]}: {exc}") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ComposeError(
            f"compose hash mismatch at {commit[:12]}: got {actual[:16]}…, "
            f"expected {expected[:16]}…; refusing to run it"
        )
    cache.put(expected, data)
    return data
