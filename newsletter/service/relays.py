"""The relays of a send: each [[smtp.relays]] entry (or [smtp] alone) with its own
connections, pace and failure count, and the rule that rests a failing one.

A relay is *cooled* after `[smtp] cool_after` connection failures in a row (refused
or dropped connections, 421s, a refused MAIL FROM): for `cool_down` seconds its
connections take no work, and the messages go to the other relays. The last relay
still taking work is never cooled: when every relay fails, the send backs off and,
after `pause_after` failures in a row with no success anywhere, pauses, as a send
through one server always has. A cooling relay is written to the `relays` table,
and a relay another sender found cooling is rested here too.

Rates across workers: per-worker shares. Several workers on one PostgreSQL send
each pace a relay at `rate / participants`, where `participants()` counts the
processes taking part in the send (re-read every few seconds), so their shares add
up to the relay's rate. This needs no round trip to the database per message; the
price is a few seconds of overshoot or slack when a worker joins or leaves.
"""

from __future__ import annotations

import asyncio
import time

from newsletter.sections import RelaySettings, SmtpSection
from newsletter.service.pacing import Backoff, Pacer
from newsletter.storage.relays import COOLING, RelayState

REST_POLL = 0.25  # seconds between looks at the send while a relay rests


class Route:
    """One relay as a send uses it."""

    def __init__(self, relay: RelaySettings) -> None:
        self.name = relay.name
        self.settings = relay.settings
        self.connections = relay.connections
        self.rate = relay.rate
        self.pacer = Pacer(relay.rate)
        self.backoff = Backoff()
        self.cool_until = 0.0  # the event loop's clock
        self.marked = False  # written (or seen) as cooling in the relays table

    @property
    def cooling(self) -> bool:
        return bool(self.cool_until) and self.rest_left() > 0

    def rest_left(self) -> float:
        return self.cool_until - asyncio.get_running_loop().time()

    def cool(self, seconds: float) -> float:
        """Rest for `seconds`; returns the end of the rest in epoch seconds."""
        self.cool_until = asyncio.get_running_loop().time() + seconds
        self.marked = True
        return time.time() + seconds


class RelayPool:
    def __init__(self, smtp: SmtpSection) -> None:
        self.routes = [Route(relay) for relay in smtp.relay_list()]
        self.cool_after = smtp.cool_after
        self.cool_down = smtp.cool_down
        self.participants = 1

    def failed(self, route: Route) -> float | None:
        """Count a connection failure on `route`; when it cools the relay, the end of
        its rest (epoch seconds) for the relays table."""
        if route.cooling:
            return None  # an attempt begun before it was rested: counted already, in effect
        route.backoff.failed()
        if route.backoff.streak >= self.cool_after and not route.cooling and self._others(route):
            return route.cool(self.cool_down)
        return None

    def failing(self, pause_after: int) -> bool:
        """Whether every relay is down: each one not resting has failed `pause_after`
        times in a row. One relay failing while another delivers is its rest's
        business, not a reason to pause the send."""
        awake = [r for r in self.routes if not r.cooling]
        return bool(awake) and all(r.backoff.streak >= pause_after for r in awake)

    def succeeded(self, route: Route) -> bool:
        """A message went through `route`; True when the table still says it cools."""
        route.backoff.succeeded()
        was, route.marked = route.marked, False
        return was

    def share(self, participants: int) -> None:
        """Pace each relay at its share of the rate, `participants` workers sending."""
        self.participants = max(1, participants)
        for route in self.routes:
            route.pacer.set_rate(route.rate / self.participants)

    def adopt(self, states: dict[str, RelayState]) -> None:
        """Rest the relays other senders found failing (never the last one working)."""
        now = time.time()
        for route in self.routes:
            state = states.get(route.name)
            if state is None or state.state != COOLING or (state.cool_until or 0) <= now:
                continue
            if not route.cooling and self._others(route):
                route.cool(state.cool_until - now)

    def _others(self, route: Route) -> bool:
        """Whether another relay is still taking work."""
        return any(other is not route and not other.cooling for other in self.routes)
