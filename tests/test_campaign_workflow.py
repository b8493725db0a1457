"""CampaignWorkflow on Temporal's time-skipping test server: timers, 12 h retries and the
3-day deadline pass in moments. Each test runs its own worker and store."""

import asyncio
from datetime import datetime, timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from tests.engine_harness import (
    ORDINARY,
    Engine,
    activity_tasks,
    local_activity_name,
    ordinary_numbers,
    timeline_actions,
    wait_until,
)
from tests.store_helpers import seed_campaign
from whatsapp_campaigns.domain.models import Progress
from whatsapp_campaigns.domain.policy import CampaignPolicy, SuccessCriterion
from whatsapp_campaigns.domain.statuses import CampaignStatus, MessageStatus
from whatsapp_campaigns.store import status_updates
from whatsapp_campaigns.store.fixtures import SANDBOX_ACCOUNT_ID, SANDBOX_SENDER
from whatsapp_campaigns.store.status_updates import StatusUpdate

INVALID, BLOCKED, LIMITED, FLAKY, BROKEN = (
    "+12025550101",
    "+12025550102",
    "+12025550103",
    "+12025550104",
    "+12025550105",
)


async def test_scheduled_campaign_waits_for_its_send_time_then_sends(
    env: WorkflowEnvironment, engine: Engine
) -> None:
    send_at = await env.get_current_time() + timedelta(hours=6)
    campaign_id = await engine.campaign([ORDINARY], send_at=send_at)

    progress = await engine.run(campaign_id)

    assert progress.status is CampaignStatus.COMPLETED
    start = next(e for e in progress.timeline if e.action == "start")
    assert start.at >= send_at
    assert engine.statuses(campaign_id)[ORDINARY] in (
        MessageStatus.SENT,
        MessageStatus.DELIVERED,
        MessageStatus.READ,
    )


async def test_reschedule_moves_the_timer(env: WorkflowEnvironment, engine: Engine) -> None:
    now = await env.get_current_time()
    campaign_id = await engine.campaign([ORDINARY], send_at=now + timedelta(hours=2))
    handle = await engine.start(campaign_id)
    later = now + timedelta(hours=30)

    progress = await handle.execute_update(
        "request_reschedule", {"send_at": later.isoformat(), "by": "ops"}, result_type=Progress
    )
    assert progress.status is CampaignStatus.SCHEDULED
    final = await handle.result()
    await engine.record_history(handle, "reschedule")

    start = next(e for e in final.timeline if e.action == "start")
    assert start.at >= later
    assert "reschedule" in timeline_actions(final)


async def test_cancel_before_the_cutoff_cancels_the_scheduled_campaign(
    env: WorkflowEnvironment, engine: Engine
) -> None:
    now = await env.get_current_time()
    campaign_id = await engine.campaign([ORDINARY], send_at=now + timedelta(hours=1))
    handle = await engine.start(campaign_id)

    await handle.signal("cancel", {"reason": "stock ran out", "by": "maria"})
    final = await handle.result()

    assert final.status is CampaignStatus.CANCELLED
    assert final.status_reason == "stock ran out"
    assert engine.emulator.accepted_sends == []


async def test_cancel_inside_the_cutoff_is_refused_with_the_cutoff_named(
    env: WorkflowEnvironment, engine: Engine
) -> None:
    now = await env.get_current_time()
    campaign_id = await engine.campaign([ORDINARY], send_at=now + timedelta(minutes=3))
    handle = await engine.start(campaign_id)

    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update("request_cancel", {"by": "maria"}, result_type=Progress)
    assert "5 minutes before the send time" in str(refused.value.cause)

    await handle.signal("cancel", {"by": "maria"})
    final = await handle.result()
    await engine.record_history(handle, "cancel_refused_inside_cutoff")
    assert final.status is CampaignStatus.COMPLETED
    refusal = next(e for e in final.timeline if e.refused)
    assert refusal.action == "cancel" and refusal.by == "maria"
    assert "cancellation closed" in (refusal.reason or "")


