"""Connection pool limits shared by the HTTP clients."""

from __future__ import annotations

from types import TracebackType
from typing import Self

import httpx

#: httpcore checks every idle pooled connection on each request, so a small idle pool is
#: faster (measured: 100 -> 16 idle connections, 13.8 -> 11.7 CPU ms per job end to end).
POOL_LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=16)


class PooledClient:
    """A client holding one pooled `httpx.AsyncClient`: close it with `aclose()`, or use the
    client as an async context manager."""

    _http: httpx.AsyncClient

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
