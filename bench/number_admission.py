"""The real send path on one number, with and without the store's per-second admission
(store/send_slots.py), against the strict sandbox: `bench/number_rates.py --send-path`.

Each arm seeds one campaign (`order_update`, status `sending`) on a number of its own at
`rate` msg/s in one store, and runs the project's `SendActivities.send_message` on two send
workers, each with its own Temporal connection, store engine and activity instance (as two
worker processes), polling the number's queue, whose rate the server holds at factor x rate
(UpdateTaskQueueConfig). Sends go out in waves separated by seconds of silence (where the
server's limiter bursts). The sandbox (strict: at most `rate` per calendar second, 130429
beyond) counts what it accepted per second and what it refused.
"""

import asyncio
import contextlib
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from scratch_store import bench_draft, bench_sender
from sqlalchemy import select, update
from temporalio import workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from whatsapp_campaigns.activities.sending import SendActivities
from whatsapp_campaigns.domain.engine import SendMessageInput, SendResult
from whatsapp_campaigns.domain.statuses import CampaignStatus
from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.store import campaigns, catalog
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.fixtures import SANDBOX_ACCOUNT_ID, seed_sandbox
from whatsapp_campaigns.store.messages import materialize_messages
from whatsapp_campaigns.store.models import CampaignRow, MessageRow
from whatsapp_campaigns.whatsapp.connections import AccountProviders
from whatsapp_campaigns.whatsapp.sandbox.emulator import SandboxEmulator, SandboxSender
from whatsapp_campaigns.whatsapp.sandbox.fixtures import SANDBOX_TEMPLATES, ordinary_numbers
from whatsapp_campaigns.whatsapp.sandbox.provider import SandboxProvider


@dataclass
class Wave:
    campaign_id: str
    message_ids: list[int]
    queue: str


@workflow.defn(name="BenchSendPath")
class BenchSendPath:
    """A wave of the campaign's sends, as the dispatch loop starts them (same timeouts)."""

    @workflow.run
    async def run(self, wave: Wave) -> int:
        handles = [
            workflow.start_activity(
                "send_message",
                SendMessageInput(campaign_id=wave.campaign_id, message_id=message_id),
                result_type=SendResult,
                task_queue=wave.queue,
                start_to_close_timeout=timedelta(seconds=90),
                heartbeat_timeout=timedelta(seconds=20),
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
            for message_id in wave.message_ids
        ]
        results = [await h for h in handles]
        return sum(1 for r in results if r.status is not None)

    @workflow.signal(name="sender_limited")
    def sender_limited(self, notice: Any) -> None:  # the real workflow shrinks its window
        del notice


@dataclass
class ArmOutcome:
    arm: str  # "admission" or "none" (the code path without it)
    factor: float
    rate: int
    sends: int
    sent: int
    busiest: int
    refused: int
    sustained: float  # median accepted per full calendar second / rate
    seconds: float
    store_transactions_per_send: float
    cpu_s_per_1000: float  # this process (both workers and the sandbox), per 1,000 sends


def seed_arm(db: Database, number: str, rate: int, sends: int, start: int) -> tuple[str, list[int]]:
    bench_sender(db, number, rate)
    draft = bench_draft(db, f"bench {number}", number, ordinary_numbers(sends, start=start))
    campaign = campaigns.create_draft(db, SANDBOX_ACCOUNT_ID, draft)
    materialize_messages(db, campaign.id)
    with db.session() as session:  # straight to sending: the workflow's part is not measured
        session.execute(
            update(CampaignRow)
            .where(CampaignRow.id == campaign.id)
            .values(status=CampaignStatus.SENDING.value)
        )
        ids = session.scalars(
            select(MessageRow.id)
            .where(MessageRow.campaign_id == campaign.id)
            .order_by(MessageRow.id)
        ).all()
    return campaign.id, list(ids)


def seed_store(db: Database) -> None:
    seed_sandbox(db, credits=10_000_000)
    catalog.upsert_templates(db, SANDBOX_ACCOUNT_ID, SANDBOX_TEMPLATES)


async def run_arm(
    clients: Sequence[Client],
    db_url: str,
    *,
    admission: bool,
    rate: int,
    factor: float,
    sends: int,
    waves: int,
    gap: float,
    start: int,
    set_queue_rate: Any,
) -> ArmOutcome:
    number = f"pn-{uuid.uuid4().hex[:8]}"
    seed_db = Database(db_url)
    campaign_id, ids = await asyncio.to_thread(seed_arm, seed_db, number, rate, sends, start)
    seed_db.dispose()
    emulator = SandboxEmulator(strict_throughput=True, seed=1)
    emulator.add_sender(
        SandboxSender(number, "+12025550100", rate_per_second=rate, tier=10_000_000)
    )
    settings = Settings(CAMPAIGNS_DATABASE_URL=db_url)
    queue = f"bench-send-{number}"
    await set_queue_rate(clients[0], queue, queue_rps=rate * factor)
    tag = uuid.uuid4().hex[:8]
    workflows_queue = f"bench-wf-{tag}"
    databases = [Database(db_url) for _ in clients]  # a store engine per "process"
    providers = [
        AccountProviders(settings, db, shared=SandboxProvider(emulator)) for db in databases
    ]
    activities = [
        SendActivities(db, p, reconcile_window=timedelta(seconds=30), admission=admission)
        for db, p in zip(databases, providers, strict=True)
    ]
    workers = [
        Worker(
            clients[0],
            task_queue=workflows_queue,
            workflows=[BenchSendPath],
            workflow_runner=UnsandboxedWorkflowRunner(),
        )
    ] + [
        Worker(
            client,
            task_queue=queue,
            activities=[sending.send_message],
            max_concurrent_activities=500,
            max_task_queue_activities_per_second=rate * factor,
        )
        for client, sending in zip(clients, activities, strict=True)
    ]
    per_wave = len(ids) // waves
    cpu = time.process_time()
    started = time.time()
    sent = 0
    async with contextlib.AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(worker)
        for wave in range(waves):
            if wave:
                await asyncio.sleep(gap)
            sent += await clients[0].execute_workflow(
                BenchSendPath.run,
                Wave(campaign_id, ids[wave * per_wave : (wave + 1) * per_wave], queue),
                id=f"bench-path-{tag}-{wave}",
                task_queue=workflows_queue,
            )
    seconds = time.time() - started
    cpu = time.process_time() - cpu
    busiest, refused = emulator.throughput(number)
    accepted = [s.at.timestamp() for s in emulator.accepted_sends]
    transactions = sum(a.store_transactions for a in activities)
    for p in providers:
        await p.aclose()
    for db in databases:
        db.dispose()
    total = per_wave * waves
    return ArmOutcome(
        arm="admission" if admission else "none",
        factor=factor,
        rate=rate,
        sends=total,
        sent=sent,
        busiest=busiest,
        refused=refused,
        sustained=_sustained(accepted) / rate,
        seconds=round(seconds, 1),
        store_transactions_per_send=round(transactions / total, 3),
        cpu_s_per_1000=round(cpu / total * 1000, 2),
    )


def _sustained(times: Sequence[float]) -> float:
    """Median accepted per calendar second over the full seconds of busy runs (the first and
    last second of each wave are partial and left out)."""
    per_second = Counter(int(t) for t in times)
    full = [n for s, n in per_second.items() if s - 1 in per_second and s + 1 in per_second]
    return statistics.median(full) if full else 0.0
