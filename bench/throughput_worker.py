"""One worker process of `campaign_throughput.py` (started by it, several at once with
--worker-processes): prints "ready" once polling, stops gracefully on SIGTERM.

    campaign: the project's workers (`build_workers`: CampaignWorkflow, lifecycle activities,
              one rate-limited send worker per sender number of the store), sending through a
              no-op provider (`--latency` seconds per send, nothing checked) or the in-process
              WhatsApp sandbox (`--provider sandbox`: the emulator's checks and bookkeeping too).
    fanout:   the bare fan-out of bench/fanout.py: its workflow, and the no-op send on one
              rate-limited queue per sender number, named as the campaign's are.
"""

import argparse
import asyncio
import functools
import logging
import sys
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client
from temporalio.worker import Worker

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fanout
from temporal_bench import (
    add_store_numbers,
    run_project_workers,
    serve_until_signalled,
    serving_heap,
)

from whatsapp_campaigns.domain.models import Template
from whatsapp_campaigns.domain.tenancy import PhoneNumberInfo
from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.store import catalog
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.whatsapp.provider import Provider, TemplateSend
from whatsapp_campaigns.workers.send_workers import MAX_CONCURRENT_SENDS
from whatsapp_campaigns.workflows.task_queues import send_task_queue


class NoopProvider:
    """WhatsApp as a 20 ms wait that accepts everything: the same "send" as the bare fan-out's,
    so that the comparison is between the pipelines around it."""

    def __init__(self, latency: float) -> None:
        self._latency = latency

    async def send_template(self, message: TemplateSend) -> str:
        await asyncio.sleep(self._latency)
        return f"wamid.bench.{message.biz_opaque_callback_data}"

    async def list_templates(self, business_account_id: str) -> list[Template]:
        return []

    async def get_phone_number(self, phone_number_id: str) -> PhoneNumberInfo:
        raise NotImplementedError("the bench reads its numbers from the store")

    async def aclose(self) -> None:
        return None


def _provider(kind: str, latency: float) -> Provider:
    if kind == "noop":
        return NoopProvider(latency)
    from whatsapp_campaigns.whatsapp.sandbox.emulator import SandboxEmulator
    from whatsapp_campaigns.whatsapp.sandbox.provider import SandboxProvider

    emulator = SandboxEmulator(latency=latency)
    return SandboxProvider(emulator)


async def serve_campaigns(args: argparse.Namespace, stop: asyncio.Event) -> None:
    settings = Settings(
        CAMPAIGNS_DATABASE_URL=args.db_url,
        CAMPAIGNS_TASK_QUEUE=args.task_queue,
        TEMPORAL_ADDRESS=args.address,
        CAMPAIGNS_SEND_MODE=args.shape,
    )
    db = Database(settings.database_url)
    senders = catalog.list_senders(db)
    provider = _provider(args.provider, args.latency)
    if args.provider == "sandbox":  # the emulator must know the numbers and their rates
        add_store_numbers(provider.emulator, senders)  # type: ignore[attr-defined]
    await run_project_workers(settings, db, provider, stop, senders=senders)
    db.dispose()


async def serve_fanout(args: argparse.Namespace, stop: asyncio.Event) -> None:
    # As the project's workers do (build_workers), so that both pay the same SDK costs. (Here,
    # not at the top: a --compare-with copy of the package may predate the module.)
    from whatsapp_campaigns.workers import sandbox_contexts

    sandbox_contexts.install()
    client = await Client.connect(args.address)
    workers = [Worker(client, task_queue=args.task_queue, workflows=[fanout.BareFanout])]
    fanout.NOOP_SEND_SECONDS = args.latency
    for number in args.numbers.split(","):
        workers.append(
            Worker(
                client,
                task_queue=send_task_queue(args.task_queue, number),
                activities=[fanout.noop_send],
                max_concurrent_activities=MAX_CONCURRENT_SENDS,
                max_task_queue_activities_per_second=float(args.rate),
                graceful_shutdown_timeout=timedelta(seconds=5),
            )
        )
    async with serving_heap():
        running = asyncio.gather(*(worker.run() for worker in workers))
        print("ready", flush=True)
        await stop.wait()
        await asyncio.gather(*(worker.shutdown() for worker in workers))
        await running


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["campaign", "fanout"])
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--db-url", help="campaign: the store")
    parser.add_argument("--numbers", default="", help="fanout: the sender numbers, comma-separated")
    parser.add_argument("--rate", type=int, default=1000, help="fanout: each queue's msg/s")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per send")
    parser.add_argument("--provider", choices=["noop", "sandbox"], default="noop")
    parser.add_argument("--shape", choices=["activity", "local_activity"], default="activity")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    serve = serve_campaigns if args.mode == "campaign" else serve_fanout
    serve_until_signalled(functools.partial(serve, args))


if __name__ == "__main__":
    main()
