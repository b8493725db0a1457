"""What WhatsApp tells us after a send: status webhooks and inbound replies (SPEC §3, §4 rules
10 and 12, §6 Webhooks).

Both are applied idempotently and monotonically: every write is a conditional
`UPDATE ... WHERE status IN statuses_that_can_become(new)`, so a duplicated, late or reordered
webhook matches no row and changes nothing. A whole webhook batch costs a handful of statements
(one UPDATE per target status and chunk of ids), not one round trip per status.
"""

import functools
import logging
from collections import defaultdict
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import ValidationError
from sqlalchemy import Update, bindparam, func, literal_column, select, update
from sqlalchemy.orm import Session

from whatsapp_campaigns.domain.errors import ErrorClass
from whatsapp_campaigns.domain.policy import (
    DEFAULT_STOP_KEYWORDS,
    CampaignPolicy,
    matching_stop_keyword,
)
from whatsapp_campaigns.domain.statuses import (
    MESSAGE_STATUS_RANK,
    MessageStatus,
    statuses_that_can_become,
)
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.dml import rowcount
from whatsapp_campaigns.store.messages import (
    STATUS_TIMESTAMP_COLUMN,
    given_up_before_accepted,
    reopened_if,
)
from whatsapp_campaigns.store.models import (
    Account,
    CampaignRow,
    MessageRow,
    SenderNumber,
    UTCDateTime,
    utcnow,
)
from whatsapp_campaigns.store.optouts import opt_out

log = logging.getLogger(__name__)

# The statuses a status webhook can carry (the Cloud API's sent/delivered/read/failed).
WEBHOOK_STATUSES = frozenset(
    {MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.FAILED}
)
# A reply without context is credited to the latest message that reached the number this long
# before it (WhatsApp's customer service window is 24 h too).
REPLY_WINDOW = timedelta(hours=24)
_REPLYABLE_STATUSES = (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ)
# Ids per IN (...) list: each id binds up to 4 parameters (IN list plus CASE arms), which
# stays far below SQLite's limit of 32,766 bound parameters.
_CHUNK = 500


@dataclass(frozen=True)
class StatusUpdate:
    """One entry of a status webhook's `statuses` array."""

    provider_message_id: str
    status: MessageStatus
    at: datetime
    # Our message id (`str(messages.id)`), echoed back by WhatsApp from the send request.
    biz_opaque_callback_data: str | None = None
    error_code: int | None = None
    error_title: str | None = None

    def __post_init__(self) -> None:
        if self.status not in WEBHOOK_STATUSES:
            raise ValueError(f"{self.status} is not a webhook status")
        if self.at.tzinfo is None:
            raise ValueError("StatusUpdate.at must be timezone-aware")


@dataclass(frozen=True)
class InboundReply:
    """One message a WhatsApp user sent to one of our sender numbers."""

    from_phone_e164: str
    text: str
    at: datetime
    # The message it answers (WhatsApp's `context.id`), when the user replied to one.
    context_provider_message_id: str | None = None
    # A quick-reply tap's payload (SPEC §10), kept on the message for the report.
    payload: str | None = None

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise ValueError("InboundReply.at must be timezone-aware")


@dataclass(frozen=True)
class AppliedCounts:
    applied: int = 0  # moved a message forward
    ignored_stale: int = 0  # the message exists but is already there or further
    unknown: int = 0  # no message of ours matches
    opted_out: int = 0  # numbers newly opted out by a STOP reply

    def __add__(self, other: "AppliedCounts") -> "AppliedCounts":
        return AppliedCounts(
            applied=self.applied + other.applied,
            ignored_stale=self.ignored_stale + other.ignored_stale,
            unknown=self.unknown + other.unknown,
            opted_out=self.opted_out + other.opted_out,
        )


def apply_status_updates(db: Database, updates: Sequence[StatusUpdate]) -> AppliedCounts:
    """Apply one webhook batch of statuses in one transaction.

    Statuses are applied in rank order, so a batch holding `sent` and `delivered` for one
    message ends `delivered`. An update whose provider id we never stored is matched by our
    message id in `biz_opaque_callback_data` (a send whose process died before storing the
    id); the provider id is then stored, exactly as `record_accepted` would have done (and the
    message is charged with the others when the campaign settles).
    """
    if not updates:
        return AppliedCounts()
    with db.session() as session:
        return apply_statuses(session, updates)


