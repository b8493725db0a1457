"""CampaignWorkflow: one campaign from its schedule timer to its final status (SPEC §5).

Lifecycle: scheduled (durable timer; reschedule moves it) → queued (preflight, credits reserved)
→ sending (one send activity per message, bounded window) ↔ paused → completed / failed /
cancelled. Operators steer it with the signals pause/resume/cancel/reschedule or the matching
validated updates; `progress` answers what the dashboard and the CLI show.

Deterministic and sandbox-safe: every read and write goes through activities; the workflow only
holds ids, counts and statuses. Sending continues as new every `MESSAGES_PER_RUN` messages so
that no history grows past a few thousand events, whatever the audience size.
"""

import asyncio
import contextlib
from collections import deque
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    is_cancelled_exception,
)

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from whatsapp_campaigns.activities.campaign import CampaignActivities
    from whatsapp_campaigns.activities.sending import SendActivities
    from whatsapp_campaigns.domain.commands import (
        CancelRequest,
        Command,
        PauseRequest,
        RescheduleRequest,
        ResumeRequest,
    )
    from whatsapp_campaigns.domain.engine import (
        CampaignInput,
        CampaignSnapshot,
        CarriedState,
        CountsSnapshot,
        FinishPending,
        MessagePage,
        RescheduleChange,
        SenderLimited,
        SendMessageInput,
        SendResult,
        StatusChange,
    )
    from whatsapp_campaigns.domain.errors import ErrorClass
    from whatsapp_campaigns.domain.models import ActorKind, Progress, TimelineEntry
    from whatsapp_campaigns.domain.policy import CampaignPolicy, SuccessCriterion
    from whatsapp_campaigns.domain.progress import percent_complete, progress_markdown
    from whatsapp_campaigns.domain.statuses import (
        ACCEPTED_MESSAGE_STATUSES,
        DELIVERED_MESSAGE_STATUSES,
        FAILURE_MESSAGE_STATUSES,
        CampaignStatus,
        MessageStatus,
    )
    from whatsapp_campaigns.domain.transitions import CampaignAction, check_action
    from whatsapp_campaigns.workflows.search_attributes import (
        CAMPAIGN_STATUS,
        SCHEDULED_AT,
        SENDER_PHONE_NUMBER_ID,
    )
    from whatsapp_campaigns.workflows.task_queues import send_task_queue

# Continue as new after this many sends (≈3.2 history events each), or earlier when the
# history grows past HISTORY_EVENTS_LIMIT while nothing is in flight (long pauses, throttling).
MESSAGES_PER_RUN = 1000
HISTORY_EVENTS_LIMIT = 6000
PAGE_SIZE = 1000
MAX_WINDOW = 500
TIMELINE_KEPT = 200  # the store keeps every entry; the workflow keeps the latest for `progress`
# How often counts (which include webhook statuses) are re-read from the store.
REFRESH_WHILE_SENDING = timedelta(seconds=5)
REFRESH_WHILE_WAITING = timedelta(minutes=10)
DELIVERY_POLL = timedelta(minutes=1)

CONTROL_OPTIONS: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=60),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=10)),
}

# Statuses in which a run that did not continue from another starts with the preflight.
_PREFLIGHT_STATUSES = (CampaignStatus.QUEUED, CampaignStatus.SENDING, CampaignStatus.PAUSED)

_COMMANDS: dict[CampaignAction, type[Command]] = {
    CampaignAction.PAUSE: PauseRequest,
    CampaignAction.RESUME: ResumeRequest,
    CampaignAction.CANCEL: CancelRequest,
    CampaignAction.RESCHEDULE: RescheduleRequest,
}


class CommandRefused(Exception):
    """An operator command the rules refuse; the reason is shown to the operator as is."""


