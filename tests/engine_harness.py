"""A campaign engine under test: store, in-process WhatsApp sandbox, and a worker on a private
task queue of a Temporal environment (time-skipping or a real dev server)."""

import asyncio
import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHandle, WorkflowHistory

from whatsapp_campaigns.domain.engine import CampaignInput
from whatsapp_campaigns.domain.models import ActorKind, CampaignDraft, Progress, Sender
from whatsapp_campaigns.domain.policy import CampaignPolicy
from whatsapp_campaigns.domain.statuses import CampaignStatus, MessageStatus
from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.store import accounts, campaigns, catalog
from whatsapp_campaigns.store.audiences import import_audience_rows
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.fixtures import SANDBOX_ACCOUNT_ID, SANDBOX_SENDER, seed_sandbox
from whatsapp_campaigns.store.models import MessageRow
from whatsapp_campaigns.whatsapp.connections import AccountProviders
from whatsapp_campaigns.whatsapp.provider import Provider
from whatsapp_campaigns.whatsapp.sandbox.emulator import SandboxEmulator
from whatsapp_campaigns.whatsapp.sandbox.fixtures import SANDBOX_TEMPLATES
from whatsapp_campaigns.whatsapp.sandbox.fixtures import ordinary_numbers as ordinary_numbers
from whatsapp_campaigns.whatsapp.sandbox.provider import SandboxProvider
from whatsapp_campaigns.workers.main import build_workers
from whatsapp_campaigns.workflows.campaign import CampaignWorkflow

HISTORIES_DIR = Path(__file__).parent / "histories"
ORDINARY = "+12025550199"  # any number that is not magic is accepted, delivered, read


@dataclass
class Engine:
    client: Client
    db: Database
    emulator: SandboxEmulator
    settings: Settings

    async def campaign(
        self,
        phones: Sequence[str],
        *,
        template: str = "order_update",
        policy: CampaignPolicy | None = None,
        send_at: datetime | None = None,
        name: str = "spring launch",
        sender: str = SANDBOX_SENDER.phone_number_id,
    ) -> str:
        """A scheduled campaign in the store (not started) sending `template` to `phones`."""
        rows = [
            {"phone": p, "name": f"Customer {i}", "order_id": f"A{i}"} for i, p in enumerate(phones)
        ]
        audience = await asyncio.to_thread(
            import_audience_rows, self.db, SANDBOX_ACCOUNT_ID, f"{name} audience", rows
        )
        draft = CampaignDraft(
            name=name,
            template_name=template,
            sender_phone_number_id=sender,
            audience_id=audience.audience.id,
            policy=policy or CampaignPolicy(),
        )
        campaign = campaigns.create_draft(self.db, SANDBOX_ACCOUNT_ID, draft)
        campaigns.set_schedule(self.db, campaign.id, send_at or datetime.now(UTC), "UTC")
        campaigns.change_status(
            self.db, campaign.id, CampaignStatus.SCHEDULED, action="schedule", actor=ActorKind.USER
        )
        return campaign.id

    async def start(self, campaign_id: str) -> WorkflowHandle[CampaignWorkflow, Progress]:
        return await self.client.start_workflow(
            CampaignWorkflow.run,
            CampaignInput(campaign_id=campaign_id),
            id=f"campaign-{campaign_id}",
            task_queue=self.settings.task_queue,
        )

    async def run(self, campaign_id: str) -> Progress:
        handle = await self.start(campaign_id)
        return await handle.result()

    async def record_history(self, handle: WorkflowHandle[Any, Any], name: str) -> None:
        """Save the first run's history for tests/test_replay.py when recording is asked for."""
        if not os.environ.get("CAMPAIGNS_RECORD_HISTORIES"):
            return
        first_run = handle.first_execution_run_id or handle.run_id
        history = await self.client.get_workflow_handle(handle.id, run_id=first_run).fetch_history()
        HISTORIES_DIR.mkdir(exist_ok=True)
        (HISTORIES_DIR / f"{name}.json").write_text(history.to_json())

    def statuses(self, campaign_id: str) -> dict[str, MessageStatus]:
        """Each recipient's message status, by phone number."""
        with self.db.session() as session:
            rows = session.query(MessageRow.phone_e164, MessageRow.status).filter(
                MessageRow.campaign_id == campaign_id
            )
            return {phone: MessageStatus(status) for phone, status in rows}

    def provider_ids(self, campaign_id: str, status: MessageStatus) -> list[str]:
        """WhatsApp's ids of the campaign's messages in `status`."""
        with self.db.session() as session:
            rows = session.query(MessageRow.provider_message_id).filter(
                MessageRow.campaign_id == campaign_id, MessageRow.status == status.value
            )
            return [pid for (pid,) in rows if pid is not None]

    def attempts(self, campaign_id: str, phone: str) -> int:
        with self.db.session() as session:
            return int(
                session.query(MessageRow.attempts)
                .filter(MessageRow.campaign_id == campaign_id, MessageRow.phone_e164 == phone)
                .scalar()
            )

    def set_credits(self, amount: int) -> None:
        balance = accounts.get_balance(self.db, SANDBOX_ACCOUNT_ID)
        with self.db.session() as session:
            from whatsapp_campaigns.store.models import Account

            account = session.get(Account, SANDBOX_ACCOUNT_ID)
            assert account is not None
            account.credit_balance = amount
        del balance


