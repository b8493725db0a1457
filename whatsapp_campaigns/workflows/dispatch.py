"""The dispatch loop: one send activity per message in a bounded window, paced by the sender's
limits (throttling, slow-down), guarded by the auto-pause rule, continuing as new every
`MESSAGES_PER_RUN` messages so that no history grows past a few thousand events.
"""

import asyncio
import contextlib
from collections import deque
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any

from temporalio import workflow
from temporalio.common import Priority, RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    is_cancelled_exception,
)

with workflow.unsafe.imports_passed_through():
    from whatsapp_campaigns.activities.campaign import CampaignActivities
    from whatsapp_campaigns.activities.sending import SendActivities
    from whatsapp_campaigns.domain.engine import (
        CampaignInput,
        MessagePage,
        SenderLimited,
        SendMessageInput,
        SendResult,
    )
    from whatsapp_campaigns.domain.errors import ErrorClass
    from whatsapp_campaigns.domain.models import TimelineEntry
    from whatsapp_campaigns.domain.statuses import (
        FAILURE_MESSAGE_STATUSES,
        CampaignStatus,
        MessageStatus,
    )
    from whatsapp_campaigns.workflows.task_queues import send_task_queue

from whatsapp_campaigns.workflows.lifecycle import CampaignLifecycle

# Continue as new after this many sends (≈3.2 history events each), or earlier when the
# history grows past HISTORY_EVENTS_LIMIT while nothing is in flight (long pauses, throttling).
MESSAGES_PER_RUN = 1000
HISTORY_EVENTS_LIMIT = 6000
PAGE_SIZE = 1000
# Sends in flight on one number: two seconds of its rate, at most what its send worker runs at
# once (workers/send_workers.py MAX_CONCURRENT_SENDS), shared by the campaigns sending on it.
MAX_WINDOW = 500
MIN_WINDOW = 10
# How often counts (which include webhook statuses) are re-read from the store: while sending,
# every 5 s if REFRESH_EVERY_SETTLED sends settled meanwhile, else every 30 s (see
# `refresh_while_sending_due`); while paused or throttled every 5 s as long as they change
# (the statuses of the last sends arrive), then twice as long after each unchanged read, up to
# 10 minutes.
REFRESH_WHILE_SENDING = timedelta(seconds=5)
REFRESH_WHILE_SENDING_SLOWLY = timedelta(seconds=30)
REFRESH_EVERY_SETTLED = 250
REFRESH_WHILE_WAITING = timedelta(minutes=10)
SEND_PRIORITY_PATCH = "send-priority-and-fair-share"
# Histories from before the back-off replay with the flat 10 minutes while waiting.
REFRESH_BACKOFF_PATCH = "refresh-while-waiting-backs-off"
# Histories from before it replay with a whole window per campaign.
SHARED_WINDOW_PATCH = "send-window-shared-on-sender"
# Campaigns on a number share it by their windows (weight / the weights on the number), their
# sends first in, first out within a priority (no fairness key). Histories from before it
# replay with equal windows and the fairness key.
WINDOW_BY_WEIGHT_PATCH = "send-window-by-weight-fifo"
# Counts re-read by progress while sending (`refresh_while_sending_due`), and on the workflow
# task that finds them due rather than on a timer. Histories from before it replay with a
# re-read every 5 s, on its timer.
REFRESH_BY_PROGRESS_PATCH = "refresh-by-progress-while-sending"
# The dispatch loop's waits share one timer while it fires no later than a wait needs: most
# waits end on their condition (half the window has come back), and a timer started and
# cancelled by each of them was two history events per refill. Histories from before it
# replay with a timer per wait.
SHARED_WAKE_TIMER_PATCH = "dispatch-waits-share-a-timer"


