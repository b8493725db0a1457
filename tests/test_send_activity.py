"""The send activity against the store and a scripted WhatsApp: what a message ends as when the
activity is cancelled while WhatsApp answers (SPEC §4 rule 12)."""

import asyncio
import collections
import dataclasses
import math
import time
from datetime import timedelta
from typing import cast

import pytest
from sqlalchemy import Connection, update
from temporalio.common import Priority
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from tests.store_helpers import (
    ACCOUNT,
    SENDER,
    seed_account,
    seed_audience,
    seed_campaign,
    seed_messages,
)
from whatsapp_campaigns.activities import sending
from whatsapp_campaigns.activities.sending import SendActivities
from whatsapp_campaigns.domain.engine import SendMessageInput
from whatsapp_campaigns.domain.errors import ErrorClass
from whatsapp_campaigns.domain.models import Template
from whatsapp_campaigns.domain.statuses import CampaignStatus, MessageStatus
from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.store import catalog, messages
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.models import CampaignRow, MessageRow, SenderNumber
from whatsapp_campaigns.store.send_slots import Slot, take_slot, take_slots
from whatsapp_campaigns.whatsapp.connections import AccountProviders
from whatsapp_campaigns.whatsapp.provider import Provider, ProviderError, TemplateSend
from whatsapp_campaigns.whatsapp.wire import provider_error

ACCEPTED_ID = "wamid.accepted-while-cancelled"


class SlowWhatsApp:
    """Refuses the first call for throughput (130429), then accepts the next one, answering
    only when `answer` is set: the request has reached WhatsApp, the answer is on its way."""

    def __init__(self) -> None:
        self.calls = 0
        self.refused = asyncio.Event()
        self.in_flight = asyncio.Event()
        self.answer = asyncio.Event()
        self.accepted: list[str] = []

    async def send_template(self, message: TemplateSend) -> str:
        self.calls += 1
        if self.calls == 1:
            self.refused.set()
            raise ProviderError(ErrorClass.THROUGHPUT_LIMITED, "Rate limit hit", code=130429)
        self.accepted.append(message.biz_opaque_callback_data)  # WhatsApp has it now
        self.in_flight.set()
        await self.answer.wait()
        return ACCEPTED_ID

    async def list_templates(self, business_account_id: str) -> list[Template]:
        return []

    async def aclose(self) -> None:
        return None


def _queued_message(db: Database, *, throughput_backoff: float) -> int:
    """One queued message of a sending campaign whose policy waits `throughput_backoff`
    seconds (give or take half) after a throughput refusal."""
    [message] = _queued_messages(db, ["+12025550110"], throughput_backoff=throughput_backoff)
    return message


def _queued_messages(
    db: Database, phones: list[str], *, throughput_backoff: float = 0.02
) -> list[int]:
    seed_account(db)
    catalog.upsert_templates(db, ACCOUNT, [Template(name="spring_sale", variables=["name"])])
    audience_id = seed_audience(db, phones=phones)
    campaign_id = seed_campaign(
        db,
        status=CampaignStatus.SENDING,
        audience_id=audience_id,
        policy={"throughput_backoff": throughput_backoff},
    )
    return seed_messages(db, campaign_id, audience_id)


class AnswerLostWhatsApp:
    """Accepts every send, but a gateway in between answers 502 Bad Gateway."""

    def __init__(self) -> None:
        self.accepted: list[str | None] = []

    async def send_template(self, message: TemplateSend) -> str:
        self.accepted.append(message.biz_opaque_callback_data)
        raise provider_error(502, "<html>Bad Gateway</html>")

    async def list_templates(self, business_account_id: str) -> list[Template]:
        return []

    async def aclose(self) -> None:
        return None


@pytest.fixture
def whatsapp() -> SlowWhatsApp:
    return SlowWhatsApp()


def _environment(priority: Priority = Priority.default) -> ActivityEnvironment:
    env = ActivityEnvironment()
    # Not inside a workflow: the slow-down notice has no campaign to signal.
    env.info = dataclasses.replace(env.info, workflow_id=None, priority=priority)
    return env


def _cancel_campaign(db: Database, message_id: int) -> str:
    """What an operator's cancel does in the store before the workflow cancels the sends."""
    with db.session() as session:
        message = session.get(MessageRow, message_id)
        assert message is not None
        session.execute(
            update(CampaignRow)
            .where(CampaignRow.id == message.campaign_id)
            .values(status=CampaignStatus.CANCELLED.value)
        )
        return message.campaign_id


