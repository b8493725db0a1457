"""A campaign sent through K child workflows (policy `send_partitions`, docs/scaling.md): the
same guarantees as one workflow sending it — each message once, pause, resume, cancel,
auto-pause and WhatsApp's limits holding for the whole campaign, its status and counts kept
by the campaign's own workflow.

Timers and the 12 h retry run on the time-skipping server (fixtures `env`, `engine`); pause,
cancel and the guard on the real dev server with the store on SQLite and PostgreSQL."""

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from tests.engine_harness import (
    Engine,
    ordinary_numbers,
    running_engine,
    timeline_actions,
    wait_for_sends,
)
from tests.servers import temporal_dev_server
from whatsapp_campaigns.activities.campaign_watch import CampaignWatch
from whatsapp_campaigns.domain.models import Progress
from whatsapp_campaigns.domain.policy import CampaignPolicy
from whatsapp_campaigns.domain.statuses import CampaignStatus, MessageStatus
from whatsapp_campaigns.workflows.send_partition import partition_workflow_id

LIMITED = "+12025550103"  # the sandbox answers its first send with WhatsApp's messaging limit


def partitioned(k: int, **policy: object) -> CampaignPolicy:
    return CampaignPolicy.model_validate({"send_partitions": k, **policy})


def sent_once(engine: Engine) -> list[str]:
    """Callback data (message ids) of every send WhatsApp accepted, asserting none twice."""
    sent = [s.biz_opaque_callback_data for s in engine.emulator.accepted_sends]
    assert len(sent) == len(set(sent)), "a message was sent twice"
    return sent


async def partition_statuses(engine: Engine, campaign_id: str, k: int) -> set[object]:
    statuses = set()
    for partition in range(k):
        workflow_id = partition_workflow_id(f"campaign-{campaign_id}", partition)
        description = await engine.client.get_workflow_handle(workflow_id).describe()
        statuses.add(description.status)
    return statuses


async def until_partitions_completed(
    engine: Engine, campaign_id: str, k: int, *, within: float, why: str
) -> None:
    """A partition reports to its campaign (a signal) before its own last workflow task: the
    campaign may end a moment before its partitions do."""
    for _ in range(int(within / 0.1)):
        if await partition_statuses(engine, campaign_id, k) == {WorkflowExecutionStatus.COMPLETED}:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"partitions still running {within} s after {why}")


async def until_status(engine: Engine, campaign_id: str, status: CampaignStatus) -> Progress:
    handle = engine.client.get_workflow_handle(f"campaign-{campaign_id}")
    while True:
        progress = await handle.query("progress", result_type=Progress)
        if progress.status is status:
            return progress
        await asyncio.sleep(0.05)


# --------------------------------------------------------------- time-skipping server


async def test_a_partitioned_campaign_sends_each_message_once_through_its_partitions(
    engine: Engine,
) -> None:
    phones = ordinary_numbers(90)
    campaign_id = await engine.campaign(phones, policy=partitioned(3))

    handle = await engine.start(campaign_id)
    final = await handle.result()
    await engine.record_history(handle, "partitioned")
    partition = partition_workflow_id(handle.id, 0)
    await engine.record_history(engine.client.get_workflow_handle(partition), "partition")

    assert final.status is CampaignStatus.COMPLETED
    assert final.total == 90 and sum(final.counts.values()) == 90
    assert len(sent_once(engine)) == 90
    await until_partitions_completed(engine, campaign_id, 3, within=10, why="their campaign ended")


async def test_a_messaging_limit_met_by_one_partition_throttles_the_whole_campaign(
    env: WorkflowEnvironment, engine: Engine
) -> None:
    campaign_id = await engine.campaign([LIMITED, *ordinary_numbers(11)], policy=partitioned(4))
    started = await env.get_current_time()

    final = await engine.run(campaign_id)

    assert final.status is CampaignStatus.COMPLETED
    assert timeline_actions(final).count("throttled") == 1  # recorded once, by the campaign
    assert engine.attempts(campaign_id, LIMITED) == 2
    finished = next(e for e in final.timeline if e.to_status is CampaignStatus.COMPLETED)
    assert finished.at - started >= timedelta(hours=12)
    assert len(sent_once(engine)) == 12


