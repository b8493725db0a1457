"""The worker process of `number_priority.py`: the project's workers (`build_workers`:
CampaignWorkflow, lifecycle and send activities, a send worker per number in use) sending
through the in-process WhatsApp sandbox, strict (at most each number's rate accepted per
calendar second, 130429 beyond). Prints "ready" once polling; on SIGTERM stops gracefully and
writes what the sandbox accepted (recipient, time) and refused to `--sends-out` as JSON.

Run with PYTHONPATH set to another `whatsapp_campaigns` (a `git archive` of an older commit)
to measure that code instead.
"""

import argparse
import asyncio
import functools
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from temporal_bench import add_store_numbers, run_project_workers, serve_until_signalled

from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.store import catalog
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.whatsapp.sandbox.emulator import SandboxEmulator
from whatsapp_campaigns.whatsapp.sandbox.provider import SandboxProvider


async def serve(args: argparse.Namespace, stop: asyncio.Event) -> None:
    settings = Settings(
        CAMPAIGNS_DATABASE_URL=args.db_url,
        CAMPAIGNS_TASK_QUEUE=args.task_queue,
        TEMPORAL_ADDRESS=args.address,
        CAMPAIGNS_SERVER_RATE_FACTOR=args.factor,
    )
    db = Database(settings.database_url)
    senders = catalog.list_senders(db)
    emulator = SandboxEmulator(strict_throughput=True, senders=[])
    add_store_numbers(emulator, senders)
    await run_project_workers(settings, db, SandboxProvider(emulator), stop, senders=senders)
    db.dispose()
    report = {
        "accepted": [(s.to, s.at.timestamp()) for s in list(emulator.accepted_sends)],
        "throughput": {s.phone_number_id: emulator.throughput(s.phone_number_id) for s in senders},
    }
    Path(args.sends_out).write_text(json.dumps(report))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--db-url", required=True)
    parser.add_argument("--factor", type=float, default=1.0, help="CAMPAIGNS_SERVER_RATE_FACTOR")
    parser.add_argument("--sends-out", required=True, help="JSON file written at the end")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    serve_until_signalled(functools.partial(serve, args))


if __name__ == "__main__":
    main()
