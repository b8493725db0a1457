"""Campaigns and their timeline: drafts, scheduling, status changes, listing, duplication.

Status changes are checked against `domain.transitions` and written with their timeline entry
in one transaction. Everything the engine calls is safe to repeat: activities retry and replay.
"""

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import ColumnElement, delete, func, or_, select
from sqlalchemy.orm import Session

from whatsapp_campaigns.domain.models import (
    ActorKind,
    Campaign,
    CampaignDraft,
    Template,
    TimelineEntry,
)
from whatsapp_campaigns.domain.policy import CampaignPolicy
from whatsapp_campaigns.domain.statuses import CampaignStatus
from whatsapp_campaigns.domain.transitions import (
    CampaignAction,
    Refusal,
    can_transition,
    check_action,
)
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.errors import ActionRefused, InvalidInput, NotFound
from whatsapp_campaigns.store.models import (
    AudienceRow,
    CampaignRow,
    MessageTemplate,
    SenderNumber,
    TimelineRow,
    utcnow,
)

CampaignSort = Literal["created", "scheduled", "name", "status"]

_SORT_COLUMNS: dict[CampaignSort, ColumnElement[Any]] = {
    "created": CampaignRow.created_at.expression,
    "scheduled": CampaignRow.send_at.expression,
    "name": func.lower(CampaignRow.name),
    "status": CampaignRow.status.expression,
}
_STARTED = frozenset({CampaignStatus.QUEUED, CampaignStatus.SENDING})
_USER_ACTIONS = {a.value: a for a in CampaignAction}
_DEFAULT_WEIGHT: float = CampaignPolicy.model_fields["weight"].default


def new_campaign_id() -> str:
    return uuid.uuid4().hex[:12]


def create_draft(
    db: Database,
    account_id: str,
    draft: CampaignDraft,
    *,
    by: str | None = None,
    actor: ActorKind = ActorKind.USER,
) -> Campaign:
    """Save a new draft of `account_id` (its sender and audience must be the account's)."""
    now = utcnow()
    with db.session() as session:
        _validate_draft(session, account_id, draft)
        row = CampaignRow(
            id=new_campaign_id(),
            account_id=account_id,
            status=CampaignStatus.DRAFT.value,
            send_at=None,
            created_at=now,
            updated_at=now,
            **_draft_columns(draft),
        )
        session.add(row)
        session.flush()
        _add_timeline(
            session,
            row.id,
            TimelineEntry(
                at=now, action="created", to_status=CampaignStatus.DRAFT, actor=actor, by=by
            ),
        )
        return Campaign.model_validate(row)


def edit_draft(
    db: Database,
    campaign_id: str,
    draft: CampaignDraft,
    *,
    by: str | None = None,
    actor: ActorKind = ActorKind.USER,
) -> Campaign:
    """Replace the content of a draft or scheduled campaign (it is read at execution)."""
    now = utcnow()
    with db.session() as session:
        row = _get_row(session, campaign_id, lock=True)
        _refuse_unless_allowed(CampaignAction.EDIT, row)
        _validate_draft(session, row.account_id, draft)
        for column, value in _draft_columns(draft).items():
            setattr(row, column, value)
        row.updated_at = now
        _add_timeline(
            session, campaign_id, TimelineEntry(at=now, action="edit", actor=actor, by=by)
        )
        session.flush()
        return Campaign.model_validate(row)


def get_campaign(db: Database, campaign_id: str) -> Campaign:
    with db.session() as session:
        return Campaign.model_validate(_get_row(session, campaign_id))