class CampaignDispatch(CampaignLifecycle):
    def __init__(self, input: CampaignInput) -> None:
        super().__init__(input)
        self._pending: dict[int, workflow.ActivityHandle[SendResult]] = {}
        self._stop_reason: str | None = None  # auth/account errors: pause the campaign
        self._run_dispatched = 0
        self._deferred: deque[int] = deque(self._s.deferred)
        self._buffer: deque[int] = deque()
        self._quiet_interval = REFRESH_WHILE_SENDING  # while waiting; grows while nothing changes
        self._window_shared_by: Fraction | int = 1  # the number's window over this one's
        self._refresh_by_progress = False  # REFRESH_BY_PROGRESS_PATCH, decided at a re-read
        self._settled_at_refresh = 0
        # This workflow sends the messages with id % partitions == partition: all of them,
        # unless it is one partition of a campaign (workflows/send_partition.py).
        self._partition = 0
        self._partitions = 1
        # The timer the waits share (SHARED_WAKE_TIMER_PATCH): when it fires, and its task.
        self._wake: tuple[datetime, asyncio.Task[None]] | None = None

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

        self._stop_wake_timer()
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
        slow_until = self._s.slow_until
        return send_window(
            self._s.sender_rate_per_second,
            # A partition holds a K-th of its campaign's share of the number.
            shared_by=self._window_shared_by * self._partitions,
            slowed_down=slow_until is not None and slow_until > workflow.now(),
        )

    async def _wait(self, ready: Any, until: datetime | None = None) -> None:
        """Wait until `ready()`, a stop, a status change or a due refresh; never past `until`.
        Re-reading by progress, also until a throttle starts or ends: the refresh's timer,
        set for 30 s while sending, must come down to 5 s while waiting."""
        status = self._s.status
        blocked_until = self._dispatch_blocked_until()
        limits = [t for t in (until, self._s.deadline_at) if t is not None]
        limits.append((self._last_refresh or workflow.now()) + self._refresh_interval())
        timeout = (min(limits) - workflow.now()).total_seconds()
        if timeout <= 0:
            return  # whatever is due is handled at the top of the dispatch loop

        def woken() -> bool:
            return (
                ready()
                or self._s.status is not status
                or self._stop_reason is not None
                or self._auto_pause_reason() is not None
                or (
                    self._refresh_by_progress
                    and (
                        self._dispatch_blocked_until() != blocked_until
                        or self._refresh_due_by_progress()
                    )
                )
            )

        if workflow.patched(SHARED_WAKE_TIMER_PATCH):
            timer = self._wake_timer(min(limits))
            await workflow.wait_condition(lambda: timer.done() or woken())
            return
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(woken, timeout=timeout)

    def _wake_timer(self, at: datetime) -> "asyncio.Task[None]":
        """A timer that fires by `at`: the running one if it fires no later (a wait it ends
        early goes back to the top of the dispatch loop, which finds nothing due and waits
        again), else a new one."""
        if self._wake is not None:
            fires_at, timer = self._wake
            if not timer.done() and fires_at <= at:
                return timer
            timer.cancel()
        timer = asyncio.ensure_future(workflow.sleep(at - workflow.now()))
        self._wake = (at, timer)
        return timer

    def _stop_wake_timer(self) -> None:
        """Sending is over: a timer left running would wake the workflow for nothing."""
        if self._wake is not None:
            self._wake[1].cancel()
            self._wake = None

    async def _next_message_id(self) -> int | None:
        if self._deferred:
            return self._deferred.popleft()
        if not self._buffer and not self._s.pages_exhausted:
            ids = await self._control(
                CampaignActivities.page_queued_messages,
                MessagePage(
                    campaign_id=self._campaign_id,
                    after_id=self._s.cursor,
                    limit=PAGE_SIZE,
                    partition=self._partition,
                    partitions=self._partitions,
                ),
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
                priority=self._send_priority(),
            )
        self._pending[message_id] = handle
        self._run_dispatched += 1
        handle.add_done_callback(lambda h: self._on_send_done(message_id, h))

    def _send_priority(self) -> Priority:
        """SPEC §11: on the number's queue, utility/authentication sends go first (priority
        key); within a priority, first in, first out: campaigns share the number by their
        windows (`send_window`, by policy weight), so that each campaign's sends wait, and
        complete, together (many completions per workflow task). Histories from before it
        replay with the campaign as fairness key, those from before that without priority."""
        if not workflow.patched(SEND_PRIORITY_PATCH):
            return Priority.default
        if workflow.patched(WINDOW_BY_WEIGHT_PATCH):
            return Priority(priority_key=self._s.send_priority)
        return Priority(
            priority_key=self._s.send_priority,
            fairness_key=self._campaign_id,
            fairness_weight=self._s.policy.weight,
        )

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
        """Often while messages go out; while paused or throttled (which may last days) often
        only while the counts still change, so that waiting does not fill the history. The
        longest wait: a campaign sending its own messages re-reads sooner by progress
        (`_refresh_is_due`)."""
        if self._sending_by_progress():
            return REFRESH_WHILE_SENDING_SLOWLY
        if self._dispatch_blocked_until() is None and self._sending_now():
            return REFRESH_WHILE_SENDING
        if not workflow.patched(REFRESH_BACKOFF_PATCH):
            return REFRESH_WHILE_WAITING
        return self._quiet_interval

    def _sending_now(self) -> bool:
        return bool(self._pending)

    def _sending_by_progress(self) -> bool:
        """This workflow sends its own messages, and re-reads its counts by progress."""
        return (
            self._refresh_by_progress
            and bool(self._pending)
            and self._dispatch_blocked_until() is None
        )

    def _refresh_is_due(self) -> bool:
        if self._last_refresh is None:
            return True
        if self._sending_by_progress():
            return self._refresh_due_by_progress()
        return workflow.now() - self._last_refresh >= self._refresh_interval()

    def _refresh_due_by_progress(self) -> bool:
        """While sending by progress (`refresh_while_sending_due`). Decides no patch, unlike
        `_refresh_interval`: it is called from wait conditions."""
        if self._last_refresh is None or not self._sending_by_progress():
            return False
        since = workflow.now() - self._last_refresh
        return refresh_while_sending_due(since, self._s.settled - self._settled_at_refresh)

    async def _refresh_due(self) -> bool:
        """Re-read counts from the store when due; True if it did (the loop re-checks state)."""
        if not self._refresh_is_due():
            return False
        before = dict(self._s.counts)
        await self._refresh_counts()
        self._settled_at_refresh = self._s.settled
        # Decided here, in the dispatch, not in _window or _refresh_is_due (called from wait
        # conditions, where a first `patched` would add a command).
        self._refresh_by_progress = workflow.patched(REFRESH_BY_PROGRESS_PATCH)
        if workflow.patched(WINDOW_BY_WEIGHT_PATCH):
            self._window_shared_by = window_shared_by(
                self._s.policy.weight,
                weights_on_sender=self._weights_on_sender,
                campaigns_on_sender=self._campaigns_on_sender,
            )
        else:
            shared = self._campaigns_on_sender > 1 and workflow.patched(SHARED_WINDOW_PATCH)
            self._window_shared_by = self._campaigns_on_sender if shared else 1
        if self._s.counts != before:
            self._quiet_interval = REFRESH_WHILE_SENDING
        else:
            self._quiet_interval = min(2 * self._quiet_interval, REFRESH_WHILE_WAITING)
        return True

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

    # ------------------------------------------------------------------------- throttling

    @workflow.signal(name="sender_limited")
    async def sender_limited(self, notice: SenderLimited) -> None:
        """Internal: a send activity met a WhatsApp limit on this campaign's sender."""
        await workflow.wait_condition(lambda: self._loaded)
        await self._apply_sender_limit(notice)

    async def _apply_sender_limit(self, notice: SenderLimited) -> None:
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