async def test_invalid_signal_payload_is_recorded_as_refused(
    env: WorkflowEnvironment, engine: Engine
) -> None:
    now = await env.get_current_time()
    campaign_id = await engine.campaign([ORDINARY], send_at=now + timedelta(hours=1))
    handle = await engine.start(campaign_id)

    await handle.signal("reschedule", {"send_at": "next tuesday", "by": "script"})
    await handle.signal("pause", {"reasn": "typo"})
    final = await handle.result()
    await engine.record_history(handle, "invalid_signals")

    refused = [e for e in final.timeline if e.refused]
    assert [e.action for e in refused] == ["reschedule", "pause"]
    assert "invalid reschedule payload" in (refused[0].reason or "")
    assert "reasn" in (refused[1].reason or "")
    assert final.status is CampaignStatus.COMPLETED


async def test_pause_stops_dispatch_and_resume_continues_where_it_stopped(engine: Engine) -> None:
    engine.emulator.latency = 0.02
    phones = ordinary_numbers(400)
    campaign_id = await engine.campaign(phones)
    handle = await engine.start(campaign_id)
    await wait_until(lambda: len(engine.emulator.accepted_sends) >= 20)

    paused = await handle.execute_update(
        "request_pause", {"reason": "check copy", "by": "ops"}, result_type=Progress
    )
    assert paused.status is CampaignStatus.PAUSED
    await asyncio.sleep(1.0)  # in-flight sends finish within this second
    sent_at_pause = len(engine.emulator.accepted_sends)
    await asyncio.sleep(1.5)
    assert len(engine.emulator.accepted_sends) == sent_at_pause
    assert sent_at_pause < len(phones)

    await handle.execute_update("request_resume", {"by": "ops"}, result_type=Progress)
    final = await handle.result()
    await engine.record_history(handle, "pause_resume")

    assert final.status is CampaignStatus.COMPLETED
    sent = [s.biz_opaque_callback_data for s in engine.emulator.accepted_sends]
    assert len(sent) == len(set(sent)) == len(phones)
    assert [a for a in timeline_actions(final) if a in ("pause", "resume")] == ["pause", "resume"]


async def test_transient_errors_are_retried_until_accepted(engine: Engine) -> None:
    campaign_id = await engine.campaign([FLAKY])

    final = await engine.run(campaign_id)

    assert final.status is CampaignStatus.COMPLETED
    assert engine.attempts(campaign_id, FLAKY) == 3
    assert engine.statuses(campaign_id)[FLAKY] is not MessageStatus.FAILED


async def test_three_failed_attempts_end_the_message_failed(engine: Engine) -> None:
    campaign_id = await engine.campaign([BROKEN, ORDINARY])

    final = await engine.run(campaign_id)

    assert engine.statuses(campaign_id)[BROKEN] is MessageStatus.FAILED
    assert engine.attempts(campaign_id, BROKEN) == 3
    assert final.status is CampaignStatus.COMPLETED
    assert final.errors and final.errors[0].count == 1


async def test_throughput_limits_slow_the_campaign_down_without_spending_attempts(
    engine: Engine,
) -> None:
    # WhatsApp takes 3 messages a second from this sender; 9 arrive at once, so most calls are
    # refused for throughput at first (without the in-attempt wait, most of these end failed).
    engine.emulator.set_sender_rate(SANDBOX_SENDER.phone_number_id, 3)
    policy = CampaignPolicy(throughput_backoff=timedelta(seconds=1))
    campaign_id = await engine.campaign([*ordinary_numbers(8), FLAKY], policy=policy)

    final = await engine.run(campaign_id)

    assert final.status is CampaignStatus.COMPLETED
    assert MessageStatus.FAILED not in engine.statuses(campaign_id).values()
    assert engine.attempts(campaign_id, FLAKY) == 3  # two transient errors, then accepted
    assert len(engine.emulator.accepted_sends) == 9


