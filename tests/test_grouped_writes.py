"""The send activity's store writes, grouped: the claims (and accepted ids) of concurrent sends
are committed together, each caller answered only once its write is committed, and a write
that fails fails alone (activities/grouped_writes.py)."""

import asyncio
import functools
import random
import threading
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import Connection

from tests.store_helpers import seed_account, seed_audience, seed_campaign, seed_messages
from tests.webhook_helpers import later
from whatsapp_campaigns.activities.grouped_writes import Batched, GroupedWrites, Then
from whatsapp_campaigns.domain.statuses import CampaignStatus, MessageStatus
from whatsapp_campaigns.store import messages
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.models import MessageRow
from whatsapp_campaigns.store.status_updates import StatusUpdate, apply_status_updates
from whatsapp_campaigns.whatsapp.sandbox.fixtures import ordinary_numbers

RECONCILE = timedelta(seconds=30)


def _queued_messages(db: Database, n: int) -> list[int]:
    seed_account(db)
    audience_id = seed_audience(db, phones=ordinary_numbers(n))
    campaign_id = seed_campaign(db, status=CampaignStatus.SENDING, audience_id=audience_id)
    return seed_messages(db, campaign_id, audience_id)


_CLAIMS = functools.partial(messages.claim_attempts, reconcile_window=RECONCILE)


def _claim(message_id: int) -> Batched[int]:
    return Batched(_CLAIMS, message_id)


def _statuses(db: Database, ids: list[int]) -> dict[int, tuple[MessageStatus, int]]:
    with db.session() as session:
        rows = session.query(MessageRow).filter(MessageRow.id.in_(ids))
        return {row.id: (MessageStatus(row.status), row.attempts) for row in rows}


async def test_claims_made_at_once_are_committed_in_a_few_transactions(db: Database) -> None:
    ids = _queued_messages(db, 60)
    writes = GroupedWrites(db)

    starts = await asyncio.gather(*(writes.run(_claim(i)) for i in ids))

    assert [start.job.message_id for start in starts if start.job] == ids
    assert writes.transactions <= 3  # the first alone, the others grouped behind it
    assert set(_statuses(db, ids).values()) == {(MessageStatus.SENDING, 1)}


async def test_a_write_asked_for_just_after_another_joins_its_transaction(db: Database) -> None:
    # Sends arrive one by one; the first write after a quiet spell waits (gather_seconds) for
    # the next ones instead of committing alone.
    ids = _queued_messages(db, 2)
    writes = GroupedWrites(db, gather_seconds=0.5)

    first = asyncio.ensure_future(writes.run(_claim(ids[0])))
    for _ in range(3):  # the first write's group is under way
        await asyncio.sleep(0)
    second = await writes.run(_claim(ids[1]))

    assert (await first).job is not None and second.job is not None
    assert writes.transactions == 1


async def test_a_write_that_fails_fails_alone_and_the_others_are_committed(db: Database) -> None:
    ids = _queued_messages(db, 3)
    writes = GroupedWrites(db)

    outcomes = await asyncio.gather(
        *(writes.run(_claim(i)) for i in [ids[0], 999_999, *ids[1:]]), return_exceptions=True
    )

    assert isinstance(outcomes[1], LookupError)
    assert all(isinstance(o, messages.AttemptStart) and o.job for o in [outcomes[0], *outcomes[2:]])
    assert set(_statuses(db, ids).values()) == {(MessageStatus.SENDING, 1)}


async def test_two_sends_of_one_message_in_one_group_claim_it_once(db: Database) -> None:
    # (a send delivered twice) The claims' batch refuses a message asked for twice; each claim
    # is then made alone, and the second finds the first's attempt under way.
    ids = _queued_messages(db, 2)
    writes = GroupedWrites(db)

    starts = await asyncio.gather(*(writes.run(_claim(i)) for i in [ids[0], ids[0], ids[1]]))

    assert [start.job is not None for start in starts] == [True, False, True]
    assert starts[1].unresolved_since is not None
    assert _statuses(db, ids) == {
        ids[0]: (MessageStatus.SENDING, 1),
        ids[1]: (MessageStatus.SENDING, 1),
    }


