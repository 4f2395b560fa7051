"""RepeatLimiter: a repeating line at most once per window, with a count; Once: bounded memory
of what was already reported."""

from __future__ import annotations

import asyncio

from validator_tui.logs import Once, RepeatLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_repeat_within_the_window_is_counted_and_summed_up_by_the_next() -> None:
    said: list[str] = []
    clock = Clock()
    limiter = RepeatLimiter(said.append, window_s=60, clock=clock)
    for number in range(5):
        limiter.say("x", f"ignored frame {number}")
    limiter.say("y", "another kind")
    assert said == ["ignored frame 0", "another kind"]
    clock.now += 61
    limiter.say("x", "ignored frame 5")
    assert said[2:] == ["ignored frame 4 (4 more in the last minute)", "ignored frame 5"]
    clock.now += 61
    limiter.say("y", "another kind")
    assert said[4:] == ["another kind"]


def test_distinct_keys_beyond_the_limit_share_one() -> None:
    said: list[str] = []
    clock = Clock()
    limiter = RepeatLimiter(said.append, window_s=60, max_keys=4, clock=clock)
    for number in range(1000):
        limiter.say(f"type-{number}", f"unknown type-{number}")
    assert said == [f"unknown type-{n}" for n in range(5)]
    clock.now += 61
    limiter.say("type-5000", "unknown type-5000")
    assert said[5:] == ["unknown type-5000"], "quiet keys are forgotten once their window ends"


async def test_the_summary_comes_at_the_end_of_the_window_on_a_running_loop() -> None:
    said: list[str] = []
    limiter = RepeatLimiter(said.append, window_s=0.05)
    for _ in range(3):
        limiter.say("x", "boom")
    async with asyncio.timeout(5):
        while len(said) < 2:
            await asyncio.sleep(0.01)
    assert said == ["boom", "boom (2 more in the last 0.05 s)"]
    limiter.say("x", "boom")
    limiter.say("x", "boom")
    async with asyncio.timeout(5):
        while len(said) < 3:
            await asyncio.sleep(0.01)
    assert said[2:] == ["boom (2 more in the last 0.05 s)"], "a key that repeats stays limited"


def test_once_remembers_a_bounded_number_of_keys() -> None:
    once = Once(capacity=3)
    assert [once.first(key) for key in ["a", "b", "a", "c", "d"]] == [True, True, False, True, True]
    assert once.first("a") is False, "recently seen keys are kept"
    assert once.first("b") is True, "the least recently seen key was forgotten"
