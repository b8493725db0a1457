"""A worker killed mid-campaign (SIGKILL, no goodbye) and a new one started: no message is
sent twice and none is lost.

The worker runs as its own process against the real HTTP sandbox (the Cloud API client, real
sockets); the sandbox posts its signed webhooks to the real receiver. Sends that WhatsApp
accepted while the worker died are reconciled by their "sent" webhook before any resend.
"""

import asyncio
import signal
import uuid
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.engine_harness import Engine, ordinary_numbers
from tests.servers import serving, start_worker
from whatsapp_campaigns.api.app import create_app
from whatsapp_campaigns.domain.models import Sender
from whatsapp_campaigns.domain.statuses import CampaignStatus, MessageStatus
from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.store import catalog, messages
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.fixtures import SANDBOX_ACCOUNT_ID, SANDBOX_SENDER, seed_sandbox
from whatsapp_campaigns.whatsapp.sandbox.emulator import SandboxEmulator
from whatsapp_campaigns.whatsapp.sandbox.fixtures import SANDBOX_TEMPLATES
from whatsapp_campaigns.whatsapp.sandbox.server import create_sandbox_app
from whatsapp_campaigns.whatsapp.sandbox.webhooks import BoundedHttpWebhookSink

pytestmark = pytest.mark.e2e

RECIPIENTS = 600
RECONCILE_SECONDS = 3


async def wait_until_sent(emulator: SandboxEmulator, count: int, timeout: float = 60.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if len(emulator.accepted_sends) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} sends in {timeout} s")


async def test_a_killed_worker_neither_loses_nor_duplicates_a_message(
    dev_server: WorkflowEnvironment,
    db_url: str,
    tmp_path: Path,
) -> None:
    settings = Settings(CAMPAIGNS_DATABASE_URL=db_url)
    db = Database(db_url)
    seed_sandbox(db)
    catalog.upsert_sender(db, Sender(**(SANDBOX_SENDER.model_dump() | {"rate_per_second": 1000})))
    catalog.upsert_templates(db, SANDBOX_ACCOUNT_ID, SANDBOX_TEMPLATES)

    async with serving(create_app(settings, db)) as api_url:
        # Bounded like the dev stack and `campaigns sandbox`: a burst of webhooks waits its turn
        # instead of running into httpx's pool timeout and being dropped.
        sink = BoundedHttpWebhookSink(f"{api_url}/webhooks/whatsapp", settings.whatsapp_app_secret)
        # Slow sends: at the kill, many requests are in flight, some already accepted.
        emulator = SandboxEmulator(
            latency=0.3, webhook_sink=sink, app_secret=settings.whatsapp_app_secret
        )
        emulator.set_sender_rate(SANDBOX_SENDER.phone_number_id, 1000)
        async with serving(create_sandbox_app(emulator)) as sandbox_url:
            task_queue = f"campaigns-restart-{uuid.uuid4().hex[:8]}"
            worker_env = {
                "CAMPAIGNS_DATABASE_URL": db_url,
                "TEMPORAL_ADDRESS": dev_server.client.service_client.config.target_host,
                "CAMPAIGNS_TASK_QUEUE": task_queue,
                "CAMPAIGNS_PROVIDER": "cloud",
                "WHATSAPP_API_BASE_URL": sandbox_url,
                "WHATSAPP_ACCESS_TOKEN": "sandbox-token",
                "CAMPAIGNS_RECONCILE_SECONDS": str(RECONCILE_SECONDS),
            }
            engine = Engine(
                client=dev_server.client,
                db=db,
                emulator=emulator,
                settings=Settings(CAMPAIGNS_DATABASE_URL=db_url, CAMPAIGNS_TASK_QUEUE=task_queue),
            )
            campaign_id = await engine.campaign(ordinary_numbers(RECIPIENTS))
            log = tmp_path / "worker.log"
            first = start_worker(worker_env, log)
            try:
                handle = await engine.start(campaign_id)
                await wait_until_sent(emulator, RECIPIENTS // 4)
                first.send_signal(signal.SIGKILL)
                await asyncio.to_thread(first.wait)
                sent_before_restart = len(emulator.accepted_sends)

                second = start_worker(worker_env, log)
                try:
                    final = await asyncio.wait_for(handle.result(), timeout=240)
                finally:
                    second.send_signal(signal.SIGTERM)
                    await asyncio.to_thread(second.wait, 30)
            finally:
                if first.poll() is None:
                    first.kill()
            await emulator.drain_webhooks()

    sent = [s.biz_opaque_callback_data for s in emulator.accepted_sends]
    assert sent_before_restart < RECIPIENTS, "the kill came too late to test anything"
    assert final.status is CampaignStatus.COMPLETED, log.read_text()[-2000:]
    assert len(sent) == len(set(sent)) == RECIPIENTS  # each message exactly once
    store_counts = messages.count_by_status(db, campaign_id)
    accepted = (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ)
    assert sum(store_counts.get(s, 0) for s in accepted) == RECIPIENTS
    db.dispose()
