"""Per-message operations of the engine: materialize, page, count, finish (a send's attempts:
store/attempts.py).

Every function is one transaction and safe to repeat, because activities retry and replay.
Bulk paths are set-based: a million messages are created by one INSERT ... SELECT.
"""

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    and_,
    case,
    exists,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from whatsapp_campaigns.domain.errors import ErrorClass
from whatsapp_campaigns.domain.models import ErrorCount
from whatsapp_campaigns.domain.statuses import (
    FAILURE_MESSAGE_STATUSES,
    MessageStatus,
)
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.models import (
    CampaignRow,
    MessageRow,
    OptOut,
    RecipientRow,
    utcnow,
)

# The column that records when a message reached each status.
STATUS_TIMESTAMP_COLUMN: dict[MessageStatus, str] = {
    MessageStatus.QUEUED: "queued_at",
    MessageStatus.SENDING: "sending_at",
    MessageStatus.SENT: "sent_at",
    MessageStatus.DELIVERED: "delivered_at",
    MessageStatus.READ: "read_at",
    MessageStatus.RESPONDED: "responded_at",
    MessageStatus.FAILED: "failed_at",
    MessageStatus.INVALID_CONTACT: "failed_at",
    MessageStatus.BLOCKED: "failed_at",
}


# What a message ends as when WhatsApp did not accept it, as far as we know: refused, or given up
# by us (cancel, deadline, no answer). Its WhatsApp id turning up after all (a late answer, or
# a webhook naming our message) proves it was accepted: it is then sent, whatever we decided.
UNSENT_FINAL_STATUSES = FAILURE_MESSAGE_STATUSES | {MessageStatus.CANCELLED}


def status_in(statuses: Collection[MessageStatus]) -> ColumnElement[bool]:
    """`status IN (...)`, the statuses bound one by one: unlike a list bound as a whole, this
    can run with many parameter sets at once (executemany: store/attempts.py)."""
    return MessageRow.status.in_([literal(value) for value in sorted(s.value for s in statuses)])


def given_up_before_accepted() -> ColumnElement[bool]:
    """The message has no WhatsApp id yet and we gave it a not-sent final status."""
    return MessageRow.provider_message_id.is_(None) & status_in(UNSENT_FINAL_STATUSES)


def reopened_if(condition: ColumnElement[bool], status: MessageStatus) -> dict[str, Any]:
    """UPDATE values that, where `condition` holds, put the message in `status` and drop the
    error we recorded when giving it up (its code and title no longer apply)."""
    return {
        "status": case((condition, status.value), else_=MessageRow.status),
        "error_class": case((condition, None), else_=MessageRow.error_class),
        "error_code": case((condition, None), else_=MessageRow.error_code),
        "error_title": case((condition, None), else_=MessageRow.error_title),
        "failed_at": case((condition, None), else_=MessageRow.failed_at),
    }


def recipient_is_suppressed(account_id: str) -> ColumnElement[bool]:
    """Suppressed at import, or opted out since: such a recipient is never sent to."""
    opted_out = exists().where(
        and_(OptOut.account_id == account_id, OptOut.phone_e164 == RecipientRow.phone_e164)
    )
    return RecipientRow.suppressed.is_(True) | opted_out


@dataclass(frozen=True)
class MaterializeResult:
    total: int
    queued: int
    suppressed: int


def materialize_messages(
    db: Database, campaign_id: str, *, invalid: Mapping[int, str] | None = None
) -> MaterializeResult:
    """Create one message per recipient of the campaign's audience (once).

    Suppressed recipients and numbers opted out since the import become `suppressed`: they are
    reported but never sent. The recipients in `invalid` (recipient id -> reason: template
    values that break a rule, left out by policy skip_invalid) become `failed` with the reason,
    in the same transaction. Calling it again returns the counts and creates nothing.
    """
    with db.session() as session:
        campaign = session.get(CampaignRow, campaign_id)
        if campaign is None or campaign.audience_id is None:
            raise LookupError(f"campaign {campaign_id} has no audience")
        already = session.scalar(
            select(func.count())
            .select_from(MessageRow)
            .where(MessageRow.campaign_id == campaign_id)
        )
        if not already:
            now = utcnow()
            is_suppressed = recipient_is_suppressed(campaign.account_id)
            for status, condition in (
                (MessageStatus.QUEUED, ~is_suppressed),
                (MessageStatus.SUPPRESSED, is_suppressed),
            ):
                rows = select(
                    literal(campaign_id),
                    RecipientRow.id,
                    RecipientRow.phone_e164,
                    literal(status.value),
                    literal(0),
                    literal(now, type_=MessageRow.__table__.c.queued_at.type),
                ).where(RecipientRow.audience_id == campaign.audience_id, condition)
                session.execute(
                    insert(MessageRow).from_select(
                        [
                            "campaign_id",
                            "recipient_id",
                            "phone_e164",
                            "status",
                            "attempts",
                            "queued_at",
                        ],
                        rows,
                    )
                )
            _fail_invalid(session, campaign_id, invalid or {}, now)
        counts = _counts(session, campaign_id)
    total = sum(counts.values())
    return MaterializeResult(
        total=total,
        queued=counts.get(MessageStatus.QUEUED, 0),
        suppressed=counts.get(MessageStatus.SUPPRESSED, 0),
    )