def _count_reads_while_sending(history: WorkflowHistory) -> tuple[float, int]:
    """Seconds from the first send scheduled to the last send closed, and the count re-reads
    (`count_messages`, a local activity) recorded in between."""
    names: dict[int, str] = {}
    sends: list[datetime] = []
    reads: list[datetime] = []
    for event in history.events:
        at = event.event_time.ToDatetime()
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            names[event.event_id] = name
            if name == "send_message" and not sends:
                sends.append(at)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            completed = event.activity_task_completed_event_attributes
            if names[completed.scheduled_event_id] == "send_message":
                sends.append(at)
        elif local_activity_name(event) == "count_messages":
            reads.append(at)
    first, last = sends[0], sends[-1]
    return (last - first).total_seconds(), sum(first < read < last for read in reads)


async def test_a_campaign_runs_its_control_steps_as_local_activities_and_only_its_sends_as_tasks(
    engine: Engine,
) -> None:
    # A control step is one marker in the history, run within the workflow task that asked
    # for it; an activity task would be three events and another workflow task.
    campaign_id = await engine.campaign(ordinary_numbers(3))
    handle = await engine.start(campaign_id)

    final = await handle.result()
    await engine.record_history(handle, "local_control_steps")

    history = await handle.fetch_history()
    local = {name for e in history.events if (name := local_activity_name(e)) is not None}
    assert final.status is CampaignStatus.COMPLETED
    assert activity_tasks(history) == ["send_message"] * 3
    assert local == {
        "load_campaign",
        "record_status_change",
        "preflight",
        "count_messages",
        "page_queued_messages",
        "finish_pending",
        "release_credits",
    }


async def test_a_campaign_sending_slowly_re_reads_its_counts_by_progress_not_every_5_s(
    engine: Engine,
) -> None:
    # WhatsApp takes 3 messages a second from this sender: 30 messages take about 10 s, in
    # which far fewer than 250 settle, so the campaign does not re-read its counts meanwhile
    # (every 5 s it would have twice): a slow campaign costs a re-read per 250 sends or 30 s.
    engine.emulator.set_sender_rate(SANDBOX_SENDER.phone_number_id, 3)
    policy = CampaignPolicy(throughput_backoff=timedelta(seconds=1))
    campaign_id = await engine.campaign(ordinary_numbers(30), policy=policy)
    handle = await engine.start(campaign_id)

    final = await handle.result()
    await engine.record_history(handle, "refresh_by_progress")

    assert final.status is CampaignStatus.COMPLETED
    seconds, reads = _count_reads_while_sending(await handle.fetch_history())
    assert seconds > 6 and reads == 0


async def test_messaging_limit_throttles_the_campaign_and_succeeds_12_hours_later(
    env: WorkflowEnvironment, engine: Engine
) -> None:
    campaign_id = await engine.campaign([LIMITED])
    started = await env.get_current_time()

    handle = await engine.start(campaign_id)
    final = await handle.result()
    await engine.record_history(handle, "messaging_limit")

    assert final.status is CampaignStatus.COMPLETED
    assert engine.attempts(campaign_id, LIMITED) == 2
    assert engine.statuses(campaign_id)[LIMITED] is not MessageStatus.BLOCKED
    throttled = next(e for e in final.timeline if e.action == "throttled")
    assert "messaging limit" in (throttled.reason or "")
    finished = next(e for e in final.timeline if e.to_status is CampaignStatus.COMPLETED)
    assert finished.at - started >= timedelta(hours=12)


async def test_campaign_reports_throttled_until_while_limited(engine: Engine) -> None:
    campaign_id = await engine.campaign([LIMITED, *ordinary_numbers(5)])
    handle = await engine.start(campaign_id)

    async def throttled() -> Progress:
        while True:
            progress = await handle.query("progress", result_type=Progress)
            if progress.throttled_until is not None:
                return progress
            await asyncio.sleep(0.05)

    progress = await asyncio.wait_for(throttled(), timeout=20)
    assert progress.status is CampaignStatus.SENDING
    final = await handle.result()
    assert final.status is CampaignStatus.COMPLETED


