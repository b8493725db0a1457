"""The campaign's lifecycle around the dispatch loop: state, schedule timer, preflight, final
status, status changes with their timeline entries, and the `progress` query.

`CampaignLifecycle` is the base of `CampaignWorkflow` (workflows/campaign.py); the dispatch loop
(workflows/dispatch.py) and the operator commands (workflows/commands.py) build on it. Every
read and write goes through activities; the state holds ids, counts and statuses only.
"""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar, overload

from temporalio import exceptions, workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate

with workflow.unsafe.imports_passed_through():
    from whatsapp_campaigns.activities.campaign import CampaignActivities
    from whatsapp_campaigns.domain.engine import (
        CampaignInput,
        CarriedState,
        FinishPending,
        StatusChange,
    )
    from whatsapp_campaigns.domain.models import ActorKind, Progress, TimelineEntry
    from whatsapp_campaigns.domain.policy import CampaignPolicy, SuccessCriterion
    from whatsapp_campaigns.domain.progress import percent_complete, progress_markdown
    from whatsapp_campaigns.domain.statuses import (
        ACCEPTED_MESSAGE_STATUSES,
        DELIVERED_MESSAGE_STATUSES,
        CampaignStatus,
        MessageStatus,
    )
    from whatsapp_campaigns.workflows.search_attributes import (
        CAMPAIGN_STATUS,
        SCHEDULED_AT,
        SENDER_PHONE_NUMBER_ID,
    )

TIMELINE_KEPT = 200  # the store keeps every entry; the workflow keeps the latest for `progress`
DELIVERY_POLL = timedelta(minutes=1)

CONTROL_OPTIONS: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=60),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=10)),
}
# The control steps (the store reads and writes around the sends: load, preflight, status
# changes, pages, count refreshes, finish) run as local activities, in the workflow's own
# worker and within the workflow task that asks: one marker event each, where an activity was
# three events and a workflow task three more (bench/RESULTS.md, "Control steps as local
# activities"). Histories from before it replay with regular activities.
LOCAL_CONTROL_PATCH = "control-steps-as-local-activities"
# A local activity retries within its workflow task, which the worker keeps open (a heartbeat,
# three events, every 8 s): a step the store has not answered in four attempts (1, 2 and 4 s
# apart) goes on as a regular activity, whose retries add nothing to the history however long
# the store is down.
LOCAL_CONTROL_OPTIONS: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=60),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=10), maximum_attempts=4),
}

_Arg = TypeVar("_Arg")
_Result = TypeVar("_Result")


class CampaignLifecycle:
    def __init__(self, input: CampaignInput) -> None:
        self._campaign_id = input.campaign_id
        self._lock = asyncio.Lock()  # one status change (and its store write) at a time
        self._schedule_changed = False
        self._last_refresh: datetime | None = None
        self._campaigns_on_sender = 1  # as of the last count refresh
        self._weights_on_sender: float | None = None  # idem; None from older activity results
        self._loaded = input.carried is not None
        self._local_control: bool | None = None  # LOCAL_CONTROL_PATCH, decided at the first step
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

    # ---------------------------------------------------------------------- control steps

    @overload
    async def _control(
        self, activity: Callable[[Any, _Arg], Awaitable[_Result]], arg: _Arg
    ) -> _Result: ...

    @overload
    async def _control(self, activity: Callable[[Any, _Arg], _Result], arg: _Arg) -> _Result: ...

    async def _control(self, activity: Callable[[Any, _Arg], Any], arg: _Arg) -> Any:
        """Run a control step (an activity method of the campaign worker) with its retries:
        a local activity, a regular one once that has spent its attempts, or a regular one
        where the history began without the patch."""
        if self._local_control is None:
            self._local_control = workflow.patched(LOCAL_CONTROL_PATCH)
        if self._local_control:
            try:
                return await workflow.execute_local_activity_method(
                    activity, arg, **LOCAL_CONTROL_OPTIONS
                )
            except (exceptions.ApplicationError, exceptions.TimeoutError) as error:
                # A local activity's last failure comes as is, not as an ActivityError.
                if isinstance(error, exceptions.ApplicationError) and error.non_retryable:
                    raise  # refused for good: as it would be as a regular activity
                workflow.logger.warning(
                    "campaign %s: %s failed as a local activity (%s); retrying it as an activity",
                    self._campaign_id,
                    getattr(activity, "__name__", activity),
                    error,
                )
        return await workflow.execute_activity_method(activity, arg, **CONTROL_OPTIONS)

    # ------------------------------------------------------------------- before sending

    async def _load(self) -> None:
        snapshot = await self._control(CampaignActivities.load_campaign, self._campaign_id)
        s = self._s
        s.status = snapshot.status
        s.status_reason = snapshot.status_reason
        s.account_id = snapshot.account_id
        s.sender_phone_number_id = snapshot.sender_phone_number_id
        s.policy = snapshot.policy
        s.send_at = snapshot.send_at
        s.timeline = snapshot.timeline[-TIMELINE_KEPT:]
        s.sender_rate_per_second = snapshot.sender_rate_per_second
        s.send_priority = snapshot.send_priority
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
        result = await self._control(CampaignActivities.preflight, self._campaign_id)
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
        await self._control(
            CampaignActivities.finish_pending,
            FinishPending(
                campaign_id=self._campaign_id,
                to_status=to_status,
                reason=reason,
                include_sending=True,
            ),
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
        await self._control(CampaignActivities.release_credits, self._campaign_id)

    def _count(self, statuses: frozenset[MessageStatus]) -> int:
        return sum(n for status, n in self._s.counts.items() if status in statuses)

    async def _refresh_counts(self) -> None:
        self._last_refresh = workflow.now()
        snapshot = await self._control(CampaignActivities.count_messages, self._campaign_id)
        self._s.counts = dict(snapshot.counts)
        self._s.errors = list(snapshot.errors)
        self._campaigns_on_sender = snapshot.campaigns_on_sender
        self._weights_on_sender = snapshot.weights_on_sender
        self._set_details()

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
            await self._control(
                CampaignActivities.record_status_change,
                StatusChange(campaign_id=self._campaign_id, entry=entry),
            )

    async def _record_entry(self, entry: TimelineEntry) -> None:
        """A timeline entry without a status change (refused commands, throttling)."""
        async with self._lock:
            self._append_timeline(entry)
            self._set_details()
            await self._control(
                CampaignActivities.record_timeline,
                StatusChange(campaign_id=self._campaign_id, entry=entry),
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

    # ------------------------------------------------------------------------------ query

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
