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

    installed: dict[int, object] = {}
    for number in (signal.SIGINT, signal.SIGTERM):
        before = signal.getsignal(number)
        with contextlib.suppress(RuntimeError, ValueError, NotImplementedError):
            loop.add_signal_handler(number, first, number)  # main thread only
            installed[number] = before
    try:
        return await work(stop)
    finally:
        _give_back(loop, installed)


def _give_back(loop: asyncio.AbstractEventLoop, installed: dict[int, object]) -> None:
    """Put back the handlers the caller had (a worker's stop flag, say). asyncio's
    removal leaves the default one, which kills the process, so a signal arriving
    between the two steps is held back until the caller's handler is in place."""
    if not installed:
        return
    held = signal.pthread_sigmask(signal.SIG_BLOCK, installed)
    try:
        for number, before in installed.items():
            loop.remove_signal_handler(number)
            if before is not None:  # None: a handler Python did not install
                signal.signal(number, before)  # type: ignore[arg-type]
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
