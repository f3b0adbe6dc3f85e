"""Timing rules of a send: the global rate, backoff after connection trouble,
and retries that wait their turn."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import Generic, TypeVar

T = TypeVar("T")

BACKOFF_FIRST = 0.05  # seconds after the first connection failure; doubles per failure
BACKOFF_MAX = 5.0
IDLE_WAIT = 0.05  # how long to sleep when only retries that are not yet due remain


class Pacer:
    """A messages-per-second limit shared by connections (0: no limit).

    Slots are `interval` apart, so N messages take at least (N - 1) intervals. A
    caller late for its slot by up to one interval still gets it (and goes at once):
    otherwise every late connection would lose its lateness for good, and a relay
    paced at R would average noticeably less than R."""

    def __init__(self, rate: float) -> None:
        self.set_rate(rate)
        self.next: float | None = None

    def set_rate(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate else 0.0

    async def wait(self) -> None:
        if not self.interval:
            return
        now = asyncio.get_running_loop().time()
        slot = now if self.next is None else max(self.next, now - self.interval)
        self.next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


class Backoff:
    """Connection failures in a row, and how long to wait before trying again."""

    def __init__(self) -> None:
        self.streak = 0

    def failed(self) -> None:
        self.streak += 1

    def succeeded(self) -> None:
        self.streak = 0

    def delay(self) -> float:
        return min(BACKOFF_FIRST * 2**self.streak, BACKOFF_MAX)


class RetryQueue(Generic[T]):
    """Items waiting until a time of their own (the event loop's clock)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, T]] = []
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, item: T, delay: float) -> None:
        due = asyncio.get_running_loop().time() + delay
        heapq.heappush(self._heap, (due, next(self._order), item))

    def pop_due(self) -> T | None:
        if self._heap and self._heap[0][0] <= asyncio.get_running_loop().time():
            return heapq.heappop(self._heap)[2]
        return None

    def wait_time(self) -> float:
        if not self._heap:
            return IDLE_WAIT
        wait = self._heap[0][0] - asyncio.get_running_loop().time()
        return min(max(wait, 0.001), IDLE_WAIT)
