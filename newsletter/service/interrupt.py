"""Stopping a send politely: the first Ctrl-C (or SIGTERM) lets the messages in
flight finish and be recorded; a second Ctrl-C stops at once."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def interruptible(
    work: Callable[[asyncio.Event], Awaitable[T]],
    on_stopping: Callable[[], None] | None = None,
) -> T:
    """Run `work(stop)`, setting `stop` on the first SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def first(number: int) -> None:
        stop.set()
        loop.remove_signal_handler(number)  # the next one is Python's: KeyboardInterrupt
        if on_stopping:
            on_stopping()

    installed = []
    for number in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(RuntimeError, ValueError, NotImplementedError):
            loop.add_signal_handler(number, first, number)  # main thread only
            installed.append(number)
    try:
        return await work(stop)
    finally:
        for number in installed:
            loop.remove_signal_handler(number)
