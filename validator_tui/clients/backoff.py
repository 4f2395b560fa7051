"""Exponential backoff with jitter, for request retries and reconnect loops."""

from __future__ import annotations

import random

_rng = random.Random()


def full_jitter(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Delay before retry number `attempt` (1-based): uniform in [0, min(cap, base·2^(attempt-1))].

    "Full jitter" spreads simultaneous retriers evenly; the result is never negative and
    never above `cap`.
    """
    ceiling = min(cap, base * 2.0 ** min(max(attempt - 1, 0), 60))
    return (rng or _rng).uniform(0.0, max(ceiling, 0.0))


class Backoff:
    """Reconnect delays: `start`, doubling up to `cap`, each cut by up to a `jitter` fraction.

    `next()` returns the delay to wait now and advances; `reset()` starts over (call it once a
    connection has proved healthy).
    """

    def __init__(
        self,
        start: float,
        cap: float,
        *,
        factor: float = 2.0,
        jitter: float = 0.5,
        rng: random.Random | None = None,
    ) -> None:
        self.start = start
        self.cap = cap
        self.factor = factor
        self.jitter = min(max(jitter, 0.0), 1.0)
        self._rng = rng or _rng
        self._current = start

    def next(self) -> float:
        """The next delay, in [d·(1-jitter), d] where d is the current step (≤ cap)."""
        step = min(self._current, self.cap)
        self._current = min(self._current * self.factor, self.cap)
        return self._rng.uniform(step * (1.0 - self.jitter), step)

    def reset(self) -> None:
        """Start again from `start`."""
        self._current = self.start