def _activities(db: Database, whatsapp: SlowWhatsApp | AnswerLostWhatsApp) -> SendActivities:
    """The send activity, every account calling `whatsapp`."""
    settings = Settings(CAMPAIGNS_DATABASE_URL=db.url)
    providers = AccountProviders(settings, db, shared=cast(Provider, whatsapp))
    return SendActivities(db, providers, reconcile_window=timedelta(seconds=30))


def _message(db: Database, message_id: int) -> MessageRow:
    with db.session() as session:
        row = session.get(MessageRow, message_id)
        assert row is not None
        return row


async def test_a_send_cancelled_while_whatsapp_accepts_it_ends_sent_not_cancelled(
    db: Database, whatsapp: SlowWhatsApp
) -> None:
    message_id = _queued_message(db, throughput_backoff=0.02)
    activities = _activities(db, whatsapp)
    env = _environment()
    send = asyncio.create_task(
        env.run(activities.send_message, SendMessageInput(campaign_id="", message_id=message_id))
    )
    await asyncio.wait_for(whatsapp.in_flight.wait(), timeout=10)

    campaign_id = _cancel_campaign(db, message_id)
    env.cancel()  # the workflow cancels the send while WhatsApp's answer is on its way
    await asyncio.sleep(0.05)
    whatsapp.answer.set()
    with pytest.raises(asyncio.CancelledError):
        await send
    # The workflow then cancels every message still waiting, in flight included.
    messages.finish_pending(
        db,
        campaign_id,
        MessageStatus.CANCELLED,
        reason="campaign cancelled",
        statuses=(MessageStatus.QUEUED, MessageStatus.RETRYING, MessageStatus.SENDING),
    )

    assert whatsapp.accepted == [str(message_id)]
    row = _message(db, message_id)
    assert (row.status, row.provider_message_id) == (MessageStatus.SENT, ACCEPTED_ID)


async def test_a_send_cancelled_while_it_waits_out_a_throughput_limit_stops_at_once(
    db: Database, whatsapp: SlowWhatsApp
) -> None:
    message_id = _queued_message(db, throughput_backoff=10)  # waits 5 to 15 s
    activities = _activities(db, whatsapp)
    env = _environment()
    send = asyncio.create_task(
        env.run(activities.send_message, SendMessageInput(campaign_id="", message_id=message_id))
    )
    await asyncio.wait_for(whatsapp.refused.wait(), timeout=10)

    env.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(send, timeout=4)  # before the wait could have ended

    assert whatsapp.calls == 1
    assert _message(db, message_id).provider_message_id is None


async def test_a_send_whose_answer_a_gateway_lost_waits_for_its_webhook_before_any_resend(
    db: Database,
) -> None:
    message_id = _queued_message(db, throughput_backoff=0.02)
    whatsapp = AnswerLostWhatsApp()
    env = _environment()
    with pytest.raises(ApplicationError) as raised:
        await env.run(
            _activities(db, whatsapp).send_message,
            SendMessageInput(campaign_id="", message_id=message_id),
        )

    assert not raised.value.non_retryable  # Temporal tries again later...
    assert _message(db, message_id).status == MessageStatus.SENDING
    # ...and that attempt waits for the "sent" webhook instead of sending a second time.
    again = messages.start_attempt(db, message_id, reconcile_window=timedelta(seconds=30))
    assert again.job is None and again.unresolved_since is not None
    assert whatsapp.accepted == [str(message_id)]


class PromptWhatsApp:
    """Accepts every send at once, noting when (the host's clock) each call came."""

    def __init__(self) -> None:
        self.call_times: list[float] = []
        self.calls: list[tuple[int, float]] = []  # (message id, time)

    async def send_template(self, message: TemplateSend) -> str:
        self.call_times.append(time.time())
        self.calls.append((int(message.biz_opaque_callback_data), self.call_times[-1]))
        return f"wamid.{message.biz_opaque_callback_data}"

    async def list_templates(self, business_account_id: str) -> list[Template]:
        return []

    async def aclose(self) -> None:
        return None