def apply_statuses(session: Session, updates: Sequence[StatusUpdate]) -> AppliedCounts:
    """`apply_status_updates` inside the caller's transaction (the webhook applier applies a
    whole inbox batch, then removes it, in one)."""
    if not updates:
        return AppliedCounts()
    known = _lock_known(session, updates)
    unmatched = [u for u in updates if u.provider_message_id not in known]
    known |= _reconcile_by_callback_data(session, unmatched)
    unknown = [u.provider_message_id for u in updates if u.provider_message_id not in known]
    if unknown:
        log.info(
            "%d status updates for unknown messages ignored (first: %s)",
            len(unknown),
            ", ".join(unknown[:5]),
        )
    applied = _apply_known(session, [u for u in updates if u.provider_message_id in known])
    counts = AppliedCounts(
        applied=applied, ignored_stale=len(updates) - applied - len(unknown), unknown=len(unknown)
    )
    log.info("status webhook batch of %d applied: %s", len(updates), counts)
    return counts


def _lock_known(session: Session, updates: Sequence[StatusUpdate]) -> set[str]:
    """Which of the batch's provider ids are stored, their rows locked (on PostgreSQL).

    Rows are locked in message-id order, the order in which a send group writes its messages
    too (`activities.grouped_writes`), so that the applier, the send groups and another
    applier never wait for each other in a cycle (a deadlock costs PostgreSQL's 1 s timeout
    and a re-run). Statuses name our message in `biz_opaque_callback_data`: those rows are
    locked first, in order, including the ones whose provider id is not stored yet (the
    reconciliation's); statuses without it (sent by another system) then by provider id.
    """
    provider_ids = {u.provider_message_id for u in updates}
    found: set[str] = set()
    for ids in _chunks(sorted({i for u in updates if (i := _callback_message_id(u))})):
        locked = session.scalars(
            select(MessageRow.provider_message_id)
            .where(MessageRow.id.in_(ids))
            .order_by(MessageRow.id)
            .with_for_update()
        )
        found.update(pid for pid in locked if pid in provider_ids)
    for chunk in _chunks(sorted(provider_ids - found)):
        found.update(
            session.scalars(
                select(MessageRow.provider_message_id)
                .where(MessageRow.provider_message_id.in_(chunk))
                .order_by(MessageRow.id)
                .with_for_update()
            )
        )
    return found


def _callback_message_id(update: StatusUpdate) -> int | None:
    """Our message id from `biz_opaque_callback_data`, if it holds one (digits that fit the
    store's 64-bit ids; anything else is not ours)."""
    data = (update.biz_opaque_callback_data or "").strip()
    if data.isascii() and data.isdigit() and len(data) <= 19 and 0 < int(data) < 2**63:
        return int(data)
    return None


def _reconcile_by_callback_data(session: Session, updates: Sequence[StatusUpdate]) -> set[str]:
    """Store the provider id on the messages named by `biz_opaque_callback_data`; return the
    provider ids now stored. Rare (only sends whose outcome was lost), so one row at a time."""
    provider_id_by_message: dict[int, str] = {}
    for u in updates:
        if (message_id := _callback_message_id(u)) is not None:
            provider_id_by_message.setdefault(message_id, u.provider_message_id)
    if not provider_id_by_message:
        return set()
    reconciled: set[str] = set()
    rows = session.execute(
        select(MessageRow.id, MessageRow.provider_message_id)
        .where(MessageRow.id.in_(sorted(provider_id_by_message)))
        .order_by(MessageRow.id)
    ).all()
    for message_id, stored in rows:
        provider_id = provider_id_by_message[message_id]
        if stored == provider_id:
            # The send stored this very id after the batch looked for it (its commit came
            # between the two reads): the status applies as to any known message.
            reconciled.add(provider_id)
            continue
        if stored is not None:
            log.warning(
                "message %d has provider id %s, not %s from biz_opaque_callback_data: ignored",
                message_id,
                stored,
                provider_id,
            )
            continue
        # Conditional: a concurrent record_accepted may store the id first. A message we had
        # given up (cancelled, or failed for want of an answer) was accepted after all: it is
        # back in `sending`, for this batch's own statuses to decide what it ends as.
        won = rowcount(
            session,
            update(MessageRow)
            .where(MessageRow.id == message_id, MessageRow.provider_message_id.is_(None))
            .values(
                provider_message_id=provider_id,
                updated_at=utcnow(),
                **reopened_if(given_up_before_accepted(), MessageStatus.SENDING),
            )
            .execution_options(synchronize_session=False),
        )
        if won:
            reconciled.add(provider_id)
            log.info(
                "message %d reconciled by biz_opaque_callback_data: provider id %s",
                message_id,
                provider_id,
            )
        elif _stored_provider_id(session, message_id) == provider_id:
            # A concurrent transaction (record_accepted, or another webhook for the same
            # message) stored this very id after our SELECT: the status still applies.
            reconciled.add(provider_id)
    return reconciled