@contextlib.asynccontextmanager
async def running_engine(
    client: Client,
    db_url: str,
    *,
    sender_rate: int = 1000,
    emulator: SandboxEmulator | None = None,
    send_mode: str = "activity",
    sender_refresh_seconds: float | None = None,
    provider: Provider | None = None,
    server_rate_factor: float = 1.0,
) -> AsyncIterator[Engine]:
    """Seed the store with the sandbox fixtures and run a worker until the block ends; the
    worker sends through `provider` (the Cloud API client, say) or the in-process sandbox.
    With `sender_refresh_seconds`, it serves the store's numbers, re-read that often (as in
    production); without, exactly the sandbox sender."""
    settings = Settings(
        CAMPAIGNS_DATABASE_URL=db_url,
        CAMPAIGNS_TASK_QUEUE=f"campaigns-{uuid.uuid4().hex[:8]}",
        CAMPAIGNS_SEND_MODE=send_mode,
        CAMPAIGNS_TEMPLATE_CACHE_SECONDS=0.5,
        CAMPAIGNS_SENDER_REFRESH_SECONDS=sender_refresh_seconds or 30.0,
        CAMPAIGNS_SERVER_RATE_FACTOR=server_rate_factor,
    )
    db = Database(db_url)
    seed_sandbox(db)
    sender = Sender(**(SANDBOX_SENDER.model_dump() | {"rate_per_second": sender_rate}))
    catalog.upsert_sender(db, sender)
    catalog.upsert_templates(db, SANDBOX_ACCOUNT_ID, SANDBOX_TEMPLATES)
    emulator = emulator or SandboxEmulator()
    emulator.set_sender_rate(sender.phone_number_id, sender_rate)
    providers = AccountProviders(settings, db, shared=provider or SandboxProvider(emulator))
    fixed = None if sender_refresh_seconds is not None else [sender]
    workers = build_workers(client, settings, db, providers, senders=fixed)
    task = asyncio.create_task(workers.run())
    try:
        yield Engine(client=client, db=db, emulator=emulator, settings=settings)
    finally:
        await workers.shutdown()
        with contextlib.suppress(Exception):
            await task
        await providers.aclose()
        db.dispose()


async def wait_for_sends(engine: Engine, count: int, timeout: float = 30.0) -> None:
    """Until the sandbox accepted `count` sends (a campaign is under way)."""
    for _ in range(int(timeout / 0.05)):
        if len(engine.emulator.accepted_sends) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} sends in {timeout} s")


async def wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll a zero-argument predicate (sync) until it holds, in real time."""
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


def timeline_actions(progress: Progress) -> list[str]:
    return [entry.action for entry in progress.timeline]


def local_activity_name(event: HistoryEvent) -> str | None:
    """The activity a local activity's marker records (its result, in the history of the
    workflow that ran it), or None for any other event."""
    if event.event_type != EventType.EVENT_TYPE_MARKER_RECORDED:
        return None
    marker = event.marker_recorded_event_attributes
    if marker.marker_name != "core_local_activity":
        return None
    data = json.loads(marker.details["data"].payloads[0].data)
    return str(data["activity_type"])


def activity_tasks(history: WorkflowHistory) -> list[str]:
    """The activity type of each activity task the workflow scheduled (local activities run
    without one), in order."""
    return [
        event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