async def test_a_throttled_campaign_reads_a_new_status_into_its_own_progress_within_5_s(
    env: WorkflowEnvironment, engine: Engine
) -> None:
    """What the Temporal UI's current details show comes from the workflow's own counts: a
    webhook's status reaches them within 5 s also while the campaign waits 12 h."""
    campaign_id = await engine.campaign([LIMITED, *ordinary_numbers(3)])
    handle = await engine.start(campaign_id)

    async def throttled() -> Progress:
        while True:
            progress = await handle.query("progress", result_type=Progress)
            if progress.throttled_until is not None and not progress.counts.get(
                MessageStatus.QUEUED
            ):
                return progress
            await asyncio.sleep(0.05)

    before = await asyncio.wait_for(throttled(), timeout=20)
    assert not before.counts.get(MessageStatus.DELIVERED)
    sent = engine.provider_ids(campaign_id, MessageStatus.SENT)
    await asyncio.to_thread(
        status_updates.apply_status_updates,
        engine.db,
        [StatusUpdate(sent[0], MessageStatus.DELIVERED, await env.get_current_time())],
    )
    await env.sleep(timedelta(seconds=6))

    progress = await handle.query("progress", result_type=Progress)
    assert progress.throttled_until is not None
    assert progress.counts.get(MessageStatus.DELIVERED) == 1
    await handle.cancel()


async def test_invalid_contact_and_blocked_are_not_retried(engine: Engine) -> None:
    campaign_id = await engine.campaign([INVALID, BLOCKED, ORDINARY])

    await engine.run(campaign_id)

    statuses = engine.statuses(campaign_id)
    assert statuses[INVALID] is MessageStatus.INVALID_CONTACT
    assert statuses[BLOCKED] is MessageStatus.BLOCKED
    assert engine.attempts(campaign_id, INVALID) == 1
    assert engine.attempts(campaign_id, BLOCKED) == 1


async def test_preflight_fails_a_campaign_without_valid_recipients(engine: Engine) -> None:
    campaign_id = await engine.campaign(["not a number", "+1 555"])

    final = await engine.run(campaign_id)

    assert final.status is CampaignStatus.FAILED
    assert "no valid recipient" in (final.status_reason or "")
    assert engine.emulator.accepted_sends == []


async def test_preflight_fails_a_campaign_whose_template_is_not_approved(engine: Engine) -> None:
    campaign_id = await engine.campaign([ORDINARY], template="promo_pending")

    final = await engine.run(campaign_id)

    assert final.status is CampaignStatus.FAILED
    assert "not APPROVED" in (final.status_reason or "")
    assert engine.emulator.accepted_sends == []


async def test_preflight_fails_without_enough_credits_and_sends_nothing(engine: Engine) -> None:
    campaign_id = await engine.campaign(ordinary_numbers(10))
    engine.set_credits(5)

    handle = await engine.start(campaign_id)
    final = await handle.result()
    await engine.record_history(handle, "preflight_insufficient_credits")

    assert final.status is CampaignStatus.FAILED
    assert "credits" in (final.status_reason or "")
    assert engine.emulator.accepted_sends == []
    assert engine.statuses(campaign_id) == {}


async def test_campaign_fails_when_no_message_is_accepted(engine: Engine) -> None:
    campaign_id = await engine.campaign([INVALID, BLOCKED])

    final = await engine.run(campaign_id)

    assert final.status is CampaignStatus.FAILED
    assert "no message was accepted" in (final.status_reason or "")


async def test_campaign_completes_when_one_message_is_accepted(engine: Engine) -> None:
    campaign_id = await engine.campaign([INVALID, BLOCKED, ORDINARY])

    final = await engine.run(campaign_id)

    assert final.status is CampaignStatus.COMPLETED
    assert final.percent_complete == 100.0


