"""Connection pool limits shared by the HTTP clients."""

from __future__ import annotations

import httpx

#: httpcore checks every idle pooled connection on each request, so a small idle pool is
#: faster (measured: 100 -> 16 idle connections, 13.8 -> 11.7 CPU ms per job end to end).
POOL_LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=16)