def list_campaigns(
    db: Database,
    account_id: str,
    *,
    statuses: Sequence[CampaignStatus] | None = None,
    sender: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    search: str | None = None,
    sort: CampaignSort = "created",
    descending: bool = True,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Campaign], int]:
    """One page of the account's campaigns and how many match in all.

    `since` (inclusive) and `until` (exclusive) bound the creation time; `search` matches a
    case-insensitive part of the name or an exact id. Ties sort by id, so pages are stable;
    unscheduled campaigns sort last by schedule either way.
    """
    conditions: list[ColumnElement[bool]] = [CampaignRow.account_id == account_id]
    if statuses:
        conditions.append(CampaignRow.status.in_([CampaignStatus(s).value for s in statuses]))
    if sender is not None:
        conditions.append(CampaignRow.sender_phone_number_id == sender)
    if since is not None:
        conditions.append(CampaignRow.created_at >= _aware(since, "since"))
    if until is not None:
        conditions.append(CampaignRow.created_at < _aware(until, "until"))
    if search:
        needle = search.strip()
        conditions.append(
            or_(
                func.lower(CampaignRow.name).contains(needle.lower(), autoescape=True),
                CampaignRow.id == needle,
            )
        )
    key = _SORT_COLUMNS[sort]
    order = [key.desc(), CampaignRow.id.desc()] if descending else [key.asc(), CampaignRow.id.asc()]
    if sort == "scheduled":
        order.insert(0, CampaignRow.send_at.is_(None).asc())
    with db.session() as session:
        total = session.scalar(select(func.count()).select_from(CampaignRow).where(*conditions))
        rows = session.scalars(
            select(CampaignRow).where(*conditions).order_by(*order).limit(limit).offset(offset)
        )
        return [Campaign.model_validate(row) for row in rows], int(total or 0)


def running_with_template(
    db: Database, account_id: str, template_name: str, language: str
) -> list[str]:
    """Ids of the account's campaigns that send (or are about to) with this template."""
    running = (CampaignStatus.QUEUED.value, CampaignStatus.SENDING.value)
    with db.session() as session:
        return list(
            session.scalars(
                select(CampaignRow.id)
                .where(
                    CampaignRow.account_id == account_id,
                    CampaignRow.template_name == template_name,
                    CampaignRow.language == language,
                    CampaignRow.status.in_(running),
                )
                .order_by(CampaignRow.id)
            )
        )


def sharing_sender(db: Database, campaign_id: str) -> tuple[int, float]:
    """The campaigns `queued` or `sending` on the sender number of `campaign_id`, itself
    included (at least 1; `queued` ones are in preflight and about to send: counted now, not
    5 s later), and the sum of their policy weights, its own weight included whatever its
    status: the campaign's share of the number's window is its weight over that sum
    (workflows/dispatch.py `send_window`). One indexed read."""
    sender = (
        select(CampaignRow.sender_phone_number_id)
        .where(CampaignRow.id == campaign_id)
        .scalar_subquery()
    )
    running = [CampaignStatus.QUEUED.value, CampaignStatus.SENDING.value]
    statement = select(CampaignRow.status, CampaignRow.policy).where(
        CampaignRow.sender_phone_number_id == sender,
        or_(CampaignRow.status.in_(running), CampaignRow.id == campaign_id),
    )
    campaigns_on_sender, weights = 0, 0.0
    with db.session() as session:
        for status, policy in session.execute(statement):
            if status in running:
                campaigns_on_sender += 1
            weights += float((policy or {}).get("weight", _DEFAULT_WEIGHT))
    return max(1, campaigns_on_sender), weights or _DEFAULT_WEIGHT


def set_schedule(db: Database, campaign_id: str, send_at: datetime, timezone: str) -> Campaign:
    """Set the send time (stored UTC) and the timezone it is shown in, on a draft or a
    scheduled campaign (a reschedule)."""
    send_at = _aware(send_at, "send_at")
    _check_timezone(timezone)
    with db.session() as session:
        row = _get_row(session, campaign_id, lock=True)
        status = CampaignStatus(row.status)
        action = (
            CampaignAction.RESCHEDULE
            if status is CampaignStatus.SCHEDULED
            else (CampaignAction.SCHEDULE)
        )
        _refuse_unless_allowed(action, row)
        row.send_at = send_at
        row.timezone = timezone
        row.updated_at = utcnow()
        session.flush()
        return Campaign.model_validate(row)


