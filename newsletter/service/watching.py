"""What a send runner keeps an eye on while its connections send: its claims'
leases (renewed), readers who left since they were claimed, its "still here" in
the workers table, a pause by another process of a shared send, how many
processes share the relays' rates, and relays others found failing. Without this
the claims would run out under a live sender, so any surprise here pauses the
send rather than let it go on unwatched.
"""

from __future__ import annotations

import asyncio
import logging
import time

from newsletter.service.recorder import RecordError
from newsletter.storage.models import DeliveryState, SendState

WATCH_EVERY = 1.0  # seconds between looks (leases, departed readers, shares)
BEAT_EVERY = 2.0  # seconds between "still here" notes in the workers table
log = logging.getLogger("newsletter.runner")


class Watching:
    """The runner's watch (a base of `Runner`, which holds the state it reads)."""

    async def _watch(self) -> None:
        """Watch until cancelled; a failure pauses the send."""
        try:
            await self._keep_watch()
        except RecordError as exc:
            self._pause(str(exc))
        except Exception as exc:
            log.exception("watching the send failed")
            self._pause(f"lost track of the claims ({exc.__class__.__name__}: {exc})")

    async def _keep_watch(self) -> None:
        await self._beat()
        await self._refresh()  # others may be at work already: take a share from the start
        renewed = beaten = time.monotonic()
        while True:
            await asyncio.sleep(WATCH_EVERY)
            await self._refresh()
            self._departed |= await self.recorder.call(self.log.departed, self.send_id, self.worker)
            if time.monotonic() - renewed > self.lease / 3:
                await self.recorder.call(self.log.renew, self.send_id, self.worker, self.lease)
                renewed = time.monotonic()
            if time.monotonic() - beaten > BEAT_EVERY:
                await self._beat()
                beaten = time.monotonic()

    async def _beat(self) -> None:
        if self.book is None:
            return
        await self.recorder.call(self.book.beat, self.worker, self.send_id)
        if self.shared:
            await self._count_others()
            state = await self.recorder.call(self.book.state, self.send_id)
            if state not in (SendState.sending, SendState.done):
                self.report.elsewhere = not self.report.paused
                self._pause(f"the send was {state.value if state else 'removed'} elsewhere")

    async def _count_others(self) -> None:
        """A shared send's progress counts everyone's results, not this process's
        alone. Others' count only grows: one of this process's results may be in the
        log a moment before it is counted here as this process's."""
        if not self.watched:
            return
        try:
            counts = await asyncio.to_thread(self.log.counts, self.send_id)  # not on the writer
        except Exception as exc:  # a bar a moment behind is no reason to stop a send
            log.warning("could not count the send's results: %s", exc)
            return
        finished = sum(counts.values()) - counts[DeliveryState.pending]
        others = finished - self._already - self._mine
        if others > self._others:
            self.on_progress(others - self._others)
            self._others = others

    async def _refresh(self) -> None:
        """Re-read how many workers share the send, and which relays others found down."""
        try:
            self.pool.share(await asyncio.to_thread(self.participants))
            self.pool.adopt(await self.recorder.call(self.log.relays))
        except Exception as exc:  # the last known shares and states hold meanwhile
            log.warning("could not read the send's workers or relays: %s", exc)

    async def _others_at_work(self) -> bool:
        """A shared send is over for this process only when nobody holds any of it: a
        participant that dies leaves claims that become free when its lease runs out."""
        if not (self.stay and self.book):
            return False
        return bool(await self.recorder.call(self.book.held_elsewhere, self.send_id, self.worker))
