"""What the dashboard's templates show, kept out of the templates: status colors and words,
times in a campaign's timezone, URLs that keep the list's filters, and what each action does."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from whatsapp_campaigns.domain.models import Campaign
from whatsapp_campaigns.domain.statuses import CampaignStatus, MessageStatus
from whatsapp_campaigns.domain.transitions import CampaignAction, check_action

S = CampaignStatus
M = MessageStatus

# One meaning per status (SPEC §3, seeds 000 and 002); the CSS gives each its color.
CAMPAIGN_STATUS_HELP: dict[CampaignStatus, str] = {
    S.DRAFT: "Saved, not scheduled. Edit, test-send, schedule or delete it.",
    S.SCHEDULED: "Waiting for its send time. Reschedule, edit, or cancel until the cut-off.",
    S.QUEUED: "Send time reached; preflight checks (template, credits, sender) are running.",
    S.SENDING: "Messages are going out. Pause or cancel it.",
    S.PAUSED: "Dispatch stopped; the remaining recipients are kept. Resume or cancel it.",
    S.COMPLETED: "Every recipient processed and at least one message accepted by WhatsApp.",
    S.FAILED: "Nothing could be sent: see the reason and the error details.",
    S.CANCELLED: "Stopped for good by a person; the partial report stays available.",
}

MESSAGE_STATUS_HELP: dict[MessageStatus, str] = {
    M.QUEUED: "waiting to be sent",
    M.SENDING: "being sent now",
    M.RETRYING: "waiting for another attempt",
    M.SENT: "accepted by WhatsApp",
    M.DELIVERED: "reached the phone",
    M.READ: "read by the recipient",
    M.RESPONDED: "the recipient replied",
    M.FAILED: "could not be sent or delivered",
    M.INVALID_CONTACT: "not a WhatsApp number",
    M.BLOCKED: "blocked, reported as spam, or over a messaging limit",
    M.SUPPRESSED: "opted out: never sent",
    M.CANCELLED: "not sent: the campaign was cancelled",
}

RUNNING_STATUSES = frozenset({S.QUEUED, S.SENDING, S.PAUSED})
# Pages of campaigns in these statuses refresh themselves.
LIVE_STATUSES = frozenset({S.SCHEDULED, S.QUEUED, S.SENDING, S.PAUSED})

SORTS = {"created": "Created", "scheduled": "Scheduled", "name": "Name", "status": "Status"}
PAGE_SIZES = (25, 50, 100, 200)

# Actions in the order the campaign page offers them, with how each button reads.
ACTION_LABELS: dict[CampaignAction, str] = {
    CampaignAction.EDIT: "Edit",
    CampaignAction.SCHEDULE: "Schedule",
    CampaignAction.LAUNCH: "Send now",
    CampaignAction.TEST_SEND: "Test-send",
    CampaignAction.RESCHEDULE: "Reschedule",
    CampaignAction.PAUSE: "Pause",
    CampaignAction.RESUME: "Resume",
    CampaignAction.CANCEL: "Cancel campaign",
    CampaignAction.RETRY_FAILED: "Retry failed",
    CampaignAction.DUPLICATE: "Duplicate",
    CampaignAction.REPORT: "Report",
    CampaignAction.DELETE: "Delete draft",
}


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_time(
    value: datetime | None, timezone: str | None = "UTC", *, seconds: bool = False
) -> str:
    """`2026-05-01 10:00 CEST` in the given zone; empty for None."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    shown = value.astimezone(zone(timezone))
    return shown.strftime("%Y-%m-%d %H:%M:%S %Z" if seconds else "%Y-%m-%d %H:%M %Z")


def iso_utc(value: datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="seconds")


@lru_cache(maxsize=1)
def timezone_names() -> list[str]:
    return sorted(available_timezones())


class FormError(ValueError):
    """A form value the dashboard cannot use; the message says which and why."""


def parse_send_at(day: str | None, clock: str | None, timezone: str | None) -> datetime:
    """A date and a wall-clock time in an IANA zone, as an aware datetime."""
    if not day or not clock:
        raise FormError("pick a send date and time")
    try:
        when_date = date.fromisoformat(day.strip())
        when_time = time.fromisoformat(clock.strip())
    except ValueError as error:
        raise FormError(f"unreadable date or time: {error}") from error
    try:
        tz = ZoneInfo((timezone or "UTC").strip())
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise FormError(f"unknown timezone {timezone!r} (use an IANA name)") from error
    return datetime.combine(when_date, when_time).replace(tzinfo=tz)


def send_at_fields(campaign: Campaign, now: datetime) -> tuple[str, str]:
    """Date and time to prefill a (re)schedule form with, in the campaign's timezone: its
    current send time, or the next full hour at least an hour from now."""
    when = campaign.send_at
    if when is None or when <= now:
        when = (now + timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    local = when.astimezone(zone(campaign.timezone))
    return local.strftime("%Y-%m-%d"), local.strftime("%H:%M:%S")


def parse_day(value: str | None, *, end: bool = False) -> datetime | None:
    """A list filter's day (UTC): its start, or with `end` the start of the next day."""
    if not value:
        return None
    try:
        day = date.fromisoformat(value.strip())
    except ValueError:
        return None
    start = datetime.combine(day, time(), tzinfo=UTC)
    return start + timedelta(days=1) if end else start


def list_url(params: Mapping[str, str | Sequence[str] | None], **changes: object) -> str:
    """The list page's URL with the current filters and `changes` (None drops a parameter)."""
    merged: dict[str, object] = {k: v for k, v in params.items() if v not in (None, "", [])}
    for key, value in changes.items():
        if value is None or value == "" or value == []:
            merged.pop(key, None)
        else:
            merged[key] = value
    query = urlencode(merged, doseq=True)
    return "/dashboard/" + (f"?{query}" if query else "")


@dataclass(frozen=True)
class CancelNote:
    """Whether cancelling is possible and the rule behind it, in words for the page."""

    allowed: bool
    text: str


def cancel_note(campaign: Campaign, now: datetime) -> CancelNote | None:
    """The cancel cut-off explained (SPEC §4 rule 2), for the statuses where cancel matters."""
    if campaign.status.is_terminal or campaign.status is S.DRAFT:
        return None
    refusal = check_action(
        CampaignAction.CANCEL, campaign.status, campaign.policy, now=now, send_at=campaign.send_at
    )
    minutes = int(campaign.policy.cancel_cutoff.total_seconds() // 60)
    if refusal is not None:
        return CancelNote(False, f"Cancel is not available: {refusal.reason}.")
    if campaign.status is S.SCHEDULED and campaign.send_at is not None:
        cutoff = campaign.send_at - campaign.policy.cancel_cutoff
        return CancelNote(
            True,
            f"You can cancel until {local_time(cutoff, campaign.timezone, seconds=True)}: "
            f"cancellation closes {minutes} minutes before the send time.",
        )
    return CancelNote(
        True,
        "Cancelling stops sending for good: messages in flight finish, the remaining ones "
        "become cancelled, and the partial report stays available.",
    )


def temporal_workflow_url(base_url: str, namespace: str, campaign_id: str) -> str:
    return f"{base_url.rstrip('/')}/namespaces/{namespace}/workflows/campaign-{campaign_id}"


# The preview bubble's button icons (SPEC §10), as WhatsApp draws them.
BUTTON_ICONS = {"URL": "↗", "PHONE_NUMBER": "✆", "COPY_CODE": "⧉", "QUICK_REPLY": "↩"}