def _fill_the_current_second(db: Database, rate: int = 2) -> int:
    """The sender's rate set to `rate` and every slot of a fresh second taken (as other
    workers' sends would); returns that second."""
    time.sleep(math.ceil(time.time()) - time.time() + 0.01)
    with db.transaction() as connection:
        connection.execute(update(SenderNumber).values(rate_per_second=rate))
        slots = [take_slot(connection, SENDER, rate) for _ in range(rate + 1)]
    assert [s.won for s in slots] == [True] * rate + [False]
    return slots[0].second


async def test_a_send_whose_second_is_full_calls_in_the_next_second_in_the_same_attempt(
    db: Database,
) -> None:
    message_id = _queued_message(db, throughput_backoff=0.02)
    whatsapp = PromptWhatsApp()
    full = _fill_the_current_second(db)

    result = await _environment().run(
        _activities(db, whatsapp).send_message,
        SendMessageInput(campaign_id="", message_id=message_id),
    )

    assert result.status is MessageStatus.SENT
    assert [math.floor(t) for t in whatsapp.call_times] == [full + 1]
    assert _message(db, message_id).attempts == 1


async def test_sends_claimed_together_beyond_the_room_left_in_a_second_wait_for_the_next(
    db: Database,
) -> None:
    # Three sends claimed in one group, their number's second with room for two: the one
    # statement that takes slots for all three admits none, and they are taken one by one.
    message_ids = _queued_messages(db, ["+12025550110", "+12025550111", "+12025550112"])
    whatsapp = PromptWhatsApp()
    sending = _activities(db, whatsapp)
    full = _fill_the_current_second(db, rate=3)  # (all three slots: give two back)
    with db.transaction() as connection:
        connection.exec_driver_sql(f"UPDATE send_slots SET used = 1 WHERE second = {full}")

    results = await asyncio.wait_for(
        asyncio.gather(
            *(
                _environment().run(
                    sending.send_message, SendMessageInput(campaign_id="", message_id=message_id)
                )
                for message_id in message_ids
            )
        ),
        timeout=15,
    )

    assert {result.status for result in results} == {MessageStatus.SENT}
    per_second = collections.Counter(math.floor(t) for t in whatsapp.call_times)
    assert per_second == {full: 2, full + 1: 1}


def _slots_taken(db: Database) -> int:
    with db.transaction() as connection:
        taken = connection.exec_driver_sql(
            f"SELECT coalesce(sum(used), 0) FROM send_slots WHERE phone_number_id = '{SENDER}'"
        ).scalar_one()
    return int(taken)


async def test_a_send_whose_claim_waited_behind_a_slow_write_uses_the_slot_it_won(
    db: Database,
) -> None:
    # Another write holds the worker's transaction for 0.6 s from early in a second: the send's
    # claim, and its slot, run after it. The slot is used in its second, not taken for late
    # because of the wait (which would cost the send another slot and write).
    message_id = _queued_message(db, throughput_backoff=0.02)
    whatsapp = PromptWhatsApp()
    sending = _activities(db, whatsapp)
    time.sleep(math.ceil(time.time()) - time.time() + 0.05)
    slow = asyncio.create_task(sending._writes.run(lambda connection: time.sleep(0.6)))
    await asyncio.sleep(0.03)  # its transaction is under way: the claim waits for the next

    result = await _environment().run(
        sending.send_message, SendMessageInput(campaign_id="", message_id=message_id)
    )
    await slow

    assert result.status is MessageStatus.SENT
    assert _slots_taken(db) == 1


async def test_a_send_waiting_a_moment_for_a_free_second_does_not_heartbeat(
    db: Database,
) -> None:
    message_id = _queued_message(db, throughput_backoff=0.02)
    env = _environment()
    heartbeats: list[object] = []
    env.on_heartbeat = heartbeats.append
    _fill_the_current_second(db)

    result = await env.run(
        _activities(db, PromptWhatsApp()).send_message,
        SendMessageInput(campaign_id="", message_id=message_id),
    )

    assert result.status is MessageStatus.SENT
    assert heartbeats == []