async def test_what_the_partitions_did_not_send_by_the_deadline_fails_with_reason_deadline(
    engine: Engine,
) -> None:
    # The limited number's retry waits 12 h; the deadline comes first.
    policy = partitioned(2, sending_deadline=timedelta(hours=1))
    campaign_id = await engine.campaign([LIMITED, *ordinary_numbers(5)], policy=policy)

    final = await engine.run(campaign_id)

    assert final.status is CampaignStatus.COMPLETED
    assert engine.statuses(campaign_id)[LIMITED] is MessageStatus.FAILED
    assert final.counts.get(MessageStatus.FAILED) == 1
    assert sum(final.counts.values()) == 6


# ------------------------------------------------------------------ real dev server


@pytest.fixture
async def live_engine(dev_server: WorkflowEnvironment, db_url: str) -> AsyncIterator[Engine]:
    async with running_engine(dev_server.client, db_url, sender_rate=200) as running:
        yield running


async def sending_partitioned(
    engine: Engine, recipients: int, k: int
) -> tuple[list[str], str, WorkflowHandle[Any, Any]]:
    """A campaign of `recipients` through `k` partitions, started and under way (40 sent)."""
    engine.emulator.latency = 0.02
    phones = ordinary_numbers(recipients)
    campaign_id = await engine.campaign(phones, policy=partitioned(k))
    handle = await engine.start(campaign_id)
    await wait_for_sends(engine, 40)
    return phones, campaign_id, handle


async def test_pausing_a_partitioned_campaign_stops_every_partition_within_a_second(
    live_engine: Engine,
) -> None:
    engine = live_engine
    phones, _, handle = await sending_partitioned(engine, 600, 4)

    paused = await handle.execute_update(
        "request_pause", {"reason": "check copy", "by": "ops"}, result_type=Progress
    )
    assert paused.status is CampaignStatus.PAUSED
    await asyncio.sleep(1.0)  # sends in flight finish within this second
    sent_at_pause = len(engine.emulator.accepted_sends)
    await asyncio.sleep(1.5)
    assert len(engine.emulator.accepted_sends) == sent_at_pause < len(phones)

    await handle.execute_update("request_resume", {"by": "ops"}, result_type=Progress)
    final = await handle.result()

    assert final.status is CampaignStatus.COMPLETED
    assert len(sent_once(engine)) == len(phones)
    assert [a for a in timeline_actions(final) if a in ("pause", "resume")] == ["pause", "resume"]


async def test_cancelling_a_partitioned_campaign_cancels_what_its_partitions_had_not_sent(
    live_engine: Engine,
) -> None:
    engine = live_engine
    phones, campaign_id, handle = await sending_partitioned(engine, 600, 3)

    await handle.signal("cancel", {"reason": "wrong audience", "by": "ops"})
    final = await handle.result()

    assert final.status is CampaignStatus.CANCELLED
    statuses = engine.statuses(campaign_id)
    cancelled = sum(1 for s in statuses.values() if s is MessageStatus.CANCELLED)
    assert cancelled > 0 and cancelled + len(sent_once(engine)) == len(phones)
    assert final.counts.get(MessageStatus.CANCELLED) == cancelled
    await until_partitions_completed(engine, campaign_id, 3, within=10, why="their campaign ended")


async def test_the_partitions_of_a_terminated_campaign_stop_sending(live_engine: Engine) -> None:
    engine = live_engine
    phones, campaign_id, handle = await sending_partitioned(engine, 3000, 3)

    await handle.terminate(reason="operator stopped it in the Temporal UI")
    # Each partition notices on its next count-refresh tick (5 s while sending fast).
    await until_partitions_completed(
        engine, campaign_id, 3, within=45, why="their campaign was terminated"
    )
    sent = len(sent_once(engine))
    await asyncio.sleep(1.5)
    assert len(engine.emulator.accepted_sends) == sent < len(phones)


