"""The polite stop hands the process's signal handlers back as it found them, so a
worker that runs a send still owns SIGTERM afterwards (asyncio alone would leave
the default handler, and a SIGTERM then kills the worker instead of stopping it)."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from newsletter.service.interrupt import interruptible


@pytest.fixture
def own_handlers():
    seen: list[int] = []
    befores = {
        n: signal.signal(n, lambda number, _: seen.append(number))
        for n in (signal.SIGTERM, signal.SIGINT)
    }
    yield seen
    for number, before in befores.items():
        signal.signal(number, before)


def test_the_callers_handlers_are_back_after_the_work(own_handlers):
    mine = signal.getsignal(signal.SIGTERM)

    async def work(stop: asyncio.Event) -> str:
        assert signal.getsignal(signal.SIGTERM) is not mine  # the send listens meanwhile
        return "done"

    assert asyncio.run(interruptible(work)) == "done"
    assert signal.getsignal(signal.SIGTERM) is mine
    os.kill(os.getpid(), signal.SIGTERM)
    assert own_handlers == [signal.SIGTERM]


def test_a_signal_during_the_work_stops_it_and_the_handlers_still_come_back(own_handlers):
    mine = signal.getsignal(signal.SIGINT)
    stopping: list[bool] = []

    async def work(stop: asyncio.Event) -> bool:
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(stop.wait(), 5)
        return stop.is_set()

    assert asyncio.run(interruptible(work, on_stopping=lambda: stopping.append(True)))
    assert stopping == [True]
    assert own_handlers == []  # the send took that one, not the caller
    assert signal.getsignal(signal.SIGINT) is mine
    assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