def _fail_invalid(
    session: Session, campaign_id: str, invalid: Mapping[int, str], now: datetime
) -> None:
    by_reason: dict[str, list[int]] = {}
    for recipient_id, reason in invalid.items():
        by_reason.setdefault(reason, []).append(recipient_id)
    for reason, ids in by_reason.items():
        for start in range(0, len(ids), _IN_CHUNK):
            session.execute(
                update(MessageRow)
                .where(
                    MessageRow.campaign_id == campaign_id,
                    MessageRow.status == MessageStatus.QUEUED.value,
                    MessageRow.recipient_id.in_(ids[start : start + _IN_CHUNK]),
                )
                .values(
                    status=MessageStatus.FAILED.value,
                    error_class=ErrorClass.TEMPLATE.value,
                    error_title=reason,
                    failed_at=now,
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )


_IN_CHUNK = 500  # ids per IN (...): under SQLite's bound-parameter limit


def page_message_ids(
    db: Database,
    campaign_id: str,
    *,
    after_id: int = 0,
    limit: int = 1000,
    status: MessageStatus = MessageStatus.QUEUED,
    partition: int = 0,
    partitions: int = 1,
) -> list[int]:
    """The next `limit` message ids in `status` after `after_id` (keyset paging, by id); of a
    campaign sent in `partitions` parts, only those of `partition` (id % partitions)."""
    if not 0 <= partition < partitions:
        raise ValueError(f"partition {partition} is not one of 0..{partitions - 1}")
    query = select(MessageRow.id).where(
        MessageRow.campaign_id == campaign_id,
        MessageRow.status == status.value,
        MessageRow.id > after_id,
    )
    if partitions > 1:
        query = query.where(MessageRow.id % partitions == partition)
    with db.session() as session:
        return list(session.scalars(query.order_by(MessageRow.id).limit(limit)))


def finish_pending(
    db: Database,
    campaign_id: str,
    new_status: MessageStatus,
    *,
    reason: str,
    statuses: Collection[MessageStatus] = (MessageStatus.QUEUED, MessageStatus.RETRYING),
) -> int:
    """Move every message still waiting to a final status in one statement; returns how many.

    Cancel uses `cancelled`; the sending deadline uses `failed` with reason "deadline". A
    failure's reason replaces the last attempt's error as a whole (class, code and title
    belong together): "deadline" is ours, not WhatsApp error 130429.
    """
    now = utcnow()
    values: dict[str, Any] = {"status": new_status.value, "updated_at": now}
    if new_status in FAILURE_MESSAGE_STATUSES:
        values |= {
            "error_class": ErrorClass.FAILED.value,
            "error_code": None,
            "error_title": reason,
            "failed_at": now,
        }
    with db.session() as session:
        result = session.execute(
            update(MessageRow)
            .where(
                MessageRow.campaign_id == campaign_id,
                MessageRow.status.in_([s.value for s in statuses]),
            )
            .values(**values)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]


# Failures that a new run may fix: generic failures, the deadline, the sender's messaging limit
# and WhatsApp's own errors. Invalid contacts and blocks would fail the same way again, and so
# would a recipient whose template values failed our checks (class `template`, no WhatsApp code:
# the retry run reuses the same values and would send them to WhatsApp unchecked).
def requeue_failed(db: Database, campaign_id: str) -> int:
    """Put the retriable failed messages of a finished campaign back in `queued` for a new run."""
    with db.session() as session:
        result = session.execute(
            update(MessageRow)
            .where(
                MessageRow.campaign_id == campaign_id,
                (
                    (MessageRow.status == MessageStatus.FAILED.value)
                    & ~(
                        (MessageRow.error_class == ErrorClass.TEMPLATE.value)
                        & MessageRow.error_code.is_(None)
                    )
                )
                | (
                    (MessageRow.status == MessageStatus.BLOCKED.value)
                    & (MessageRow.error_class == ErrorClass.MESSAGING_LIMITED.value)
                ),
                MessageRow.provider_message_id.is_(None),
            )
            .values(
                status=MessageStatus.QUEUED.value,
                attempts=0,
                error_class=None,
                error_code=None,
                error_title=None,
                failed_at=None,
                queued_at=utcnow(),
                updated_at=utcnow(),
            )
        )
        return int(result.rowcount)  # type: ignore[attr-defined]


def count_by_status(db: Database, campaign_id: str) -> dict[MessageStatus, int]:
    with db.session() as session:
        return _counts(session, campaign_id)


def _counts(session: Session, campaign_id: str) -> dict[MessageStatus, int]:
    rows = session.execute(
        select(MessageRow.status, func.count())
        .where(MessageRow.campaign_id == campaign_id)
        .group_by(MessageRow.status)
    )
    return {MessageStatus(status): int(n) for status, n in rows}


def error_summary(db: Database, campaign_id: str, limit: int = 20) -> list[ErrorCount]:
    """Failed messages grouped by WhatsApp error code and title, most frequent first."""
    with db.session() as session:
        rows = session.execute(
            select(MessageRow.error_code, MessageRow.error_title, func.count().label("n"))
            .where(
                MessageRow.campaign_id == campaign_id,
                MessageRow.status.in_([s.value for s in FAILURE_MESSAGE_STATUSES]),
            )
            .group_by(MessageRow.error_code, MessageRow.error_title)
            .order_by(func.count().desc())
            .limit(limit)
        )
        return [ErrorCount(code=code, title=title or "", count=int(n)) for code, title, n in rows]
