"""Campaigns sharing one sender number (SPEC §11), end to end on a real dev server (fairness
on) and the sandbox, which refuses (130429) any send beyond the number's rate in a calendar
second, all at the default server rate (1.0 x the number's): a utility campaign started during
a marketing one goes first; two marketing campaigns share the number by their policy weight;
the store's per-second admission keeps every second within the rate (0 refusals)."""

import asyncio
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from tests.engine_harness import Engine, ordinary_numbers, running_engine
from whatsapp_campaigns.domain.policy import CampaignPolicy
from whatsapp_campaigns.domain.statuses import CampaignStatus
from whatsapp_campaigns.store.fixtures import SANDBOX_SENDER
from whatsapp_campaigns.store.models import MessageRow
from whatsapp_campaigns.whatsapp.sandbox.emulator import SandboxEmulator

RATE = 20  # msg/s: slow enough for a backlog to build on the number
# Every test runs at the default server rate (1.0 x the number's): the server's burst after a
# quiet spell parks about a second's worth of marketing sends in the worker, waiting for a free
# second of the number (store/send_slots.py); the utility sends still go first.
SENDER = SANDBOX_SENDER.phone_number_id
FINISH = 120.0  # seconds; generous for a loaded machine


def _accept_times(engine: Engine, phones: Sequence[str]) -> list[datetime]:
    """When the sandbox accepted a send to one of `phones`."""
    wanted = {p.lstrip("+") for p in phones}
    return [s.at for s in list(engine.emulator.accepted_sends) if s.to in wanted]


async def _until_accepted(engine: Engine, phones: Sequence[str], count: int) -> None:
    while len(_accept_times(engine, phones)) < count:
        await asyncio.sleep(0.05)


def _admitted_at(engine: Engine, campaign_id: str) -> list[datetime]:
    """When each sent message of the campaign was admitted: claimed, or given a second of the
    number after waiting for one (its attempt's clock, `sending_at`)."""
    with engine.db.session() as session:
        return list(
            session.scalars(
                select(MessageRow.sending_at).where(
                    MessageRow.campaign_id == campaign_id,
                    MessageRow.provider_message_id.is_not(None),
                )
            )
        )


def _strict() -> SandboxEmulator:
    return SandboxEmulator(strict_throughput=True)


async def test_a_utility_campaign_goes_before_a_marketing_one_on_the_same_number(
    dev_server: WorkflowEnvironment, db_url: str
) -> None:
    marketing_phones = ordinary_numbers(400)
    utility_phones = ordinary_numbers(40, start=5000)
    async with running_engine(
        dev_server.client, db_url, sender_rate=RATE, emulator=_strict()
    ) as engine:
        marketing = await engine.campaign(marketing_phones, template="spring_sale", name="sale")
        sale = await engine.start(marketing)
        await asyncio.wait_for(_until_accepted(engine, marketing_phones, RATE), FINISH)
        orders = await engine.campaign(utility_phones, template="order_update", name="orders")
        final = await asyncio.wait_for((await engine.start(orders)).result(), FINISH)
        utility = _admitted_at(engine, orders)
        # One partition per queue (TEMPORAL_DYNAMIC_CONFIG): priority is strict. Counted by
        # when the store admitted each send (a second of the number), not when the sandbox
        # accepted it: a marketing send admitted just before the first order update may reach
        # WhatsApp after it, the later the slower the box. An equal share would admit about 40
        # in between; two CI runs on a loaded box counted 4 (by acceptance, then by admission):
        # the bound is a fifth of an equal share.
        during = [t for t in _admitted_at(engine, marketing) if min(utility) < t < max(utility)]
        await sale.terminate()
    assert final.status is CampaignStatus.COMPLETED and len(utility) == 40
    assert len(during) <= 8, (
        f"{len(during)} marketing sends were admitted between the order updates; "
        f"busiest second, 130429s: {engine.emulator.throughput(SENDER)}"
    )


async def test_campaigns_on_one_number_share_it_by_their_weight(
    dev_server: WorkflowEnvironment, db_url: str
) -> None:
    heavy_phones = ordinary_numbers(300)
    light_phones = ordinary_numbers(300, start=5000)
    async with running_engine(
        dev_server.client, db_url, sender_rate=RATE, emulator=_strict()
    ) as engine:
        heavy = await engine.campaign(
            heavy_phones, template="spring_sale", name="heavy", policy=CampaignPolicy(weight=3)
        )
        light = await engine.campaign(light_phones, template="spring_sale", name="light")
        handles = [await engine.start(heavy), await engine.start(light)]
        # Both campaigns keep a backlog on the number for the next ten seconds or more.
        # Counted once the heavy one sent two seconds' worth (the sends of the server's first
        # burst, parked in the worker for free seconds of the number, go out as they came),
        # over eight seconds' worth: the shares wander from refill to refill of the windows.
        await asyncio.wait_for(_until_accepted(engine, heavy_phones, 2 * RATE), FINISH)
        before = len(_accept_times(engine, heavy_phones)), len(_accept_times(engine, light_phones))
        await asyncio.wait_for(_until_accepted(engine, heavy_phones, 10 * RATE), FINISH)
        after = len(_accept_times(engine, heavy_phones)), len(_accept_times(engine, light_phones))
        for handle in handles:
            await handle.terminate()
    heavy_sent, light_sent = after[0] - before[0], after[1] - before[1]
    # Weight 3 against 1, both cores kept busy beside the test, 24-28 runs each way: counted
    # over four seconds' worth, the heavy one sent 1.98-7.0 times as many (median 2.7; with
    # every send returned at once, not held (activities/completions.py), 1.73-12.3, median
    # 3.0); over eight, 2.2-5.5 (median 2.9; not held 1.8-4.2, median 3.0). Two CI runs over
    # four seconds: 90 to 50, 70 to 50. Equal weights sent 0.8-1.0 times as many. The bound
    # sits between: half as many again.
    assert 2 * heavy_sent >= 3 * light_sent, f"weight 3 against 1 sent {heavy_sent} to {light_sent}"
    assert light_sent > 0  # a share, not starvation


async def test_at_the_default_server_rate_no_second_goes_over_the_number_rate(
    dev_server: WorkflowEnvironment, db_url: str
) -> None:
    async with running_engine(
        dev_server.client, db_url, sender_rate=RATE, emulator=_strict()
    ) as engine:
        first = await engine.campaign(ordinary_numbers(150), template="spring_sale", name="a")
        second = await engine.campaign(
            ordinary_numbers(50, start=5000), template="order_update", name="b"
        )
        finals = await asyncio.wait_for(
            asyncio.gather(engine.run(first), engine.run(second)), FINISH
        )
        busiest, refused = engine.emulator.throughput(SENDER)
    assert [f.status for f in finals] == [CampaignStatus.COMPLETED] * 2
    assert (busiest <= RATE, refused) == (True, 0), f"busiest second {busiest}, {refused} 130429s"
