"""Typed errors raised by the clients. Messages are sanitised: safe to show and log."""

from __future__ import annotations

from validator_tui.sanitize import clean_line


class ClientError(Exception):
    """Base of every error a client raises."""


class NetworkError(ClientError):
    """The request did not get an HTTP answer: connect failure, reset, timeout."""


class NotSent(NetworkError):
    """The request never left this machine: connection refused or timed out, DNS, TLS, a full
    pool. The server cannot have acted on it."""


class AnswerLost(NetworkError):
    """The request may have reached the server, but no complete answer came back (read timeout,
    reset or protocol error after sending, the total deadline). The server may have acted on it."""


class ApiError(ClientError):
    """The server answered with an HTTP error status; `detail` is its words, sanitised."""

    def __init__(self, status: int, detail: str, what: str = "") -> None:
        self.status = status
        self.detail = clean_line(detail, 500)
        prefix = f"{what}: " if what else ""
        super().__init__(f"{prefix}HTTP {status}" + (f": {self.detail}" if self.detail else ""))

    @property
    def refused(self) -> bool:
        """401 or 403: the server refused us (our credentials, or this one request)."""
        return self.status in (401, 403)


class DecodeError(ClientError):
    """The server answered 2xx with a body that is not the expected JSON shape."""


class ClaimLost(ClientError):
    """Another validator got the job (404/409/410, or a 5xx with an empty body)."""

    def __init__(self, job_id: str, status: int) -> None:
        self.job_id = job_id
        self.status = status
        super().__init__(f"claim of {clean_line(job_id, 100)} lost (HTTP {status})")


class QueryRefused(ClientError):
    """An ORM query refused before it was sent: not a single read-only statement."""


class VmmError(ClientError):
    """The dstack VMM answered HTTP 400 `{"error": …}`; the text is that error, sanitised."""


def is_transient(exc: ClientError) -> bool:
    """Worth retrying later: no answer (NetworkError), or HTTP 408 / 429 / 5xx."""
    if isinstance(exc, NetworkError):
        return True
    return isinstance(exc, ApiError) and (exc.status >= 500 or exc.status in (408, 429))