async def test_a_caller_cancelled_while_its_write_waits_does_not_stop_the_write(
    db: Database,
) -> None:
    ids = _queued_messages(db, 2)
    writes = GroupedWrites(db)
    first = asyncio.ensure_future(writes.run(_claim(ids[0])))
    second = asyncio.ensure_future(writes.run(_claim(ids[1])))
    await asyncio.sleep(0)
    second.cancel()

    await first
    async with asyncio.timeout(10):  # committed with the next group although nobody waits
        while _statuses(db, [ids[1]])[ids[1]][0] is not MessageStatus.SENDING:
            await asyncio.sleep(0.01)
    assert second.cancelled()


async def test_second_steps_run_after_the_group_s_writes_in_the_order_of_their_keys(
    db: Database,
) -> None:
    writes = GroupedWrites(db)
    order: list[str] = []

    def write(key: str) -> Callable[[Connection], Then]:
        def first(connection: Connection) -> Then:
            order.append(f"write {key}")
            return Then(key, lambda connection: order.append(f"then {key}") or key)

        return first

    # Asked for in one go: one group.
    answers = await asyncio.gather(*(writes.run(write(k)) for k in ("b", "c", "a")))

    assert answers == ["b", "c", "a"]
    assert order == ["write b", "write c", "write a", "then a", "then b", "then c"]


async def test_a_group_writes_its_messages_in_id_order_and_answers_each_caller(
    db: Database,
) -> None:
    """The webhook applier locks messages in id order too: no lock cycle between the two."""
    writes = GroupedWrites(db)
    ran: list[int] = []

    def write(message_id: int) -> Callable[[Connection], int]:
        def run(connection: Connection) -> int:
            ran.append(message_id)
            return message_id * 10

        return run

    asked = (30, 10, 20)  # asked for in one go: one group
    answers = await asyncio.gather(*(writes.run(write(i), order=i) for i in asked))

    assert ran == [10, 20, 30]
    assert answers == [300, 100, 200]


async def test_a_batched_write_is_made_once_per_group_for_every_caller_that_asked(
    db: Database,
) -> None:
    writes = GroupedWrites(db)
    calls: list[list[int]] = []

    def tenfold(connection: Connection, items: list[int]) -> list[int]:
        calls.append(items)
        return [item * 10 for item in items]

    asked = (3, 1, 2)  # asked for in one go: one group
    answers = await asyncio.gather(*(writes.run(Batched(tenfold, i), order=i) for i in asked))

    assert calls == [[1, 2, 3]]  # one call, the items in order
    assert answers == [30, 10, 20]  # each caller its own answer


async def test_a_group_locks_the_messages_of_its_writes_first_in_id_order(db: Database) -> None:
    ran: list[str] = []

    def lock(connection: Connection, message_ids: list[int]) -> None:
        ran.append(f"lock {message_ids}")

    def write(message_id: int) -> Callable[[Connection], None]:
        return lambda connection: ran.append(f"write {message_id}")

    writes = GroupedWrites(db, lock=lock)
    await asyncio.gather(*(writes.run(write(i), order=i) for i in (20, 10)))

    assert ran == ["lock [10, 20]", "write 10", "write 20"]


async def test_send_groups_and_webhook_batches_on_the_same_messages_never_deadlock(
    db: Database,
) -> None:
    """PostgreSQL: groups storing accepted ids (sends finishing in any order) while applier
    batches reconcile the same messages by their callback data. Both lock in message-id
    order, so no group is a deadlock's victim (it would be re-run write by write) and no
    batch fails (before, a run like this had 2-8 deadlocks)."""
    ids = _queued_messages(db, 600)
    shuffled = random.Random(1).sample(ids, len(ids))
    errors: list[Exception] = []

    def webhooks() -> None:
        rng = random.Random(2)
        for _ in range(60):
            batch = rng.sample(ids, 60)
            updates = [
                StatusUpdate(f"wamid.{i}", MessageStatus.DELIVERED, later(1), str(i)) for i in batch
            ]
            try:
                apply_status_updates(db, updates)
            except Exception as error:
                errors.append(error)

    applier = threading.Thread(target=webhooks)
    applier.start()
    writes = GroupedWrites(db, lock=messages.lock_in_id_order)  # as the send path does
    groups = 0
    for start in range(0, len(shuffled), 50):
        groups += 1
        await asyncio.gather(
            *(
                writes.run(Batched(messages.store_accepted, (i, f"wamid.{i}")), order=i)
                for i in shuffled[start : start + 50]
            )
        )
    await asyncio.to_thread(applier.join)

    assert errors == []
    assert writes.transactions <= 2 * groups  # never re-run write by write
    assert {status for status, _ in _statuses(db, ids).values()} <= {
        MessageStatus.SENT,
        MessageStatus.DELIVERED,
    }