async def test_success_on_delivered_waits_for_a_delivery(engine: Engine) -> None:
    policy = CampaignPolicy(
        success_on=SuccessCriterion.DELIVERED, delivery_window=timedelta(hours=1)
    )
    campaign_id = await engine.campaign([ORDINARY], policy=policy)

    final = await engine.run(campaign_id)

    # The in-process sandbox posts no webhooks here, so nothing is ever delivered.
    assert final.status is CampaignStatus.FAILED
    assert "no message was delivered" in (final.status_reason or "")


async def test_messages_not_sent_by_the_deadline_fail_with_reason_deadline(
    engine: Engine,
) -> None:
    policy = CampaignPolicy(sending_deadline=timedelta(hours=1))
    campaign_id = await engine.campaign([LIMITED, ORDINARY], policy=policy)

    final = await engine.run(campaign_id)

    statuses = engine.statuses(campaign_id)
    assert statuses[LIMITED] is MessageStatus.FAILED
    assert final.status is CampaignStatus.COMPLETED
    with engine.db.session() as session:
        from whatsapp_campaigns.store.models import MessageRow

        row = session.query(MessageRow).filter(MessageRow.phone_e164 == LIMITED).one()
        assert row.error_title == "deadline"


async def test_continue_as_new_keeps_counts_and_sends_each_message_once(engine: Engine) -> None:
    phones = ordinary_numbers(1300)
    campaign_id = await engine.campaign(phones)
    handle = await engine.start(campaign_id)
    first_run = (await handle.describe()).run_id

    final = await handle.result()
    await engine.record_history(handle, "continue_as_new")

    assert final.status is CampaignStatus.COMPLETED
    assert final.total == 1300
    assert sum(final.counts.values()) == 1300
    history = await engine.client.get_workflow_handle(handle.id, run_id=first_run).fetch_history()
    assert len(history.events) < 5000
    sent = [s.biz_opaque_callback_data for s in engine.emulator.accepted_sends]
    assert len(sent) == len(set(sent)) == 1300


def _most_sends_in_flight(history: WorkflowHistory) -> int:
    """The most send activities scheduled and not yet closed at any point of a history."""
    sends: set[int] = set()
    in_flight = most = 0
    for event in history.events:
        scheduled = event.activity_task_scheduled_event_attributes
        if (
            event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            and scheduled.activity_type.name == "send_message"
        ):
            sends.add(event.event_id)
            in_flight += 1
            most = max(most, in_flight)
        for closed in (
            event.activity_task_completed_event_attributes,
            event.activity_task_failed_event_attributes,
            event.activity_task_timed_out_event_attributes,
            event.activity_task_canceled_event_attributes,
        ):
            if closed.scheduled_event_id in sends:
                sends.discard(closed.scheduled_event_id)
                in_flight -= 1
    return most


def _campaigns_sending_on_the_number(engine: Engine, count: int, **policy: float) -> None:
    """`count` other campaigns sending on the sandbox number, with `policy` (e.g. weight=6)."""
    for _ in range(count):
        seed_campaign(
            engine.db,
            SANDBOX_ACCOUNT_ID,
            status=CampaignStatus.SENDING,
            sender=SANDBOX_SENDER.phone_number_id,
            policy=policy or None,
        )


async def test_campaigns_sending_on_one_number_share_its_window(engine: Engine) -> None:
    # The number sends 1,000 msg/s: alone, a campaign keeps 500 sends in flight; with 24 other
    # campaigns sending on it, a 25th of that.
    _campaigns_sending_on_the_number(engine, 24)
    campaign_id = await engine.campaign(ordinary_numbers(60))
    handle = await engine.start(campaign_id)

    final = await handle.result()
    await engine.record_history(handle, "shared_window")

    assert final.status is CampaignStatus.COMPLETED
    assert _most_sends_in_flight(await handle.fetch_history()) == 20