async def test_a_workflow_that_does_not_exist_is_not_a_running_campaign(
    dev_server: WorkflowEnvironment,
) -> None:
    watch = CampaignWatch(dev_server.client)
    running = await ActivityEnvironment().run(
        watch.campaign_workflow_running, "campaign-that-never-was"
    )
    assert running is False


async def test_failures_seen_by_the_partitions_auto_pause_the_campaign(
    dev_server: WorkflowEnvironment, db_url: str
) -> None:
    async with running_engine(dev_server.client, db_url, sender_rate=50) as engine:
        engine.emulator.failure_mix = {"invalid_contact": 0.3}  # far above the 5 % guard
        campaign_id = await engine.campaign(ordinary_numbers(300), policy=partitioned(2))
        handle = await engine.start(campaign_id)

        progress = await asyncio.wait_for(
            until_status(engine, campaign_id, CampaignStatus.PAUSED), timeout=60
        )
        assert "auto-paused" in (progress.status_reason or "")
        assert timeline_actions(progress).count("auto_pause") == 1
        await handle.signal("cancel", {"by": "test"})
        final = await handle.result()
    assert final.status is CampaignStatus.CANCELLED
    assert final.counts.get(MessageStatus.CANCELLED, 0) > 0  # it stopped before the end


async def test_partitions_continue_as_new_and_still_send_each_message_once(
    live_engine: Engine,
) -> None:
    # 1,000 sends per run: each of the two partitions continues as new once.
    engine = live_engine
    phones = ordinary_numbers(2300)
    campaign_id = await engine.campaign(phones, policy=partitioned(2))

    final = await engine.run(campaign_id)

    assert final.status is CampaignStatus.COMPLETED
    assert sum(final.counts.values()) == len(phones)
    assert len(sent_once(engine)) == len(phones)
    first = partition_workflow_id(f"campaign-{campaign_id}", 0)
    runs = [run async for run in engine.client.list_workflows(f"WorkflowId = '{first}'")]
    assert len(runs) >= 2


@pytest.fixture
async def short_history_server() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server of its own that suggests continue-as-new after 60 history events, so
    that the campaign and its partitions each continue as new many times in a short run."""
    async with temporal_dev_server("limit.historyCount.suggestContinueAsNew=60") as env:
        yield env


async def test_campaign_and_partitions_continuing_as_new_keep_hearing_each_other(
    short_history_server: WorkflowEnvironment, db_url: str
) -> None:
    # 30 s of sending: the campaign's own history reaches 60 events in about 20 (some 40 by
    # its partitions' start, a count re-read every 5 s adds six: a timer and a workflow task
    # around one local activity); its partitions' histories get there every few dozen sends.
    async with running_engine(short_history_server.client, db_url, sender_rate=20) as engine:
        engine.emulator.latency = 0.02
        phones = ordinary_numbers(600)
        campaign_id = await engine.campaign(phones, policy=partitioned(2))
        handle = await engine.start(campaign_id)
        first_run = (await handle.describe()).run_id

        async def next_run() -> None:
            while (await handle.describe()).run_id == first_run:
                await asyncio.sleep(0.1)

        await asyncio.wait_for(next_run(), timeout=60)  # the campaign continued as new
        # Steered and heard across continue-as-new: a pause holds, a resume finishes.
        await handle.execute_update("request_pause", {"by": "ops"}, result_type=Progress)
        await asyncio.sleep(1.0)
        sent_at_pause = len(engine.emulator.accepted_sends)
        await asyncio.sleep(1.5)
        assert len(engine.emulator.accepted_sends) == sent_at_pause < len(phones)
        await handle.execute_update("request_resume", {"by": "ops"}, result_type=Progress)
        final = await asyncio.wait_for(handle.result(), timeout=120)

    assert final.status is CampaignStatus.COMPLETED
    assert sum(final.counts.values()) == len(phones)
    assert len(sent_once(engine)) == len(phones)