@workflow.defn(name="CampaignWorkflow")
class CampaignWorkflow:
    @workflow.init
    def __init__(self, input: CampaignInput) -> None:
        self._campaign_id = input.campaign_id
        self._lock = asyncio.Lock()  # one status change (and its store write) at a time
        self._pending: dict[int, workflow.ActivityHandle[SendResult]] = {}
        self._schedule_changed = False
        self._stop_reason: str | None = None  # auth/account errors: pause the campaign
        self._last_refresh: datetime | None = None
        self._run_dispatched = 0
        self._loaded = input.carried is not None
        state = input.carried
        if state is None:
            # Placeholder until the store snapshot is loaded at the start of `run`.
            state = CarriedState(
                status=CampaignStatus.SCHEDULED,
                account_id="",
                sender_phone_number_id="",
                sender_rate_per_second=80,
                policy=CampaignPolicy(),
                send_at=None,
                total=0,
                timeline=[],
                counts={},
                errors=[],
                status_reason=None,
                throttled_until=None,
                slow_until=None,
                deadline_at=None,
                cursor=0,
                deferred=[],
                pages_exhausted=False,
                settled=0,
                failed=0,
                guard_settled_base=0,
                guard_failed_base=0,
            )
        self._s = state
        self._deferred: deque[int] = deque(state.deferred)
        self._buffer: deque[int] = deque()

    # ----------------------------------------------------------------------------- the run

    @workflow.run
    async def run(self, input: CampaignInput) -> Progress:
        if not self._loaded:
            await self._load()
        self._upsert_search_attributes()

        if self._s.status in (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED):
            await self._wait_for_send_time()
        if input.carried is None and self._s.status in _PREFLIGHT_STATUSES:
            await self._preflight()  # idempotent: a restarted or retried campaign runs it again
        if self._s.status in (CampaignStatus.SENDING, CampaignStatus.PAUSED):
            await self._send_all()
        await self._finish()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._progress()

    async def _load(self) -> None:
        snapshot: CampaignSnapshot = await workflow.execute_activity_method(
            CampaignActivities.load_campaign, self._campaign_id, **CONTROL_OPTIONS
        )
        s = self._s
        s.status = snapshot.status
        s.status_reason = snapshot.status_reason
        s.account_id = snapshot.account_id
        s.sender_phone_number_id = snapshot.sender_phone_number_id
        s.policy = snapshot.policy
        s.send_at = snapshot.send_at
        s.timeline = snapshot.timeline[-TIMELINE_KEPT:]
        s.sender_rate_per_second = snapshot.sender_rate_per_second
        s.send_mode = snapshot.send_mode
        self._loaded = True
        if s.status is CampaignStatus.DRAFT:
            await self._change_status(
                CampaignStatus.SCHEDULED, action="schedule", reason="workflow started"
            )

    async def _wait_for_send_time(self) -> None:
        while self._s.status is CampaignStatus.SCHEDULED:
            send_at = self._s.send_at or workflow.now()
            delay = (send_at - workflow.now()).total_seconds()
            if delay <= 0:
                break
            self._schedule_changed = False
            try:
                await workflow.wait_condition(
                    lambda: (
                        self._schedule_changed or self._s.status is not CampaignStatus.SCHEDULED
                    ),
                    timeout=delay,
                )
            except TimeoutError:
                break
        if self._s.status is CampaignStatus.SCHEDULED:
            await self._change_status(
                CampaignStatus.QUEUED, action="start", reason="send time reached"
            )

    async def _preflight(self) -> None:
        result = await workflow.execute_activity_method(
            CampaignActivities.preflight, self._campaign_id, **CONTROL_OPTIONS
        )
        if not result.ok:
            await self._change_status(
                CampaignStatus.FAILED, action="preflight", reason=result.reason
            )
            return
        self._s.total = result.total
        self._s.counts = {MessageStatus.QUEUED: result.queued}
        if result.suppressed:
            self._s.counts[MessageStatus.SUPPRESSED] = result.suppressed
        if self._s.status is CampaignStatus.QUEUED:
            await self._change_status(
                CampaignStatus.SENDING,
                action="preflight",
                reason=(
                    f"{result.queued} messages to send, {result.reserved_credits} credits reserved"
                ),
            )

    # ------------------------------------------------------------------------- sending

    async def _send_all(self) -> None:
        s = self._s
        if s.deadline_at is None:
            s.deadline_at = workflow.now() + s.policy.sending_deadline
        self._send_queue = send_task_queue(workflow.info().task_queue, s.sender_phone_number_id)
        while True:
            if self._stopped():
                break
            if await self._refresh_due():
                continue
            if self._stop_reason is not None:
                reason, self._stop_reason = self._stop_reason, None
                if s.status is CampaignStatus.SENDING:
                    await self._change_status(CampaignStatus.PAUSED, action="pause", reason=reason)
                continue
            if guard := self._auto_pause_reason():
                s.guard_settled_base, s.guard_failed_base = s.settled, s.failed
                await self._change_status(CampaignStatus.PAUSED, action="auto_pause", reason=guard)
                continue
            if self._run_dispatched >= MESSAGES_PER_RUN or self._history_too_long():
                if not self._pending:
                    await self._continue_as_new()
                await self._wait(lambda: not self._pending)
                continue
            next_id = await self._next_message_id()
            if next_id is None:
                if not self._pending:
                    break  # every message has an outcome
                await self._wait(lambda: not self._pending or bool(self._deferred))
                continue
            blocked_until = self._dispatch_blocked_until()
            if blocked_until is not None:
                self._deferred.appendleft(next_id)
                await self._wait(
                    lambda: self._dispatch_blocked_until() is None, until=blocked_until
                )
                continue
            if len(self._pending) >= self._window():
                # Refill in batches, not one send per completion: completions then arrive many
                # per workflow task, which is what keeps the Temporal server's work per
                # message (and the history) small.
                self._deferred.appendleft(next_id)
                await self._wait(lambda: len(self._pending) <= self._window() // 2)
                continue
            self._start_send(next_id)

        await self._settle_in_flight()

    def _stopped(self) -> bool:
        s = self._s
        return s.status.is_terminal or (
            s.deadline_at is not None and workflow.now() >= s.deadline_at
        )

    def _dispatch_blocked_until(self) -> datetime | None:
        """When dispatch may go on, or None if it may go on now. Paused waits for a resume."""
        s = self._s
        if s.status is CampaignStatus.PAUSED:
            return s.deadline_at
        now = workflow.now()
        if s.throttled_until is not None and s.throttled_until > now:
            return s.throttled_until
        return None

    def _window(self) -> int:
        """Sends in flight at once: about two seconds of the sender's rate, capped; a quarter
        of it for a while after WhatsApp said the sender's throughput was exceeded."""
        window = min(MAX_WINDOW, max(10, 2 * self._s.sender_rate_per_second))
        slow_until = self._s.slow_until
        if slow_until is not None and slow_until > workflow.now():
            window = max(1, window // 4)
        return window

    async def _wait(self, ready: Any, until: datetime | None = None) -> None:
        """Wait until `ready()`, a stop, a status change or a due refresh; never past `until`."""
        status = self._s.status
        limits = [t for t in (until, self._s.deadline_at) if t is not None]
        limits.append((self._last_refresh or workflow.now()) + self._refresh_interval())
        timeout = (min(limits) - workflow.now()).total_seconds()
        if timeout <= 0:
            return  # whatever is due is handled at the top of the dispatch loop
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: (
                    ready()
                    or self._s.status is not status
                    or self._stop_reason is not None
                    or self._auto_pause_reason() is not None
                ),
                timeout=timeout,
            )

    async def _next_message_id(self) -> int | None:
        if self._deferred:
            return self._deferred.popleft()
        if not self._buffer and not self._s.pages_exhausted:
            ids: list[int] = await workflow.execute_activity_method(
                CampaignActivities.page_queued_messages,
                MessagePage(
                    campaign_id=self._campaign_id, after_id=self._s.cursor, limit=PAGE_SIZE
                ),
                **CONTROL_OPTIONS,
            )
            self._buffer.extend(ids)
            if ids:
                self._s.cursor = ids[-1]
            if len(ids) < PAGE_SIZE:
                self._s.pages_exhausted = True
        return self._buffer.popleft() if self._buffer else None

    def _start_send(self, message_id: int) -> None:
        policy = self._s.policy
        send = SendMessageInput(campaign_id=self._campaign_id, message_id=message_id)
        # The per-message retry policy of SPEC §4 rule 6. The activity raises ApplicationError
        # with next_retry_delay for the limit classes (12 h for messaging limits) and
        # non_retryable for the classes that would fail the same way again.
        retry_policy = RetryPolicy(
            initial_interval=policy.transient_initial_backoff,
            backoff_coefficient=2.0,
            maximum_interval=policy.transient_max_backoff,
            maximum_attempts=policy.max_attempts,
        )
        cancellation = workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
        handle: workflow.ActivityHandle[SendResult]
        if self._s.send_mode == "local_activity":
            handle = workflow.start_local_activity_method(
                SendActivities.send_message,
                send,
                start_to_close_timeout=timedelta(seconds=90),
                retry_policy=retry_policy,
                local_retry_threshold=timedelta(seconds=30),
                cancellation_type=cancellation,
            )
        else:
            handle = workflow.start_activity_method(
                SendActivities.send_message,
                send,
                task_queue=self._send_queue,
                start_to_close_timeout=timedelta(seconds=90),
                heartbeat_timeout=timedelta(seconds=20),
                retry_policy=retry_policy,
                cancellation_type=cancellation,
            )
        self._pending[message_id] = handle
        self._run_dispatched += 1
        handle.add_done_callback(lambda h: self._on_send_done(message_id, h))

    def _on_send_done(self, message_id: int, handle: "asyncio.Task[SendResult]") -> None:
        self._pending.pop(message_id, None)
        if handle.cancelled():
            return
        error = handle.exception()
        if error is None:
            result = handle.result()
            if result.halted:
                self._deferred.append(message_id)
            elif result.status is not None:
                self._count_outcome(result.status)
            return
        cause = error.cause if isinstance(error, ActivityError) else None
        error_class = _error_class_of(cause)
        if error_class is not None:
            if error_class.stops_campaign:
                self._stop_reason = f"WhatsApp refused the sender: {cause}"
            self._count_outcome(error_class.final_message_status)
        elif isinstance(cause, ApplicationError) or not _is_cancellation(error):
            # Timeouts on the last attempt: the store keeps it `sending` until _finish.
            self._count_outcome(MessageStatus.FAILED)

    def _count_outcome(self, status: MessageStatus) -> None:
        self._s.settled += 1
        if status in FAILURE_MESSAGE_STATUSES:
            self._s.failed += 1

    def _auto_pause_reason(self) -> str | None:
        """SPEC §4 rule 9: after the first N sends, a failure rate above the limit pauses."""
        s = self._s
        policy = s.policy
        if not policy.auto_pause_enabled or s.status is not CampaignStatus.SENDING:
            return None
        settled = s.settled - s.guard_settled_base
        failed = s.failed - s.guard_failed_base
        if (
            settled < policy.auto_pause_min_sends
            or failed / settled <= policy.auto_pause_failure_rate
        ):
            return None
        return (
            f"auto-paused: {failed} of the last {settled} sends failed "
            f"({failed / settled:.1%} > {policy.auto_pause_failure_rate:.0%})"
        )

    def _history_too_long(self) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or (
            info.get_current_history_length() > HISTORY_EVENTS_LIMIT
        )

    def _refresh_interval(self) -> timedelta:
        """Often while messages go out; rarely while paused or throttled (which may last days),
        so that waiting does not fill the history."""
        if self._dispatch_blocked_until() is None and self._pending:
            return REFRESH_WHILE_SENDING
        return REFRESH_WHILE_WAITING

    async def _refresh_due(self) -> bool:
        """Re-read counts from the store when due; True if it did (the loop re-checks state)."""
        now = workflow.now()
        if self._last_refresh is not None and now - self._last_refresh < self._refresh_interval():
            return False
        await self._refresh_counts()
        return True

    async def _refresh_counts(self) -> None:
        self._last_refresh = workflow.now()
        snapshot: CountsSnapshot = await workflow.execute_activity_method(
            CampaignActivities.count_messages, self._campaign_id, **CONTROL_OPTIONS
        )
        self._s.counts = dict(snapshot.counts)
        self._s.errors = list(snapshot.errors)
        self._set_details()

    async def _settle_in_flight(self) -> None:
        """On cancel or deadline, stop what waits in retry backoff; let running sends finish."""
        if self._pending:
            for handle in list(self._pending.values()):
                handle.cancel()
            await workflow.wait_condition(lambda: not self._pending)

    async def _continue_as_new(self) -> None:
        # Handlers first: a signal accepted by this run must not be lost by the next one.
        await workflow.wait_condition(workflow.all_handlers_finished)
        s = self._s
        s.deferred = list(self._deferred) + list(self._buffer)
        workflow.continue_as_new(CampaignInput(campaign_id=self._campaign_id, carried=s))

    # -------------------------------------------------------------------------- finishing

    async def _finish(self) -> None:
        s = self._s
        if s.status is not CampaignStatus.CANCELLED and s.status.is_terminal:
            await self._release_credits()
            await self._refresh_counts()
            return
        if s.status is CampaignStatus.CANCELLED:
            await self._finish_pending(MessageStatus.CANCELLED, "campaign cancelled")
        else:
            deadline_passed = s.deadline_at is not None and workflow.now() >= s.deadline_at
            if deadline_passed:
                await self._finish_pending(MessageStatus.FAILED, "deadline")
            else:
                await self._finish_pending(MessageStatus.FAILED, "no answer from WhatsApp")
        await self._refresh_counts()
        if s.status is not CampaignStatus.CANCELLED:
            await self._wait_for_delivery_if_required()
            accepted = self._count(ACCEPTED_MESSAGE_STATUSES)
            delivered = self._count(DELIVERED_MESSAGE_STATUSES)
            success = delivered if s.policy.success_on is SuccessCriterion.DELIVERED else accepted
            if success > 0:
                await self._change_status(
                    CampaignStatus.COMPLETED,
                    action="finish",
                    reason=f"{accepted} of {s.total} messages accepted by WhatsApp",
                )
            else:
                what = (
                    "delivered" if s.policy.success_on is SuccessCriterion.DELIVERED else "accepted"
                )
                await self._change_status(
                    CampaignStatus.FAILED,
                    action="finish",
                    reason=f"no message was {what} by WhatsApp",
                )
        await self._release_credits()

    async def _finish_pending(self, to_status: MessageStatus, reason: str) -> None:
        await workflow.execute_activity_method(
            CampaignActivities.finish_pending,
            FinishPending(
                campaign_id=self._campaign_id,
                to_status=to_status,
                reason=reason,
                include_sending=True,
            ),
            **CONTROL_OPTIONS,
        )

    async def _wait_for_delivery_if_required(self) -> None:
        """Policy success_on=delivered: wait up to the delivery window for a `delivered`."""
        s = self._s
        if s.policy.success_on is not SuccessCriterion.DELIVERED:
            return
        give_up_at = workflow.now() + s.policy.delivery_window
        while not self._count(DELIVERED_MESSAGE_STATUSES) and self._count(
            ACCEPTED_MESSAGE_STATUSES
        ):
            remaining = (give_up_at - workflow.now()).total_seconds()
            if remaining <= 0:
                break
            await workflow.sleep(min(remaining, DELIVERY_POLL.total_seconds()))
            await self._refresh_counts()

    async def _release_credits(self) -> None:
        await workflow.execute_activity_method(
            CampaignActivities.release_credits, self._campaign_id, **CONTROL_OPTIONS
        )

    def _count(self, statuses: frozenset[MessageStatus]) -> int:
        return sum(n for status, n in self._s.counts.items() if status in statuses)

    # ---------------------------------------------------------------- status and timeline

    async def _change_status(
        self,
        to: CampaignStatus,
        *,
        action: str,
        reason: str | None = None,
        actor: ActorKind = ActorKind.SYSTEM,
        by: str | None = None,
    ) -> None:
        """Change the status, write it with its timeline entry, show it in the UI."""
        async with self._lock:
            s = self._s
            if s.status is to:
                return
            entry = TimelineEntry(
                at=workflow.now(),
                action=action,
                from_status=s.status,
                to_status=to,
                actor=actor,
                by=by,
                reason=reason,
            )
            s.status = to
            s.status_reason = reason
            self._append_timeline(entry)
            self._upsert_search_attributes()
            self._set_details()
            await workflow.execute_activity_method(
                CampaignActivities.record_status_change,
                StatusChange(campaign_id=self._campaign_id, entry=entry),
                **CONTROL_OPTIONS,
            )

    async def _record_entry(self, entry: TimelineEntry) -> None:
        """A timeline entry without a status change (refused commands, throttling)."""
        async with self._lock:
            self._append_timeline(entry)
            self._set_details()
            await workflow.execute_activity_method(
                CampaignActivities.record_timeline,
                StatusChange(campaign_id=self._campaign_id, entry=entry),
                **CONTROL_OPTIONS,
            )

    def _append_timeline(self, entry: TimelineEntry) -> None:
        self._s.timeline.append(entry)
        del self._s.timeline[:-TIMELINE_KEPT]

    def _upsert_search_attributes(self) -> None:
        s = self._s
        updates: list[SearchAttributeUpdate[Any]] = [CAMPAIGN_STATUS.value_set(s.status.value)]
        if s.sender_phone_number_id:
            updates.append(SENDER_PHONE_NUMBER_ID.value_set(s.sender_phone_number_id))
        if s.send_at is not None:
            updates.append(SCHEDULED_AT.value_set(s.send_at))
        workflow.upsert_search_attributes(updates)

    def _set_details(self) -> None:
        workflow.set_current_details(progress_markdown(self._progress()))

    # ------------------------------------------------------------ signals, updates, query

    @workflow.query
    def progress(self) -> Progress:
        return self._progress()

    def _progress(self) -> Progress:
        s = self._s
        throttled = s.throttled_until
        if throttled is not None and throttled <= workflow.now():
            throttled = None
        return Progress(
            campaign_id=self._campaign_id,
            status=s.status,
            total=s.total,
            counts=dict(s.counts),
            percent_complete=percent_complete(s.total, s.counts),
            throttled_until=throttled,
            status_reason=s.status_reason,
            timeline=list(s.timeline),
            errors=list(s.errors),
        )

    @workflow.signal(name="pause")
    async def pause(self, payload: Any = None) -> None:
        await self._signal(CampaignAction.PAUSE, payload)

    @workflow.signal(name="resume")
    async def resume(self, payload: Any = None) -> None:
        await self._signal(CampaignAction.RESUME, payload)

    @workflow.signal(name="cancel")
    async def cancel(self, payload: Any = None) -> None:
        await self._signal(CampaignAction.CANCEL, payload)

    @workflow.signal(name="reschedule")
    async def reschedule(self, payload: Any = None) -> None:
        await self._signal(CampaignAction.RESCHEDULE, payload)

    @workflow.update(name="request_pause")
    async def request_pause(self, payload: Any = None) -> Progress:
        return await self._update(CampaignAction.PAUSE, payload)

    @request_pause.validator
    def _validate_pause(self, payload: Any = None) -> None:
        self._validate(CampaignAction.PAUSE, payload)

    @workflow.update(name="request_resume")
    async def request_resume(self, payload: Any = None) -> Progress:
        return await self._update(CampaignAction.RESUME, payload)

    @request_resume.validator
    def _validate_resume(self, payload: Any = None) -> None:
        self._validate(CampaignAction.RESUME, payload)

    @workflow.update(name="request_cancel")
    async def request_cancel(self, payload: Any = None) -> Progress:
        return await self._update(CampaignAction.CANCEL, payload)

    @request_cancel.validator
    def _validate_cancel(self, payload: Any = None) -> None:
        self._validate(CampaignAction.CANCEL, payload)

    @workflow.update(name="request_reschedule")
    async def request_reschedule(self, payload: Any = None) -> Progress:
        return await self._update(CampaignAction.RESCHEDULE, payload)

    @request_reschedule.validator
    def _validate_reschedule(self, payload: Any = None) -> None:
        self._validate(CampaignAction.RESCHEDULE, payload)

    @workflow.signal(name="sender_limited")
    async def sender_limited(self, notice: SenderLimited) -> None:
        """Internal: a send activity met a WhatsApp limit on this campaign's sender."""
        await workflow.wait_condition(lambda: self._loaded)
        s = self._s
        until = workflow.now() + notice.retry_after
        if notice.error_class is ErrorClass.MESSAGING_LIMITED:
            already_throttled = s.throttled_until is not None and s.throttled_until > workflow.now()
            if s.throttled_until is None or s.throttled_until < until:
                s.throttled_until = until
            if already_throttled:
                return  # every in-flight send reports the same limit; record it once
            await self._record_entry(
                TimelineEntry(
                    at=workflow.now(),
                    action="throttled",
                    from_status=s.status,
                    to_status=s.status,
                    reason=(
                        f"WhatsApp messaging limit reached ({notice.title or notice.code}); "
                        f"dispatch on {s.sender_phone_number_id} stops until "
                        f"{until.isoformat()}, then goes on by itself"
                    ),
                )
            )
        elif notice.error_class is ErrorClass.THROUGHPUT_LIMITED and (
            s.slow_until is None or s.slow_until < until
        ):
            s.slow_until = until
            self._set_details()

    def _validate(self, action: CampaignAction, payload: Any) -> None:
        """Update validators: a malformed payload or a refused action never enters history.
        Before the campaign is loaded the rules cannot be checked yet; the handler does."""
        request = self._parse(action, payload)
        refusal = self._refusal(action, request) if self._loaded else None
        if refusal is not None:
            raise CommandRefused(refusal)

    async def _update(self, action: CampaignAction, payload: Any) -> Progress:
        await workflow.wait_condition(lambda: self._loaded)
        request = self._parse(action, payload)
        refusal = self._refusal(action, request)
        if refusal is not None:
            raise ApplicationError(refusal, type="CommandRefused", non_retryable=True)
        return await self._apply(action, request)

    async def _signal(self, action: CampaignAction, payload: Any) -> None:
        """Signals are fire-and-forget: a refused one is recorded, not raised (SPEC §5)."""
        await workflow.wait_condition(lambda: self._loaded)  # rules need the stored campaign
        try:
            request = self._parse(action, payload)
            refusal = self._refusal(action, request)
        except CommandRefused as refused:
            request, refusal = None, str(refused)
        if refusal is None and request is not None:
            await self._apply(action, request)
            return
        workflow.logger.warning("%s signal refused: %s", action.value, refusal)
        by = request.by if request is not None else _payload_field(payload, "by")
        await self._record_entry(
            TimelineEntry(
                at=workflow.now(),
                action=action.value,
                from_status=self._s.status,
                to_status=self._s.status,
                actor=request.actor if request is not None else ActorKind.USER,
                by=by,
                reason=refusal,
                refused=True,
            )
        )

    def _parse(self, action: CampaignAction, payload: Any) -> Command:
        try:
            return _COMMANDS[action].model_validate(payload if payload is not None else {})
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'payload'}: {e['msg']}"
                for e in error.errors()
            )
            raise CommandRefused(f"invalid {action.value} payload: {problems}") from None

    def _refusal(self, action: CampaignAction, request: Command) -> str | None:
        s = self._s
        refusal = check_action(action, s.status, s.policy, now=workflow.now(), send_at=s.send_at)
        if refusal is not None:
            return refusal.reason
        if isinstance(request, RescheduleRequest) and request.send_at < workflow.now():
            return f"cannot reschedule to {request.send_at.isoformat()}: that time has passed"
        return None

    async def _apply(self, action: CampaignAction, request: Command) -> Progress:
        s = self._s
        reason = getattr(request, "reason", None)
        if action is CampaignAction.PAUSE:
            await self._change_status(
                CampaignStatus.PAUSED,
                action="pause",
                reason=reason,
                actor=request.actor,
                by=request.by,
            )
        elif action is CampaignAction.RESUME:
            s.guard_settled_base, s.guard_failed_base = s.settled, s.failed
            await self._change_status(
                CampaignStatus.SENDING, action="resume", actor=request.actor, by=request.by
            )
        elif action is CampaignAction.CANCEL:
            await self._change_status(
                CampaignStatus.CANCELLED,
                action="cancel",
                reason=reason or "cancelled",
                actor=request.actor,
                by=request.by,
            )
        elif isinstance(request, RescheduleRequest):
            await self._reschedule(request)
        return self._progress()

    async def _reschedule(self, request: RescheduleRequest) -> None:
        async with self._lock:
            s = self._s
            previous = s.send_at
            s.send_at = request.send_at
            self._schedule_changed = True
            entry = TimelineEntry(
                at=workflow.now(),
                action="reschedule",
                from_status=s.status,
                to_status=s.status,
                actor=request.actor,
                by=request.by,
                reason=(
                    f"send time moved from {previous.isoformat() if previous else 'unset'} "
                    f"to {request.send_at.isoformat()}"
                ),
            )
            self._append_timeline(entry)
            self._upsert_search_attributes()
            self._set_details()
            await workflow.execute_activity_method(
                CampaignActivities.record_reschedule,
                RescheduleChange(
                    campaign_id=self._campaign_id, send_at=request.send_at, entry=entry
                ),
                **CONTROL_OPTIONS,
            )


def _payload_field(payload: Any, name: str) -> str | None:
    value = payload.get(name) if isinstance(payload, dict) else None
    return str(value)[:200] if value is not None else None


def _is_cancellation(error: BaseException) -> bool:
    return isinstance(error, CancelledError) or is_cancelled_exception(error)


def _error_class_of(cause: BaseException | None) -> ErrorClass | None:
    """The WhatsApp error class a send activity failed with (its ApplicationError type)."""
    if not isinstance(cause, ApplicationError) or cause.type is None:
        return None
    try:
        return ErrorClass(cause.type)
    except ValueError:
        return None