async def test_refilling_the_send_window_starts_no_timer_per_refill(engine: Engine) -> None:
    # A window of 20 (24 other campaigns send on the number): 100 messages take eight refills.
    # The waits for a refill share one timer; each started and cancelled one of its own
    # before (two history events per refill, a tenth of a campaign's events besides its sends).
    _campaigns_sending_on_the_number(engine, 24)
    campaign_id = await engine.campaign(ordinary_numbers(100))
    handle = await engine.start(campaign_id)

    final = await handle.result()
    await engine.record_history(handle, "shared_wait_timer")

    history = await handle.fetch_history()
    assert final.status is CampaignStatus.COMPLETED
    assert _most_sends_in_flight(history) == 20
    assert _timers_started_while_sending(history) <= 1


def _timers_started_while_sending(history: WorkflowHistory) -> int:
    """Timers started between the first send scheduled and the last send completed."""
    timers: list[int] = []
    sends: list[int] = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            timers.append(event.event_id)
        elif event.event_type in (
            EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
            EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
        ):
            sends.append(event.event_id)
    return sum(sends[0] < timer < sends[-1] for timer in timers)


async def test_campaigns_sending_on_one_number_share_its_window_by_their_weights(
    engine: Engine,
) -> None:
    # The number sends 1,000 msg/s (a window of 500). Four campaigns of weight 6 send on it:
    # this one, of weight 1, keeps 1/25 of the window in flight (a fifth by count).
    _campaigns_sending_on_the_number(engine, 4, weight=6)
    campaign_id = await engine.campaign(ordinary_numbers(60), policy=CampaignPolicy(weight=1))
    handle = await engine.start(campaign_id)

    final = await handle.result()
    await engine.record_history(handle, "window_by_weight")

    assert final.status is CampaignStatus.COMPLETED
    assert _most_sends_in_flight(await handle.fetch_history()) == 20


async def test_sends_carry_their_template_priority_and_no_fairness_key(engine: Engine) -> None:
    # Within a priority the number's queue is first in, first out: a campaign's sends wait and
    # complete together (campaigns share the number by their windows, not send by send).
    marketing = await engine.campaign(ordinary_numbers(5), template="spring_sale")
    utility = await engine.campaign(ordinary_numbers(5, start=100), template="order_update")
    priorities = set()
    for campaign_id in (marketing, utility):
        handle = await engine.start(campaign_id)
        await handle.result()
        for event in (await handle.fetch_history()).events:
            scheduled = event.activity_task_scheduled_event_attributes
            if scheduled.activity_type.name == "send_message":
                priority = scheduled.priority
                priorities.add((campaign_id, priority.priority_key, priority.fairness_key))

    assert priorities == {(marketing, 3, ""), (utility, 1, "")}


async def test_a_pause_received_around_continue_as_new_holds_in_the_next_run(
    engine: Engine,
) -> None:
    engine.emulator.latency = 0.02
    phones = ordinary_numbers(1300)
    campaign_id = await engine.campaign(phones)
    handle = await engine.start(campaign_id)
    first_run = (await handle.describe()).run_id
    # The first run dispatches 1000 messages, drains them, then continues as new: the pause
    # comes while it drains (at 1000 accepted it may have continued as new already, and the
    # next run dispatched a window before the pause reached it: not the case specified here).
    await wait_until(lambda: len(engine.emulator.accepted_sends) >= 900, timeout=60)

    await handle.signal("pause", {"reason": "hold", "by": "ops"})

    async def next_run() -> None:  # the first run drains its sends, then continues as new
        while (await handle.describe()).run_id == first_run:
            await asyncio.sleep(0.1)

    await asyncio.wait_for(next_run(), timeout=60)
    sent_while_paused = len(engine.emulator.accepted_sends)
    await asyncio.sleep(1.0)

    assert len(engine.emulator.accepted_sends) == sent_while_paused < len(phones)
    progress = await handle.query("progress", result_type=Progress)
    assert progress.status is CampaignStatus.PAUSED  # the pause crossed continue-as-new
    await handle.signal("resume", {"by": "ops"})
    final = await handle.result()
    assert final.status is CampaignStatus.COMPLETED
    assert sum(final.counts.values()) == len(phones)
