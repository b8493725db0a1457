"""Progress while a campaign waits (SPEC §5): the counts a user sees through the client (CLI,
API, dashboard) are the store's, at once, while the workflow sleeps through a messaging-limit
throttle, without waking it (a query adds nothing to its history)."""

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from tests.engine_harness import Engine, ordinary_numbers, running_engine
from whatsapp_campaigns.domain.models import Progress
from whatsapp_campaigns.domain.statuses import MessageStatus
from whatsapp_campaigns.starter.client import CampaignsClient
from whatsapp_campaigns.store import messages, status_updates
from whatsapp_campaigns.store.models import MessageRow
from whatsapp_campaigns.store.status_updates import StatusUpdate

pytestmark = pytest.mark.e2e

LIMITED = "+12025550103"  # WhatsApp's messaging limit once: the campaign waits 12 hours


async def _throttled(client: CampaignsClient, campaign_id: str) -> Progress:
    """Progress once the campaign waits and the sends already under way have ended."""
    for _ in range(400):
        progress = await client.progress(campaign_id)
        if progress.throttled_until is not None and MessageStatus.SENDING not in progress.counts:
            return progress
        await asyncio.sleep(0.05)
    raise AssertionError("the campaign was never throttled")


def _sent_provider_ids(engine: Engine, campaign_id: str) -> list[str]:
    with engine.db.session() as session:
        return list(
            session.scalars(
                select(MessageRow.provider_message_id).where(
                    MessageRow.campaign_id == campaign_id,
                    MessageRow.status == MessageStatus.SENT.value,
                )
            )
        )


async def test_a_throttled_campaign_shows_the_stores_counts_at_once(
    dev_server: WorkflowEnvironment, db_url: str
) -> None:
    async with running_engine(dev_server.client, db_url) as engine:
        campaign_id = await engine.campaign([*ordinary_numbers(3), LIMITED])
        await engine.start(campaign_id)
        client = CampaignsClient(engine.client, engine.db, engine.settings)

        throttled = await _throttled(client, campaign_id)
        assert throttled.counts == messages.count_by_status(engine.db, campaign_id)
        limited = engine.statuses(campaign_id)[LIMITED]  # waiting to be sent again
        assert limited is not MessageStatus.QUEUED
        assert throttled.counts.get(limited, 0) >= 1

        sent = _sent_provider_ids(engine, campaign_id)
        assert sent, "no message was sent before the throttle"
        now = datetime.now(UTC)
        status_updates.apply_status_updates(
            engine.db, [StatusUpdate(pid, MessageStatus.DELIVERED, now) for pid in sent]
        )

        progress = await client.progress(campaign_id)
        assert progress.throttled_until == throttled.throttled_until  # still waiting
        assert progress.counts.get(MessageStatus.DELIVERED) == len(sent)
        assert progress.counts == messages.count_by_status(engine.db, campaign_id)
        await client.cancel(campaign_id, reason="test over")