def _stored_provider_id(session: Session, message_id: int) -> str | None:
    return session.scalar(select(MessageRow.provider_message_id).where(MessageRow.id == message_id))


def _apply_known(session: Session, updates: Sequence[StatusUpdate]) -> int:
    """One conditional UPDATE per target status, run for all its messages at once
    (executemany: one prepared statement, pipelined on PostgreSQL), lowest rank first."""
    by_status: dict[MessageStatus, dict[str, StatusUpdate]] = defaultdict(dict)
    for u in updates:
        same = by_status[u.status].get(u.provider_message_id)
        if same is None or u.at < same.at:  # a duplicate within the batch: keep the first
            by_status[u.status][u.provider_message_id] = u
    # A failure that the same batch overrides with delivered/read would be overwritten anyway;
    # skipping it keeps its error off a message that arrived.
    arrived = {pid for s in (MessageStatus.DELIVERED, MessageStatus.READ) for pid in by_status[s]}
    for pid in arrived & by_status[MessageStatus.FAILED].keys():
        del by_status[MessageStatus.FAILED][pid]
    applied = 0
    now = utcnow()
    connection = session.connection()
    for status in sorted(by_status, key=MESSAGE_STATUS_RANK.__getitem__):
        targets = sorted(by_status[status].values(), key=lambda u: u.provider_message_id)
        if not targets:
            continue
        rows: list[dict[str, Any]] = [
            {"pid": u.provider_message_id, "at": u.at, "now": now} for u in targets
        ]
        if status is MessageStatus.FAILED:
            for row, u in zip(rows, targets, strict=True):
                row |= {"failed_code": u.error_code, "failed_title": u.error_title}
        result = connection.execute(_status_update(status), rows)
        applied += int(result.rowcount)
    return applied


@functools.cache
def _status_update(status: MessageStatus) -> Update:
    """UPDATE messages SET status=:s, <s>_at=:at, ... WHERE provider id = :pid AND status IN
    (statuses that can become s): built once per status, run with every message's values."""
    values: dict[str, Any] = {
        "status": status.value,
        STATUS_TIMESTAMP_COLUMN[status]: bindparam("at", type_=UTCDateTime()),
        "updated_at": bindparam("now", type_=UTCDateTime()),
    }
    if status is MessageStatus.FAILED:
        values |= {
            "error_class": ErrorClass.FAILED.value,
            "error_code": bindparam("failed_code", type_=MessageRow.error_code.type),
            "error_title": bindparam("failed_title", type_=MessageRow.error_title.type),
        }
    return (
        update(MessageRow)
        .where(
            MessageRow.provider_message_id == bindparam("pid"),
            # Inline (an executemany statement takes no expanding IN list); our enum's values.
            MessageRow.status.in_(
                [literal_column(f"'{s.value}'") for s in sorted(statuses_that_can_become(status))]
            ),
        )
        .values(values)
    )


_V = TypeVar("_V")


