"""A campaign whose template WhatsApp pauses while it sends (SPEC §9), on a real dev server:
it pauses itself with the reason instead of burning its messages on 132015, refuses to resume
while the template is paused, and finishes once WhatsApp approves the template again."""

import asyncio

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.engine_harness import Engine, ordinary_numbers, running_engine, wait_for_sends
from whatsapp_campaigns.domain.models import Progress, TemplateStatus
from whatsapp_campaigns.domain.statuses import CampaignStatus, MessageStatus
from whatsapp_campaigns.starter import CampaignRefused, CampaignsClient
from whatsapp_campaigns.store import catalog
from whatsapp_campaigns.store.fixtures import SANDBOX_ACCOUNT_ID

pytestmark = pytest.mark.e2e


async def _until_paused(engine: Engine, campaign_id: str) -> Progress:
    handle = engine.client.get_workflow_handle(f"campaign-{campaign_id}")
    while True:
        progress = await handle.query("progress", result_type=Progress)
        if progress.status is CampaignStatus.PAUSED:
            return progress
        await asyncio.sleep(0.1)


def _set_template(engine: Engine, status: TemplateStatus) -> None:
    assert catalog.set_template_status(engine.db, SANDBOX_ACCOUNT_ID, "order_update", "en", status)


async def test_a_template_paused_mid_campaign_pauses_it_and_burns_no_message(
    dev_server: WorkflowEnvironment, db_url: str
) -> None:
    async with running_engine(dev_server.client, db_url, sender_rate=40) as engine:
        campaign_id = await engine.campaign(ordinary_numbers(300))
        handle = await engine.start(campaign_id)
        await wait_for_sends(engine, 10)  # some messages out, most still queued
        _set_template(engine, TemplateStatus.PAUSED)  # what the account webhook stores

        paused = await asyncio.wait_for(_until_paused(engine, campaign_id), timeout=30)
        assert "paused template order_update (en)" in (paused.status_reason or "")
        statuses = engine.statuses(campaign_id)
        assert MessageStatus.FAILED not in statuses.values()  # nothing burned on 132015
        assert MessageStatus.QUEUED in statuses.values()  # the rest waits

        client = CampaignsClient(engine.client, engine.db, engine.settings)
        with pytest.raises(CampaignRefused, match="PAUSED by WhatsApp"):
            await client.resume(campaign_id, by="ops")

        _set_template(engine, TemplateStatus.APPROVED)
        await client.resume(campaign_id, by="ops")
        final = await asyncio.wait_for(handle.result(), timeout=60)
        assert final.status is CampaignStatus.COMPLETED
        assert set(engine.statuses(campaign_id).values()) <= {
            MessageStatus.SENT,
            MessageStatus.DELIVERED,
            MessageStatus.READ,
        }