def change_status(
    db: Database,
    campaign_id: str,
    to_status: CampaignStatus,
    *,
    action: str,
    reason: str | None = None,
    actor: ActorKind = ActorKind.SYSTEM,
    by: str | None = None,
    at: datetime | None = None,
) -> Campaign:
    """Move the campaign to `to_status` and record it in the timeline, in one transaction.

    Already in `to_status`: returns the campaign unchanged and writes nothing (a replayed
    activity). A transition the rules do not allow raises ActionRefused when `action` is a
    user action (with the rules' own reason), else ValueError. Leaving a finished campaign
    for `queued` (retry failed) starts its next run.
    """
    at = _aware(at, "at") if at is not None else utcnow()
    with db.session() as session:
        row = _get_row(session, campaign_id, lock=True)
        current = CampaignStatus(row.status)
        if current is to_status:
            return Campaign.model_validate(row)
        if not can_transition(current, to_status):
            _refuse_transition(campaign_id, current, to_status, action, row)
        if current.is_terminal:
            row.run_number += 1
            row.finished_at = None
        if to_status in _STARTED and row.started_at is None:
            row.started_at = at
        if to_status.is_terminal:
            row.finished_at = at
        row.status = to_status.value
        row.status_reason = reason
        row.updated_at = utcnow()
        entry = TimelineEntry(
            at=at,
            action=action,
            from_status=current,
            to_status=to_status,
            actor=actor,
            by=by,
            reason=reason,
        )
        _add_timeline(session, campaign_id, entry)
        session.flush()
        return Campaign.model_validate(row)


def record_timeline(db: Database, campaign_id: str, entry: TimelineEntry) -> None:
    """Append a timeline entry (a refused signal, a throttle...) unless the very same entry
    (time, action, refused, to_status) is there already: the engine replays activities."""
    with db.session() as session:
        _get_row(session, campaign_id, lock=True)
        exists = session.scalar(
            select(TimelineRow.id).where(
                TimelineRow.campaign_id == campaign_id,
                TimelineRow.at == entry.at,
                TimelineRow.action == entry.action,
                TimelineRow.refused == entry.refused,
                TimelineRow.to_status == (entry.to_status.value if entry.to_status else None),
            )
        )
        if exists is None:
            _add_timeline(session, campaign_id, entry)


def get_timeline(db: Database, campaign_id: str) -> list[TimelineEntry]:
    """The campaign's timeline, oldest first."""
    with db.session() as session:
        _get_row(session, campaign_id)
        rows = session.scalars(
            select(TimelineRow)
            .where(TimelineRow.campaign_id == campaign_id)
            .order_by(TimelineRow.at, TimelineRow.id)
        )
        return [TimelineEntry.model_validate(row) for row in rows]


