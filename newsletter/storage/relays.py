"""The relays' health as every sender sees it: one `relays` row per relay name,
`cooling` until `cool_until` (epoch seconds) after it refused connections or kept
failing, `ok` again once it took a message. Senders on several machines read it, so
a relay one of them found down is rested by all."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.dialects import postgresql, sqlite

from newsletter.storage import db
from newsletter.storage.models import Relay, utcnow

OK = "ok"
COOLING = "cooling"


@dataclass(frozen=True)
class RelayState:
    name: str
    state: str  # OK or COOLING
    cool_until: float | None  # epoch seconds
    last_error: str | None


def write_relay(
    engine: Engine, name: str, state: str, cool_until: float | None, last_error: str | None
) -> None:
    """Set one relay's state (one statement: two senders may write the same relay)."""
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    values = {
        "state": state,
        "cool_until": cool_until,
        "last_error": last_error[:500] if last_error else None,
        "updated_at": utcnow(),
    }
    statement = dialect.insert(Relay).values(name=name[:200], **values)
    statement = statement.on_conflict_do_update(index_elements=[Relay.name], set_=values)
    with db.session(engine) as s:
        s.execute(statement)


def read_relays(engine: Engine) -> dict[str, RelayState]:
    """Every relay's last known state, by name."""
    with engine.connect() as conn:
        rows = conn.execute(select(Relay.name, Relay.state, Relay.cool_until, Relay.last_error))
        return {row.name: RelayState(*row) for row in rows}
