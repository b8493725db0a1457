"""Priority on a shared number through the real stack (SPEC §11, issue 11): a 400-recipient
utility campaign started while a 20,000-recipient marketing campaign sends on the same
80 msg/s number.

One Temporal dev server (fairness on, one partition per send queue, as deployed). For each arm
(code, server rate factor): a fresh store, `--workers` processes of the project's workers
(bench/number_priority_worker.py, the in-process sandbox, strict: at most 80 accepted per
calendar second, 130429 beyond; with several processes each has its own sandbox, so the
busiest second is counted over their accepted sends merged, and a refusal comes only from a
process's own sandbox), the marketing campaign (`spring_sale`) started; `--lead`
seconds after its first send the utility campaign (`order_update`) is started; once that one
completes the marketing campaign is cancelled (its end is not measured). Printed per arm: the
utility campaign's time from its start to completed (to its first send, from its first to its
last send), the marketing sends during it (those before its first send included: the
workflow's start, materializing its messages) and between the utility campaign's first and
last sends, the busiest calendar second, the 130429 refusals. `--compare-with DIR`: a folder
holding another `whatsapp_campaigns` (`git archive <rev> whatsapp_campaigns | tar -x -C DIR`),
run in the same rounds on the same server, side by side.

    .venv/bin/python bench/number_priority.py --factors 1,0.5 --compare-with /tmp/before
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scratch_store import bench_draft, bench_sender, migrated_store
from temporal_bench import DevServer, dev_server, load_average, stop_workers

from whatsapp_campaigns.domain.engine import CampaignInput
from whatsapp_campaigns.domain.models import ActorKind
from whatsapp_campaigns.domain.statuses import CampaignStatus, MessageStatus
from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.starter.client import CampaignsClient
from whatsapp_campaigns.store import campaigns, catalog
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.fixtures import SANDBOX_ACCOUNT_ID, seed_sandbox
from whatsapp_campaigns.store.models import MessageRow
from whatsapp_campaigns.whatsapp.sandbox.fixtures import SANDBOX_TEMPLATES, ordinary_numbers

BENCH_DIR = Path(__file__).resolve().parent
NUMBER = "pn-priority-bench"
UTILITY_START = 500_000  # recipients of the utility campaign: apart from the marketing ones


@dataclass
class ArmResult:
    code: str  # "current" or the folder of the other code
    factor: float
    load_average_at_start: str
    utility_seconds: float  # utility campaign: workflow started -> completed
    utility_first_send_after: float  # workflow started -> its first accepted send
    utility_first_to_last_send: float
    utility_sent: int
    marketing_sent_during_utility: int  # between the utility start and its completion
    marketing_between_utility_sends: int  # between its first and last accepted send
    busiest_second: int
    refused_130429: int


def seed(db: Database, rate: int, marketing: int, utility: int) -> tuple[str, str]:
    """The sandbox account, the number at `rate` msg/s, and two scheduled campaigns on it:
    marketing (`spring_sale`) and utility (`order_update`)."""
    seed_sandbox(db, credits=10 * (marketing + utility) + 1_000_000)
    bench_sender(db, NUMBER, rate)
    catalog.upsert_templates(db, SANDBOX_ACCOUNT_ID, SANDBOX_TEMPLATES)
    ids = []
    for name, template, phones in (
        ("marketing", "spring_sale", ordinary_numbers(marketing, start=1000)),
        ("utility", "order_update", ordinary_numbers(utility, start=UTILITY_START)),
    ):
        draft = bench_draft(db, name, NUMBER, phones).model_copy(update={"template_name": template})
        campaign = campaigns.create_draft(db, SANDBOX_ACCOUNT_ID, draft)
        campaigns.set_schedule(db, campaign.id, datetime.now(UTC), "UTC")
        campaigns.change_status(
            db, campaign.id, CampaignStatus.SCHEDULED, action="schedule", actor=ActorKind.USER
        )
        ids.append(campaign.id)
    return ids[0], ids[1]


def sent_count(db: Database, campaign_id: str) -> int:
    with db.session() as session:
        return int(
            session.scalar(
                select(func.count()).where(
                    MessageRow.campaign_id == campaign_id,
                    MessageRow.status == MessageStatus.SENT.value,
                )
            )
            or 0
        )


def start_worker(
    server: DevServer, task_queue: str, db_url: str, factor: float, out: Path, code: Path | None
) -> subprocess.Popen[str]:
    env = os.environ | ({"PYTHONPATH": str(code)} if code is not None else {})
    log = (out.parent / f"{out.stem}.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            str(BENCH_DIR / "number_priority_worker.py"),
            *("--address", server.address, "--task-queue", task_queue, "--db-url", db_url),
            *("--factor", str(factor), "--sends-out", str(out)),
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        stop_workers([process])
        raise RuntimeError(f"the worker did not start: see {log.name}")
    return process


async def run_arm(
    server: DevServer, opts: argparse.Namespace, factor: float, code: Path | None, workdir: Path
) -> ArmResult:
    load = load_average()
    label = "current" if code is None else str(code)
    print(f"  arm {label} factor {factor} (load average {load})", flush=True)
    with migrated_store(opts.backend, opts.postgres_url) as db_url:
        db = Database(db_url)
        marketing_id, utility_id = await asyncio.to_thread(
            seed, db, opts.rate, opts.marketing, opts.utility
        )
        settings = Settings(
            CAMPAIGNS_DATABASE_URL=db_url,
            CAMPAIGNS_TASK_QUEUE=f"campaigns-{uuid.uuid4().hex[:8]}",
            TEMPORAL_ADDRESS=server.address,
        )
        outs = [workdir / f"sends-{uuid.uuid4().hex[:8]}.json" for _ in range(opts.workers)]
        workers = [
            start_worker(server, settings.task_queue, db_url, factor, out, code) for out in outs
        ]
        try:
            client = await Client.connect(server.address, data_converter=pydantic_data_converter)
            await client.start_workflow(
                "CampaignWorkflow",
                CampaignInput(campaign_id=marketing_id),
                id=f"campaign-{marketing_id}",
                task_queue=settings.task_queue,
            )
            while await asyncio.to_thread(sent_count, db, marketing_id) == 0:
                await asyncio.sleep(0.1)
            await asyncio.sleep(opts.lead)
            utility_started = time.time()
            handle = await client.start_workflow(
                "CampaignWorkflow",
                CampaignInput(campaign_id=utility_id),
                id=f"campaign-{utility_id}",
                task_queue=settings.task_queue,
            )
            await asyncio.wait_for(handle.result(), opts.timeout)
            utility_done = time.time()
            await CampaignsClient(client, db, settings).cancel(marketing_id, by="bench")
        finally:
            await asyncio.to_thread(stop_workers, workers)
            db.dispose()
    reports = [json.loads(out.read_text()) for out in outs]
    report = {  # each worker process has a sandbox of its own: their sends merged
        "accepted": [send for r in reports for send in r["accepted"]],
        "refused": sum(r["throughput"][NUMBER][1] for r in reports),
    }
    return summarize(report, opts.utility, label, factor, load, utility_started, utility_done)


def summarize(
    report: dict[str, Any],
    utility: int,
    label: str,
    factor: float,
    load: str,
    utility_started: float,
    utility_done: float,
) -> ArmResult:
    utility_phones = {p.lstrip("+") for p in ordinary_numbers(utility, start=UTILITY_START)}
    utility_times: list[float] = []
    marketing_times: list[float] = []
    for to, at in report["accepted"]:
        (utility_times if to in utility_phones else marketing_times).append(at)
    first, last = min(utility_times), max(utility_times)
    per_second = Counter(int(t) for t in utility_times + marketing_times)
    return ArmResult(
        code=label,
        factor=factor,
        load_average_at_start=load,
        utility_seconds=round(utility_done - utility_started, 2),
        utility_first_send_after=round(first - utility_started, 2),
        utility_first_to_last_send=round(last - first, 2),
        utility_sent=len(utility_times),
        marketing_sent_during_utility=sum(
            1 for t in marketing_times if utility_started <= t <= utility_done
        ),
        marketing_between_utility_sends=sum(1 for t in marketing_times if first < t < last),
        busiest_second=max(per_second.values()),
        refused_130429=report["refused"],
    )


async def main_async(opts: argparse.Namespace) -> list[ArmResult]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-priority-"))
    codes: Sequence[Path | None] = [None] + ([opts.compare_with] if opts.compare_with else [])
    results = []
    with dev_server(workdir) as server:
        print(f"dev server {server.version.splitlines()[0]} at {server.address}; logs {workdir}")
        for round_ in range(opts.repeat):
            arms = [(factor, code) for factor in opts.factors for code in codes]
            if round_ % 2:  # alternate which goes first
                arms.reverse()
            for factor, code in arms:
                result = await run_arm(server, opts, factor, code, workdir)
                print("   ", json.dumps(asdict(result)), flush=True)
                results.append(result)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=80, help="the number's msg/s")
    parser.add_argument("--marketing", type=int, default=20_000, help="marketing recipients")
    parser.add_argument("--utility", type=int, default=400, help="utility recipients")
    parser.add_argument("--lead", type=float, default=10.0, help="s of marketing sends first")
    parser.add_argument(
        "--factors",
        type=lambda s: [float(f) for f in s.split(",")],
        default=[1.0],
        help="CAMPAIGNS_SERVER_RATE_FACTOR values, comma-separated",
    )
    parser.add_argument("--compare-with", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--timeout", type=float, default=120.0, help="s for the utility one")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--postgres-url", default=None)
    opts = parser.parse_args()
    results = asyncio.run(main_async(opts))
    print(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