async def test_a_send_waiting_long_for_a_free_second_heartbeats(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As a wait of 5 s would: the threshold lowered to 0.5 s, the next 2 seconds full.
    monkeypatch.setattr(sending, "ADMISSION_HEARTBEAT_AFTER_SECONDS", 0.5)
    message_id = _queued_message(db, throughput_backoff=0.02)
    env = _environment()
    heartbeats: list[object] = []
    env.on_heartbeat = heartbeats.append
    full = _fill_the_current_second(db, rate=1)
    with db.transaction() as connection:
        connection.exec_driver_sql(
            "INSERT INTO send_slots (phone_number_id, second, used) VALUES "
            + ", ".join(f"('{SENDER}', {second}, 1)" for second in (full + 1, full + 2))
        )

    result = await env.run(
        _activities(db, PromptWhatsApp()).send_message,
        SendMessageInput(campaign_id="", message_id=message_id),
    )

    assert result.status is MessageStatus.SENT
    assert heartbeats


async def test_of_sends_waiting_for_a_free_second_a_utility_one_goes_before_a_marketing_one(
    db: Database,
) -> None:
    marketing_id, utility_id = _queued_messages(db, ["+12025550110", "+12025550111"])
    whatsapp = PromptWhatsApp()
    sending = _activities(db, whatsapp)
    full = _fill_the_current_second(db, rate=1)
    utility = asyncio.create_task(
        _environment(Priority(priority_key=1)).run(
            sending.send_message, SendMessageInput(campaign_id="", message_id=utility_id)
        )
    )
    await asyncio.sleep(0.1)  # the utility send waits first...
    marketing = asyncio.create_task(  # ...then the marketing one: both for the next second
        _environment(Priority(priority_key=3)).run(
            sending.send_message, SendMessageInput(campaign_id="", message_id=marketing_id)
        )
    )

    await asyncio.wait_for(asyncio.gather(marketing, utility), timeout=10)

    seconds = {message: math.floor(t) for message, t in whatsapp.calls}
    assert seconds == {utility_id: full + 1, marketing_id: full + 2}


async def test_a_pause_while_a_send_waits_for_a_free_second_hands_the_message_back(
    db: Database,
) -> None:
    message_id = _queued_message(db, throughput_backoff=0.02)
    whatsapp = PromptWhatsApp()
    _fill_the_current_second(db, rate=1)
    send = asyncio.create_task(
        _environment().run(
            _activities(db, whatsapp).send_message,
            SendMessageInput(campaign_id="", message_id=message_id),
        )
    )
    await asyncio.sleep(0.2)  # claimed, waiting for the next second
    with db.session() as session:
        session.execute(update(CampaignRow).values(status=CampaignStatus.PAUSED.value))

    result = await asyncio.wait_for(send, timeout=3)

    assert (result.halted, whatsapp.call_times) == (True, [])
    row = _message(db, message_id)
    assert (row.status, row.attempts) == (MessageStatus.QUEUED, 0)


async def test_a_store_too_slow_to_time_a_second_delays_the_send_but_never_fails_it(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    message_id = _queued_message(db, throughput_backoff=0.02)
    whatsapp = PromptWhatsApp()

    def answered_too_late(connection: Connection, number: str, rate: int, count: int) -> list[Slot]:
        # Won, but their second ends before the answer is back (a round trip near a second).
        slots = take_slots(connection, number, rate, count)
        return [dataclasses.replace(slot, left=0.0) for slot in slots]

    monkeypatch.setattr(sending.send_slots, "take_slots", answered_too_late)

    result = await _environment().run(
        _activities(db, whatsapp).send_message,
        SendMessageInput(campaign_id="", message_id=message_id),
    )

    assert result.status is MessageStatus.SENT
    assert len(whatsapp.call_times) == 1
    assert _message(db, message_id).attempts == 1


async def test_a_send_cancelled_while_it_waits_for_a_free_second_stops_at_once(
    db: Database,
) -> None:
    message_id = _queued_message(db, throughput_backoff=0.02)
    whatsapp = PromptWhatsApp()
    with db.transaction() as connection:  # no slot free for the next 20 seconds
        connection.execute(update(SenderNumber).values(rate_per_second=1))
        now = math.floor(time.time())
        connection.exec_driver_sql(
            "INSERT INTO send_slots (phone_number_id, second, used) VALUES "
            + ", ".join(f"('{SENDER}', {second}, 1)" for second in range(now, now + 21))
        )
    env = _environment()
    send = asyncio.create_task(
        env.run(
            _activities(db, whatsapp).send_message,
            SendMessageInput(campaign_id="", message_id=message_id),
        )
    )
    await asyncio.sleep(1.5)  # has waited for a second at least once

    env.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(send, timeout=1)

    assert whatsapp.call_times == []