def refresh_while_sending_due(since: timedelta, settled_since: int) -> bool:
    """Whether a campaign sending its messages re-reads its counts, `since` its last read with
    `settled_since` sends settled meanwhile: after 5 s if REFRESH_EVERY_SETTLED sends settled,
    else after 30 s. A re-read is an activity and a workflow task or two: a cost per campaign
    per second, which sixteen slow campaigns paid sixteen times over what one fast campaign
    pays for the same messages (bench/RESULTS.md). A campaign at 50 msg/s or more still
    re-reads every 5 s."""
    if since >= REFRESH_WHILE_SENDING_SLOWLY:
        return True
    return since >= REFRESH_WHILE_SENDING and settled_since >= REFRESH_EVERY_SETTLED


def send_window(rate_per_second: int, *, shared_by: Fraction | int, slowed_down: bool) -> int:
    """Sends one campaign keeps in flight: two seconds of its number's rate (at most
    MAX_WINDOW), shared by the campaigns sending on the number (`shared_by`: the whole window
    over this campaign's part, see `window_shared_by`), so that together they keep what the
    number's send worker runs at once rather than each of them as much (16 campaigns on 4
    numbers kept 8,000 sends scheduled for 2,000 worker slots: bench/RESULTS.md). Their sends
    go first in, first out, so each campaign's part of the number's throughput is its part of
    the window. A quarter of it for a while after WhatsApp said the number's throughput was
    exceeded."""
    whole = min(MAX_WINDOW, max(MIN_WINDOW, 2 * rate_per_second))
    window = max(MIN_WINDOW, int(whole / max(Fraction(1), Fraction(shared_by))))
    if slowed_down:
        window = max(1, window // 4)
    return window


def window_shared_by(
    weight: float, *, weights_on_sender: float | None, campaigns_on_sender: int
) -> Fraction:
    """Into how many parts of this campaign's size the number's window is divided: the weights
    of the campaigns queued or sending on the number (its own included) over its own weight;
    the campaigns on the number when the count did not bring their weights (an older worker).
    Exact (a Fraction), so that equal weights divide the window as an integer division would."""
    if weights_on_sender is None:
        return Fraction(max(1, campaigns_on_sender))
    return max(Fraction(1), Fraction(weights_on_sender) / Fraction(weight))


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
