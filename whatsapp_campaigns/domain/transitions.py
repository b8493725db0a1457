"""Which action is allowed in which campaign status, and why not otherwise (SPEC §3, §4).

This table is the single source of truth: the workflow, the REST API, the CLI and the dashboard
all ask `check_action` before acting, and show its refusal reason as is.
"""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from whatsapp_campaigns.domain.policy import CampaignPolicy
from whatsapp_campaigns.domain.statuses import CampaignStatus

S = CampaignStatus


class CampaignAction(StrEnum):
    EDIT = "edit"
    SET_AUDIENCE = "set_audience"
    SCHEDULE = "schedule"
    LAUNCH = "launch"
    TEST_SEND = "test_send"
    DELETE = "delete"
    DUPLICATE = "duplicate"
    RESCHEDULE = "reschedule"
    CANCEL = "cancel"
    PAUSE = "pause"
    RESUME = "resume"
    REPORT = "report"
    RETRY_FAILED = "retry_failed"


A = CampaignAction

ALLOWED_ACTIONS: dict[CampaignStatus, frozenset[CampaignAction]] = {
    S.DRAFT: frozenset(
        {A.EDIT, A.SET_AUDIENCE, A.SCHEDULE, A.LAUNCH, A.TEST_SEND, A.DELETE, A.DUPLICATE}
    ),
    # Content stays editable until the timer fires; it is read (locked) at execution.
    S.SCHEDULED: frozenset({A.EDIT, A.RESCHEDULE, A.CANCEL, A.DUPLICATE, A.TEST_SEND}),
    S.QUEUED: frozenset({A.PAUSE, A.CANCEL, A.DUPLICATE, A.REPORT}),
    S.SENDING: frozenset({A.PAUSE, A.CANCEL, A.DUPLICATE, A.REPORT}),
    S.PAUSED: frozenset({A.RESUME, A.CANCEL, A.DUPLICATE, A.REPORT}),
    S.COMPLETED: frozenset({A.REPORT, A.RETRY_FAILED, A.DUPLICATE}),
    S.FAILED: frozenset({A.REPORT, A.RETRY_FAILED, A.DUPLICATE}),
    S.CANCELLED: frozenset({A.REPORT, A.DUPLICATE}),
}

# Status changes the engine may make; anything else is a bug and is refused.
ALLOWED_TRANSITIONS: dict[CampaignStatus, frozenset[CampaignStatus]] = {
    S.DRAFT: frozenset({S.SCHEDULED, S.QUEUED}),
    S.SCHEDULED: frozenset({S.QUEUED, S.CANCELLED, S.FAILED}),
    S.QUEUED: frozenset({S.SENDING, S.PAUSED, S.FAILED, S.CANCELLED}),
    S.SENDING: frozenset({S.PAUSED, S.COMPLETED, S.FAILED, S.CANCELLED}),
    S.PAUSED: frozenset({S.SENDING, S.COMPLETED, S.FAILED, S.CANCELLED}),
    # Retry failed starts a new run of a finished campaign.
    S.COMPLETED: frozenset({S.QUEUED}),
    S.FAILED: frozenset({S.QUEUED}),
    S.CANCELLED: frozenset(),
}


def can_transition(current: CampaignStatus, new: CampaignStatus) -> bool:
    return new in ALLOWED_TRANSITIONS[current]


@dataclass(frozen=True)
class Refusal:
    """Why an action is refused, in words an operator can act on."""

    action: CampaignAction
    status: CampaignStatus
    reason: str

    def __str__(self) -> str:
        return self.reason


def allowed_actions(
    status: CampaignStatus,
    policy: CampaignPolicy,
    *,
    now: datetime | None = None,
    send_at: datetime | None = None,
) -> list[CampaignAction]:
    """The actions to offer for a campaign right now (for buttons and help text)."""
    return [
        a
        for a in CampaignAction
        if check_action(a, status, policy, now=now, send_at=send_at) is None
    ]


def check_action(
    action: CampaignAction,
    status: CampaignStatus,
    policy: CampaignPolicy,
    *,
    now: datetime | None = None,
    send_at: datetime | None = None,
) -> Refusal | None:
    """None when `action` is allowed on a campaign in `status`, else the refusal and its reason.

    `now` and `send_at` (aware datetimes) are needed for the cancel cut-off of a scheduled
    campaign; without them the cut-off is not checked.
    """
    if action not in ALLOWED_ACTIONS[status]:
        return Refusal(action, status, _not_allowed_reason(action, status))
    if action is A.CANCEL:
        if status is S.SCHEDULED and now is not None and send_at is not None:
            cutoff_at = send_at - policy.cancel_cutoff
            if now >= cutoff_at:
                minutes = int(policy.cancel_cutoff.total_seconds() // 60)
                return Refusal(
                    action,
                    status,
                    f"cancellation closed at {cutoff_at.isoformat()} "
                    f"({minutes} minutes before the send time {send_at.isoformat()})",
                )
        if status in (S.QUEUED, S.SENDING, S.PAUSED) and policy.lock_when_sending:
            return Refusal(
                action,
                status,
                f"the campaign is {status.value} and its policy locks it once sending starts "
                "(lock_when_sending)",
            )
    return None


def _not_allowed_reason(action: CampaignAction, status: CampaignStatus) -> str:
    verb = action.value.replace("_", " ")
    if status.is_terminal:
        return f"cannot {verb}: the campaign is {status.value} (finished)"
    if action is A.RESUME:
        return f"cannot resume: the campaign is {status.value}, not paused"
    if action is A.PAUSE and status in (S.DRAFT, S.SCHEDULED):
        return f"cannot pause: the campaign is {status.value} and has not started sending"
    if action in (A.EDIT, A.SET_AUDIENCE) and status not in (S.DRAFT, S.SCHEDULED):
        return f"cannot {verb}: content is locked once the campaign is {status.value}"
    if action is A.RESCHEDULE:
        return f"cannot reschedule: only a scheduled campaign can move (it is {status.value})"
    if action in (A.SCHEDULE, A.LAUNCH):
        return f"cannot {verb}: the campaign is already {status.value}"
    return f"cannot {verb}: not allowed while the campaign is {status.value}"