def duplicate_campaign(
    db: Database,
    campaign_id: str,
    *,
    by: str | None = None,
    actor: ActorKind = ActorKind.USER,
) -> Campaign:
    """A new draft with the same content and policy, not scheduled (SPEC §4 rule 11)."""
    now = utcnow()
    with db.session() as session:
        source = _get_row(session, campaign_id)
        _refuse_unless_allowed(CampaignAction.DUPLICATE, source)
        row = CampaignRow(
            id=new_campaign_id(),
            account_id=source.account_id,
            name=_copy_name(source.name),
            template_name=source.template_name,
            language=source.language,
            sender_phone_number_id=source.sender_phone_number_id,
            audience_id=source.audience_id,
            status=CampaignStatus.DRAFT.value,
            send_at=None,
            timezone=source.timezone,
            policy=dict(source.policy),
            variables=dict(source.variables or {}),
            duplicated_from=source.id,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.flush()
        _add_timeline(
            session,
            row.id,
            TimelineEntry(
                at=now,
                action="created",
                to_status=CampaignStatus.DRAFT,
                actor=actor,
                by=by,
                reason=f"duplicate of campaign {source.id}",
            ),
        )
        return Campaign.model_validate(row)


def delete_draft(db: Database, campaign_id: str) -> None:
    """Delete a draft and its timeline; anything past draft is kept for its history."""
    with db.session() as session:
        row = _get_row(session, campaign_id, lock=True)
        _refuse_unless_allowed(CampaignAction.DELETE, row)
        session.execute(delete(TimelineRow).where(TimelineRow.campaign_id == campaign_id))
        session.execute(delete(CampaignRow).where(CampaignRow.id == campaign_id))


def _get_row(session: Session, campaign_id: str, *, lock: bool = False) -> CampaignRow:
    row = session.get(CampaignRow, campaign_id, with_for_update=lock)
    if row is None:
        raise NotFound(f"campaign {campaign_id} not found")
    return row


def _validate_draft(session: Session, account_id: str, draft: CampaignDraft) -> None:
    _check_timezone(draft.timezone)
    sender = session.get(SenderNumber, draft.sender_phone_number_id)
    # Another account's number is "unknown" too: its existence is not revealed (SPEC §9).
    if sender is None or sender.account_id != account_id or sender.removed_at is not None:
        raise InvalidInput(
            f"unknown sender number {draft.sender_phone_number_id} for account {account_id}"
        )
    if draft.audience_id is not None:
        audience = session.get(AudienceRow, draft.audience_id)
        if audience is None or audience.account_id != account_id:
            raise InvalidInput(f"unknown audience {draft.audience_id} for account {account_id}")
    row = session.scalar(
        select(MessageTemplate).where(
            MessageTemplate.account_id == account_id,
            MessageTemplate.name == draft.template_name,
            MessageTemplate.language == draft.language,
        )
    )
    if row is not None:  # one not synced yet is refused by the preflight
        problem = template_refusal(Template.model_validate(row), draft.variables)
        if problem:
            raise InvalidInput(problem)


def template_refusal(template: Template, fixed: dict[str, str]) -> str | None:
    """Why a campaign of `template` with these fixed values cannot be created, if it cannot:
    a kind we do not send yet, or a --var name the template does not have."""
    if template.unsupported:
        return (
            f"template {template.name!r} uses {', '.join(template.unsupported)}, which "
            "campaigns cannot send yet; choose a template with text or media header, body, "
            "footer and quick-reply, URL, copy-code or phone-number buttons"
        )
    known = [v.name for v in template.needs()]
    unknown = [name for name in fixed if name not in known]
    if unknown:
        return (
            f"template {template.name!r} has no variable {', '.join(map(repr, unknown))}; "
            f"its variables are: {', '.join(known) or 'none'}"
        )
    return None


def _draft_columns(draft: CampaignDraft) -> dict[str, Any]:
    return {
        "name": draft.name,
        "template_name": draft.template_name,
        "language": draft.language,
        "sender_phone_number_id": draft.sender_phone_number_id,
        "audience_id": draft.audience_id,
        "timezone": draft.timezone,
        "policy": draft.policy.model_dump(mode="json"),
        "variables": dict(draft.variables),
    }


def _refuse_unless_allowed(action: CampaignAction, row: CampaignRow) -> None:
    refusal = check_action(
        action, CampaignStatus(row.status), CampaignPolicy.model_validate(row.policy)
    )
    if refusal is not None:
        raise ActionRefused(refusal)


def _refuse_transition(
    campaign_id: str,
    current: CampaignStatus,
    to_status: CampaignStatus,
    action: str,
    row: CampaignRow,
) -> None:
    reason = (
        f"campaign {campaign_id} cannot go from {current.value} to {to_status.value} "
        f"(action {action!r})"
    )
    user_action = _USER_ACTIONS.get(action)
    if user_action is None:
        raise ValueError(reason)
    _refuse_unless_allowed(user_action, row)
    raise ActionRefused(Refusal(user_action, current, reason))


def _add_timeline(session: Session, campaign_id: str, entry: TimelineEntry) -> None:
    session.add(
        TimelineRow(
            campaign_id=campaign_id,
            at=entry.at,
            action=entry.action,
            from_status=entry.from_status.value if entry.from_status else None,
            to_status=entry.to_status.value if entry.to_status else None,
            actor=entry.actor.value,
            by=entry.by,
            reason=entry.reason,
            refused=entry.refused,
        )
    )


def _copy_name(name: str) -> str:
    suffix = " (copy)"
    return name[: 200 - len(suffix)] + suffix


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{name} must be an aware datetime (with a timezone), got {value}")
    return value


def _check_timezone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise InvalidInput(f"unknown timezone {name!r}") from error
