"""Operator commands: the signals pause/resume/cancel/reschedule and the matching validated
updates request_*, each checked against domain/transitions.py (SPEC §5).
"""

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from whatsapp_campaigns.activities.campaign import CampaignActivities
    from whatsapp_campaigns.domain.commands import (
        CancelRequest,
        Command,
        PauseRequest,
        RescheduleRequest,
        ResumeRequest,
    )
    from whatsapp_campaigns.domain.engine import RescheduleChange
    from whatsapp_campaigns.domain.models import ActorKind, Progress, TimelineEntry
    from whatsapp_campaigns.domain.statuses import CampaignStatus
    from whatsapp_campaigns.domain.transitions import CampaignAction, check_action

from whatsapp_campaigns.workflows.lifecycle import CampaignLifecycle

_COMMANDS: dict[CampaignAction, type[Command]] = {
    CampaignAction.PAUSE: PauseRequest,
    CampaignAction.RESUME: ResumeRequest,
    CampaignAction.CANCEL: CancelRequest,
    CampaignAction.RESCHEDULE: RescheduleRequest,
}


class CommandRefused(Exception):
    """An operator command the rules refuse; the reason is shown to the operator as is."""


class OperatorCommands(CampaignLifecycle):
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
            await self._control(
                CampaignActivities.record_reschedule,
                RescheduleChange(
                    campaign_id=self._campaign_id, send_at=request.send_at, entry=entry
                ),
            )


def _payload_field(payload: Any, name: str) -> str | None:
    value = payload.get(name) if isinstance(payload, dict) else None
    return str(value)[:200] if value is not None else None
