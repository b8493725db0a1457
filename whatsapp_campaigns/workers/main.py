"""The worker: runs CampaignWorkflow, the lifecycle activities, and a send worker per sender
number in use (`send_workers.py`: numbers added, removed or re-rated are picked up while it runs).

Sends for a sender go to that sender's own task queue, whose rate the Temporal server holds
(set with UpdateTaskQueueConfig, `queue_rates.py`): it is enforced across every campaign and
every worker process, so workers scale out without breaking it.
"""

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import NoReturn

from temporalio.client import Client
from temporalio.worker import Worker

from whatsapp_campaigns import tracing
from whatsapp_campaigns.activities.campaign import CampaignActivities
from whatsapp_campaigns.activities.campaign_watch import CampaignWatch
from whatsapp_campaigns.activities.sending import SendActivities
from whatsapp_campaigns.domain.models import Sender
from whatsapp_campaigns.metrics import make_runtime, start_worker_metrics
from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.store import catalog
from whatsapp_campaigns.store.connections import verify_secret_key
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.temporal_client import connect
from whatsapp_campaigns.whatsapp.connections import AccountProviders, secret_box
from whatsapp_campaigns.workers import heap, sandbox_contexts
from whatsapp_campaigns.workers.queue_rates import QueueRates
from whatsapp_campaigns.workers.send_workers import SendWorkers
from whatsapp_campaigns.workflows.campaign import CampaignWorkflow
from whatsapp_campaigns.workflows.send_partition import SendPartitionWorkflow

log = logging.getLogger(__name__)

# Store activities run in threads; a small pool is plenty (each is a few milliseconds).
CONTROL_ACTIVITY_THREADS = 16


@dataclass
class WorkerSet:
    """Every Temporal worker of one process, run and stopped together: the campaign worker
    and the send workers."""

    campaigns: Worker
    senders: SendWorkers
    executor: ThreadPoolExecutor

    async def run(self) -> None:
        try:
            await asyncio.gather(self.campaigns.run(), self.senders.run())
        finally:
            self.executor.shutdown(wait=False)

    async def shutdown(self) -> None:
        """Graceful: stop polling, let running activities finish, then return."""
        await asyncio.gather(self.campaigns.shutdown(), self.senders.shutdown())


def build_workers(
    client: Client,
    settings: Settings,
    db: Database,
    providers: AccountProviders,
    senders: list[Sender] | None = None,
) -> WorkerSet:
    """The campaign worker plus one send worker per sender number in use: the store's numbers,
    re-read every CAMPAIGNS_SENDER_REFRESH_SECONDS (or exactly `senders`, for tests and
    benchmarks)."""
    sandbox_contexts.install()  # a fifth of the worker's CPU per message (sandbox_contexts.py)
    executor = ThreadPoolExecutor(
        max_workers=CONTROL_ACTIVITY_THREADS, thread_name_prefix="campaign-activity"
    )
    # The send workers are built below; a campaign that starts sending wakes them.
    wake: list[Callable[[], None]] = []

    def on_sending() -> None:
        for send_workers_wake in wake:
            send_workers_wake()

    lifecycle = CampaignActivities(db, settings, on_sending=on_sending)
    sending = SendActivities(
        db,
        providers,
        reconcile_window=timedelta(seconds=settings.reconcile_seconds),
        template_cache_seconds=settings.template_cache_seconds,
    )
    campaigns = Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[CampaignWorkflow, SendPartitionWorkflow],
        activities=[
            lifecycle.load_campaign,
            lifecycle.preflight,
            lifecycle.record_status_change,
            lifecycle.record_timeline,
            lifecycle.record_reschedule,
            lifecycle.page_queued_messages,
            lifecycle.count_messages,
            lifecycle.finish_pending,
            lifecycle.release_credits,
            CampaignWatch(client).campaign_workflow_running,  # asked by send partitions
            sending.send_message,  # run here as a local activity in local_activity mode
        ],
        activity_executor=executor,
        max_concurrent_activities=CONTROL_ACTIVITY_THREADS,
    )
    rates = QueueRates(client, factor=settings.server_rate_factor)
    if senders is not None:
        fixed = list(senders)
        send_workers = SendWorkers(
            client, settings.task_queue, sending, lambda: fixed, refresh=None, rates=rates
        )
    else:
        send_workers = SendWorkers(
            client,
            settings.task_queue,
            sending,
            lambda: catalog.list_senders(db),
            refresh=settings.sender_refresh_seconds,
            numbers_in_use=lambda: catalog.numbers_in_use(db),
            rates=rates,
        )
    wake.append(send_workers.wake)
    return WorkerSet(campaigns=campaigns, senders=send_workers, executor=executor)


async def run_worker(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Connect, build the workers for every sender in the store, run until `stop` is set or
    SIGINT/SIGTERM arrives; then shut down gracefully (running sends finish)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if settings.worker_metrics_port is not None:  # business metrics, /metrics
        start_worker_metrics(settings.worker_metrics_port)
    tracing.start(settings, "campaigns-worker")  # before connect: its client carries it
    db = Database(settings.database_url)
    # A missing or wrong CAMPAIGNS_SECRET_KEY is one clear error now, not failed sends later.
    await asyncio.to_thread(verify_secret_key, db, secret_box(settings))
    # The SDK's own metrics (Prometheus on CAMPAIGNS_TEMPORAL_METRICS_BIND), when set.
    client = await connect(settings, runtime=make_runtime(settings.temporal_metrics_bind))
    providers = AccountProviders(settings, db)
    workers = build_workers(client, settings, db, providers)
    async with heap.serving():
        log.info("worker polling %s on %s", settings.task_queue, settings.temporal_address)
        running = asyncio.create_task(workers.run())
        await stop.wait()
        log.info("shutting down: waiting for running activities to finish")
        await workers.shutdown()
        await running
    await providers.aclose()
    db.dispose()
    tracing.flush()  # the process ends with os._exit: no atexit export


def configure_logging() -> None:
    """One line per event at INFO; httpx would add a line per WhatsApp call."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)


def exit_after_shutdown() -> NoReturn:
    """End the process once run_worker has shut down gracefully, skipping interpreter
    finalization: the Temporal core's Rust threads (with metrics on) can still call into
    Python while it finalizes and abort the process ("PyGILState_Release ... finalizing",
    exit 134, about 1 run in 8 on PostgreSQL), which Kubernetes would count as a crash."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
