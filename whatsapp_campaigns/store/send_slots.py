"""Per-number, per-second send admission shared by every worker process (SPEC §11).

The Temporal server holds a number's long-run rate on its send queue, but its limiter lets an
idle queue burst one second's worth (docs/engine.md), and WhatsApp counts per calendar second.
So before calling WhatsApp a send takes a slot of the current second from the store: one row
per (number, second) counts the sends admitted in it, raised by an atomic conditional upsert
that never passes the number's rate, whichever worker process asks; the sends of a number
claimed together take their slots in one such statement (`take_slots`). A send that finds its
second full waits for the next one (activities/sending.py).

The seconds are the store's clock: PostgreSQL's `clock_timestamp()`, so workers on hosts whose
clocks disagree still share one calendar; SQLite is a file on one host, whose clock every
process using it reads (`time.time()` inside the write transaction, which SQLite serialises).

Rows older than a few seconds are pruned by the first send of each new second of the number:
one extra statement per number per second, and the table stays a few rows per number.

Sends waiting for a full second take the next ones in priority order (`PriorityWaits`): the
server dispatches utility sends before marketing ones, but marketing sends it had dispatched
already (its one-second burst after a quiet spell leaves about a second's worth of them
waiting in the workers for as long as the number stays busy) would otherwise take slots
whatever their priority, and an order update would wait behind them.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, text

# Rows this many seconds older than the current one are deleted (kept a little for debugging).
KEEP_SECONDS = 10
# A slot asked for in the last this-much of a second is counted in the next second: the call
# would hardly reach WhatsApp before the second ends (and a slot it could not use is lost).
AHEAD_SECONDS = 0.1
# Waiting sends of a lower priority ask for a slot this much later into the next second per
# step of their Temporal priority key after the first (key 1, utility: at once; key 3,
# marketing: 100 ms in), so that at a second's start, in whichever worker process, the waiting
# sends of a higher priority take its slots first.
PRIORITY_STAGGER_SECONDS = 0.05
# A waiting send lets a second go by, without asking for a slot, while a send of a higher
# priority of its number asked for one within this long in its worker process: those keep
# arriving through the second (the server paces them), after the waiting ones asked.
PRIORITY_YIELD_SECONDS = 1.0
# Temporal's priority key of a task that sets none.
DEFAULT_PRIORITY_KEY = 3
# After this long waiting a send asks at once whatever its priority: a long run of higher-
# priority sends must not keep it waiting into the throughput wait budget (20 s, after which a
# send calls WhatsApp without a slot and the number could go over its rate).
PRIORITY_PATIENCE_SECONDS = 10.0


@dataclass(frozen=True)
class Slot:
    """The answer to "may this number send in the current second?"."""

    won: bool
    second: int  # the store's epoch second the slot counts in (asked in it or just before)
    left: float  # from the ask to the end of that second on the store's clock (< 1 + AHEAD)
    # This process's monotonic clock just before the statement that read the store's clock:
    # the second ends `left` after it at the earliest. Read here, in the transaction, not when
    # the send queued its write: under load a write waits for the transactions before it, and
    # counting that wait as part of the round trip made slots look too late to use (a third
    # of the sends with 16 campaigns on 4 numbers on a loaded box: bench/RESULTS.md).
    asked: float


_POSTGRES_TAKE = text(
    """
    WITH clock AS MATERIALIZED (
        SELECT extract(epoch FROM clock_timestamp())::float8 AS now
    ), won AS (
        INSERT INTO send_slots (phone_number_id, second, used)
        SELECT :number, floor(now + :ahead)::bigint, :count FROM clock
        ON CONFLICT (phone_number_id, second)
        DO UPDATE SET used = send_slots.used + :count WHERE send_slots.used + :count <= :rate
        RETURNING used
    )
    SELECT (SELECT now FROM clock) AS now, (SELECT used FROM won) AS used
    """
).bindparams(bindparam("number"), bindparam("count"), bindparam("rate"), bindparam("ahead"))

_SQLITE_TAKE = text(
    """
    INSERT INTO send_slots (phone_number_id, second, used) VALUES (:number, :second, :count)
    ON CONFLICT (phone_number_id, second)
    DO UPDATE SET used = used + :count WHERE used + :count <= :rate
    RETURNING used
    """
).bindparams(bindparam("number"), bindparam("second"), bindparam("count"), bindparam("rate"))

_PRUNE = text("DELETE FROM send_slots WHERE phone_number_id = :number AND second < :before")


_POSTGRES_NOW = text("SELECT extract(epoch FROM clock_timestamp())::float8")


def pass_slot(connection: Connection) -> Slot:
    """The answer of a full second, the store's clock read but nothing counted: for a waiting
    send that lets sends of a higher priority go first (`PriorityWaits.yields`)."""
    asked = time.monotonic()
    if connection.dialect.name == "postgresql":
        now = float(connection.execute(_POSTGRES_NOW).scalar_one())
    else:
        now = time.time()
    return _slot(now, won=False, asked=asked)


def take_slot(connection: Connection, phone_number_id: str, rate: int) -> Slot:
    """Admit one send of `phone_number_id` in the store's current second (the next one in a
    second's last AHEAD_SECONDS) if fewer than `rate` were admitted in it, in the caller's
    transaction (a PostgreSQL row lock holds concurrent claimers of the same second until it
    commits, so a transaction taking slots of several numbers takes them in one order: see
    activities/grouped_writes.py `Then`; SQLite has one writer at a time)."""
    return take_slots(connection, phone_number_id, rate, 1)[0]


def take_slots(connection: Connection, phone_number_id: str, rate: int, count: int) -> list[Slot]:
    """`take_slot` for `count` sends at once: one statement admits all of them while the
    second has room for all (the send path's claims of a number in one group); else they are
    admitted one by one until the second is full, and the rest are answered as refused in it."""
    if count < 1:
        raise ValueError(f"slots are taken for at least one send, not {count}")
    per_second = max(1, math.floor(rate))
    if count <= per_second:
        slot = _take(connection, phone_number_id, per_second, count)
        if slot.won or count == 1:
            return [slot] * count
    slots: list[Slot] = []
    while len(slots) < count and (not slots or slots[-1].won):
        slots.append(_take(connection, phone_number_id, per_second, 1))
    return slots + [slots[-1]] * (count - len(slots))


def _take(connection: Connection, phone_number_id: str, per_second: int, count: int) -> Slot:
    """Admit `count` sends in the current second if it has room for all of them, or none."""
    asked = time.monotonic()
    if connection.dialect.name == "postgresql":
        row = connection.execute(
            _POSTGRES_TAKE,
            {"number": phone_number_id, "count": count, "rate": per_second, "ahead": AHEAD_SECONDS},
        ).one()
        now, used = float(row.now), row.used
    else:
        now = time.time()
        used = connection.execute(
            _SQLITE_TAKE,
            {"number": phone_number_id, "second": _second(now), "count": count, "rate": per_second},
        ).scalar_one_or_none()
    slot = _slot(now, won=used is not None, asked=asked)
    if used == count:  # the first sends of a new second: drop the number's old seconds
        before = slot.second - KEEP_SECONDS
        connection.execute(_PRUNE, {"number": phone_number_id, "before": before})
    return slot


def _second(now: float) -> int:
    """The second a slot asked for at `now` (the store's clock) counts in."""
    return math.floor(now + AHEAD_SECONDS)


def _slot(now: float, *, won: bool, asked: float) -> Slot:
    second = _second(now)
    return Slot(won=won, second=second, left=second + 1 - now, asked=asked)


class PriorityWaits:
    """The order in which one worker process's sends waiting for a slot of their number ask
    for one, by their Temporal priority key (1 first … 5 last; None: Temporal's default, 3):
    a send lets seconds go by while sends of a higher priority of its number keep asking
    (`yields`), and asks later into a second the lower its priority (`delay`); neither once
    it has waited PRIORITY_PATIENCE_SECONDS."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._asked: dict[tuple[str, int], float] = {}  # (number, key): last asked, clock

    def asked(self, phone_number_id: str, priority_key: int | None) -> None:
        """A send of `phone_number_id` asks for a slot (claims included)."""
        self._asked[phone_number_id, _key(priority_key)] = self._clock()

    def yields(self, phone_number_id: str, priority_key: int | None, waited: float) -> bool:
        """Whether a send that has `waited` so far lets this second go by without asking."""
        if waited >= PRIORITY_PATIENCE_SECONDS:
            return False
        since = self._clock() - PRIORITY_YIELD_SECONDS
        return any(
            self._asked.get((phone_number_id, higher), since) > since
            for higher in range(1, _key(priority_key))
        )

    @staticmethod
    def delay(priority_key: int | None, waited: float) -> float:
        """How long after the next second begins a send that has `waited` asks for a slot."""
        if waited >= PRIORITY_PATIENCE_SECONDS:
            return 0.0
        return (_key(priority_key) - 1) * PRIORITY_STAGGER_SECONDS


def _key(priority_key: int | None) -> int:
    return DEFAULT_PRIORITY_KEY if priority_key is None else max(1, priority_key)


def admitted_per_second(connection: Connection, phone_number_id: str) -> dict[int, int]:
    """The sends admitted in each second still kept (tests, benches)."""
    rows = connection.execute(
        text("SELECT second, used FROM send_slots WHERE phone_number_id = :number"),
        {"number": phone_number_id},
    )
    return {int(second): int(used) for second, used in rows}