def _chunks(items: Sequence[_V], size: int = _CHUNK) -> Iterator[Sequence[_V]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def apply_inbound_replies(
    db: Database,
    replies: Sequence[InboundReply],
    *,
    account_id: str,
    default_stop_keywords: Collection[str] = DEFAULT_STOP_KEYWORDS,
) -> AppliedCounts:
    """Mark the campaign message each reply answers `responded`, and opt out the numbers that
    replied with a STOP keyword — SPEC §4 rule 10.

    The answered message is the reply's context message, else the latest message of the
    account that reached the number within `REPLY_WINDOW` before the reply. The keywords are
    that message's campaign's (its policy's `stop_keywords`); a reply that answers no message
    is checked against `default_stop_keywords`. Matching ignores case and whitespace
    (`domain.policy.normalize_keyword`).
    """
    if not replies:
        return AppliedCounts()
    with db.session() as session:
        return apply_replies(
            session, replies, account_id=account_id, default_stop_keywords=default_stop_keywords
        )


def apply_replies(
    session: Session,
    replies: Sequence[InboundReply],
    *,
    account_id: str,
    default_stop_keywords: Collection[str] = DEFAULT_STOP_KEYWORDS,
) -> AppliedCounts:
    """`apply_inbound_replies` inside the caller's transaction."""
    applied = stale = unknown = opted_out = 0
    for reply in replies:
        answered = _answered_message(session, account_id, reply)
        stop_keywords: Collection[str] = default_stop_keywords
        if answered is None:
            unknown += 1
            phone = _masked(reply.from_phone_e164)
            log.info("reply from %s matches no campaign message", phone)
        else:
            message_id, policy = answered
            stop_keywords = _stop_keywords(policy, default_stop_keywords)
            if _mark_responded(session, message_id, reply.at, reply.payload):
                applied += 1
                log.info("message %d responded", message_id)
            else:
                stale += 1
                _keep_payload(session, message_id, reply.payload)
        keyword = matching_stop_keyword(reply.text, stop_keywords)
        if keyword is not None:
            newly = opt_out(session, account_id, reply.from_phone_e164, keyword)
            opted_out += newly
            log.info(
                "%s replied %r: opted out of account %s%s",
                _masked(reply.from_phone_e164),
                keyword,
                account_id,
                "" if newly else " (already)",
            )
    return AppliedCounts(applied=applied, ignored_stale=stale, unknown=unknown, opted_out=opted_out)


def _stop_keywords(policy: Any, default: Collection[str]) -> Collection[str]:
    """The campaign's STOP keywords; a stored policy that no longer reads (it is validated when
    written) falls back to the defaults rather than failing the webhook."""
    try:
        return CampaignPolicy.model_validate(policy or {}).stop_keywords
    except ValidationError as error:
        log.error("unreadable campaign policy, default STOP keywords used: %s", error)
        return default


def _answered_message(
    session: Session, account_id: str, reply: InboundReply
) -> tuple[int, Any] | None:
    """The message the reply answers, with its campaign's stored policy."""
    of_account = select(MessageRow.id, CampaignRow.policy).join(
        CampaignRow, CampaignRow.id == MessageRow.campaign_id
    )
    of_account = of_account.where(CampaignRow.account_id == account_id)
    if reply.context_provider_message_id is not None:
        found = session.execute(
            of_account.where(MessageRow.provider_message_id == reply.context_provider_message_id)
        ).first()
        if found is not None:
            return found.id, found.policy
    # Messages reconciled straight to delivered/read have no sent_at: use their send time.
    reached_at = func.coalesce(MessageRow.sent_at, MessageRow.sending_at)
    latest = session.execute(
        of_account.where(
            MessageRow.phone_e164 == reply.from_phone_e164,
            MessageRow.status.in_([s.value for s in _REPLYABLE_STATUSES]),
            reached_at >= reply.at - REPLY_WINDOW,
        )
        .order_by(reached_at.desc(), MessageRow.id.desc())
        .limit(1)
    ).first()
    return (latest.id, latest.policy) if latest is not None else None


def _masked(phone: str) -> str:
    """Enough of a number to follow it in the logs; the whole of it stays in the store."""
    return phone[:-4] + "****"


def _keep_payload(session: Session, message_id: int, payload: str | None) -> None:
    """A tap on a message that was answered already: its first payload is kept."""
    if payload is not None:
        session.execute(
            update(MessageRow)
            .where(MessageRow.id == message_id, MessageRow.reply_payload.is_(None))
            .values(reply_payload=payload)
            .execution_options(synchronize_session=False)
        )


def _mark_responded(
    session: Session, message_id: int, at: datetime, payload: str | None = None
) -> bool:
    can_respond = statuses_that_can_become(MessageStatus.RESPONDED)
    values: dict[str, object] = {
        "status": MessageStatus.RESPONDED.value,
        "responded_at": at,
        "updated_at": utcnow(),
    }
    if payload is not None:
        values["reply_payload"] = payload
    return bool(
        rowcount(
            session,
            update(MessageRow)
            .where(
                MessageRow.id == message_id,
                MessageRow.status.in_(sorted(s.value for s in can_respond)),
            )
            .values(values)
            .execution_options(synchronize_session=False),
        )
    )


def accounts_by_sender(
    db: Database, phone_number_ids: Collection[str | None], *, default_account: str
) -> dict[str | None, str | None]:
    """The account owning each sender phone number id; an unknown (or missing) id falls back to
    `default_account` if that account exists, else None (its replies cannot be applied)."""
    with db.session() as session:
        return sender_accounts(session, phone_number_ids, default_account=default_account)


def sender_accounts(
    session: Session, phone_number_ids: Collection[str | None], *, default_account: str
) -> dict[str | None, str | None]:
    """`accounts_by_sender` inside the caller's transaction."""
    rows = session.execute(
        select(SenderNumber.phone_number_id, SenderNumber.account_id).where(
            SenderNumber.phone_number_id.in_([i for i in phone_number_ids if i])
        )
    )
    known = {phone_number_id: account_id for phone_number_id, account_id in rows}
    fallback = session.scalar(select(Account.id).where(Account.id == default_account))
    return {i: known.get(i, fallback) if i else fallback for i in phone_number_ids}
