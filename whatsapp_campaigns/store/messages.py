"""Per-message operations of the engine: materialize, page, claim, record outcomes, count.

Every function is one transaction and safe to repeat, because activities retry and replay.
Bulk paths are set-based: a million messages are created by one INSERT ... SELECT.
"""

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Connection,
    Row,
    String,
    and_,
    bindparam,
    case,
    cast,
    exists,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Update
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import TableValuedAlias

from whatsapp_campaigns.domain.errors import ErrorClass
from whatsapp_campaigns.domain.models import ErrorCount
from whatsapp_campaigns.domain.policy import CampaignPolicy
from whatsapp_campaigns.domain.statuses import (
    FAILURE_MESSAGE_STATUSES,
    PENDING_MESSAGE_STATUSES,
    MessageStatus,
    statuses_that_can_become,
)
from whatsapp_campaigns.domain.templates import merge_values
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.models import (
    CampaignRow,
    MessageRow,
    OptOut,
    RecipientRow,
    SenderNumber,
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


def given_up_before_accepted() -> ColumnElement[bool]:
    """The message has no WhatsApp id yet and we gave it a not-sent final status."""
    return MessageRow.provider_message_id.is_(None) & status_in(UNSENT_FINAL_STATUSES)


def status_in(statuses: Collection[MessageStatus]) -> ColumnElement[bool]:
    """The message's status is one of these, as a list of values in the statement itself: a
    statement run once for many rows (executemany) cannot take a list parameter."""
    return MessageRow.status.in_([literal(s.value) for s in sorted(statuses)])


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


@dataclass(frozen=True)
class SendJob:
    """What one send needs; read from the store by the activity, never carried by the workflow."""

    message_id: int
    campaign_id: str
    account_id: str
    sender_phone_number_id: str
    phone_e164: str
    template_name: str
    language: str
    variables: dict[str, str]  # the recipient's values, else the campaign's fixed ones
    attempt: int  # this attempt's number, counting every real send attempt of the message
    policy: CampaignPolicy
    sender_rate: int | None = None  # the number's messages/s (store/send_slots.py admits them)


@dataclass(frozen=True)
class AttemptStart:
    """The answer to "may this attempt send?".

    Exactly one of: `job` (send it), `settled` (already has an outcome: do not send again),
    `campaign_halted` (the campaign is paused or cancelled: put the message back), or
    `unresolved_since` (a previous attempt may have reached WhatsApp: wait for its webhook).
    """

    job: SendJob | None = None
    settled: MessageStatus | None = None
    campaign_halted: str | None = None
    unresolved_since: datetime | None = None


_AnyRow = Row[*tuple[Any, ...]]

# Campaign statuses in which a send may start; anything else halts dispatch at once.
_SENDABLE_CAMPAIGN_STATUSES = ("queued", "sending")


def start_attempt(
    db: Database,
    message_id: int,
    *,
    reconcile_window: timedelta,
) -> AttemptStart:
    """Claim a message for one send attempt, or say why not.

    A message that has a provider id, or a final status, is settled: sending it again would be
    a duplicate. A message left in `sending` by an attempt that died (or timed out without an
    answer) may have been accepted; its webhook (matched by biz_opaque_callback_data) settles
    it. Until `reconcile_window` has passed since that attempt, the caller waits; after it,
    WhatsApp did not accept it (its webhook would have come) and the send is retried.
    """
    with db.transaction() as connection:
        return claim_attempts(connection, [message_id], reconcile_window=reconcile_window)[0]


def lock_in_id_order(connection: Connection, message_ids: Sequence[int]) -> None:
    """Lock these messages in id order until the caller's transaction ends (PostgreSQL; on
    SQLite the transaction holds the whole file already). Every writer of several messages
    locks them in id order (store/status_updates.py), so no two wait for each other in a
    cycle, whatever the writes they make next."""
    if connection.dialect.name == "postgresql":
        connection.execute(_LOCK, {"message_ids": list(message_ids)})


def claim_attempts(
    connection: Connection, message_ids: Sequence[int], *, reconcile_window: timedelta
) -> list[AttemptStart]:
    """`start_attempt` for several messages at once, within the caller's transaction: one read
    and one write for all of them (the send activity claims the messages of concurrent sends
    together: activities/grouped_writes.py). One answer per id, in order; LookupError if one
    is not in the store, ValueError if one is asked for twice (each answer must see the store
    as the claims before it left it: claim those one by one)."""
    if len(set(message_ids)) != len(message_ids):
        raise ValueError("a message is claimed twice in one batch")
    # Locked (PostgreSQL; SQLite's writer holds the whole file) until the transaction ends, in
    # id order: nobody changes a message between this read and the claim below.
    rows = {
        row.id: row
        for row in connection.execute(_SEND_JOB_QUERY, {"message_ids": list(message_ids)})
    }
    missing = [i for i in message_ids if i not in rows]
    if missing:
        raise LookupError(f"message {missing[0]} not found")
    now = utcnow()
    answers = {i: _attempt_start(rows[i], now, reconcile_window) for i in message_ids}
    to_claim = [i for i, answer in answers.items() if answer is None]
    claimed = set()
    if to_claim:
        claimed = set(connection.execute(_CLAIM, {"message_ids": to_claim, "now": now}).scalars())
    policies: dict[str, CampaignPolicy] = {}  # one validation per campaign, not per message
    starts = []
    for message_id in message_ids:
        answer = answers[message_id]
        if answer is None and message_id not in claimed:  # (cannot happen under the lock)
            answer = AttemptStart(unresolved_since=now)
        if answer is None:
            row = rows[message_id]
            if row.campaign_id not in policies:
                policies[row.campaign_id] = CampaignPolicy.model_validate(row.policy)
            answer = AttemptStart(job=_send_job(row, policies[row.campaign_id]))
        starts.append(answer)
    return starts


def _attempt_start(row: _AnyRow, now: datetime, reconcile_window: timedelta) -> AttemptStart | None:
    """Why the message read in `row` may not be claimed now; None if it may."""
    status = MessageStatus(row.message_status)
    if row.provider_message_id is not None or status not in PENDING_MESSAGE_STATUSES:
        return AttemptStart(settled=status)
    if row.campaign_status not in _SENDABLE_CAMPAIGN_STATUSES:
        return AttemptStart(campaign_halted=row.campaign_status)
    if (
        status is MessageStatus.SENDING
        and row.sending_at is not None
        and now - row.sending_at < reconcile_window
    ):
        return AttemptStart(unresolved_since=row.sending_at)
    return None


def _send_job(row: _AnyRow, policy: CampaignPolicy) -> SendJob:
    """The claimed message's job, from its row as read before the claim."""
    return SendJob(
        message_id=row.id,
        campaign_id=row.campaign_id,
        account_id=row.account_id,
        sender_phone_number_id=row.sender_phone_number_id,
        phone_e164=row.phone_e164,
        template_name=row.template_name,
        language=row.language,
        variables=merge_values(row.variables or {}, row.fixed_variables or {}),
        attempt=row.attempts + 1,
        policy=policy,
        sender_rate=row.sender_rate,
    )


def resume_attempt(db: Database, message_id: int) -> bool:
    """Before calling WhatsApp again within one attempt (after a throughput refusal, which
    WhatsApp did not accept): True, with the attempt's clock (`sending_at`) restarted, while the
    campaign may still send. Otherwise the claim is handed back, not counted as an attempt (the
    message is queued or retrying again), and False."""
    with db.transaction() as connection:
        if not still_sendable(connection, message_id):
            return False
        restart_attempt_clock(connection, message_id)
        return True


def still_sendable(connection: Connection, message_id: int) -> bool:
    """Whether the claimed message's campaign may still send; if not, the claim is handed
    back (not counted as an attempt), in the caller's transaction."""
    campaign_status = connection.execute(_CAMPAIGN_STATUS, {"message_id": message_id}).scalar_one()
    if campaign_status in _SENDABLE_CAMPAIGN_STATUSES:
        return True
    connection.execute(_hand_back(_claimed(message_id), utcnow()))
    return False


def restart_attempt_clock(connection: Connection, message_id: int) -> None:
    """WhatsApp is about to be called (again) for the claimed message: reconciliation of an
    unanswered call counts from now."""
    now = utcnow()
    connection.execute(
        update(MessageRow).where(_claimed(message_id)).values(sending_at=now, updated_at=now)
    )


def _claimed(message_id: int) -> ColumnElement[bool]:
    return and_(
        MessageRow.id == message_id,
        MessageRow.status == MessageStatus.SENDING.value,
        MessageRow.provider_message_id.is_(None),
    )


def hand_back_attempt(db: Database, message_id: int) -> None:
    """Give back a claimed message that was not sent (its template was paused by WhatsApp):
    not counted as an attempt, queued (or retrying) again for when the campaign resumes."""
    claimed = and_(
        MessageRow.id == message_id,
        MessageRow.status == MessageStatus.SENDING.value,
        MessageRow.provider_message_id.is_(None),
    )
    with db.transaction() as connection:
        connection.execute(_hand_back(claimed, utcnow()))


def _hand_back(claimed: ColumnElement[bool], now: datetime) -> Update:
    return (
        update(MessageRow)
        .where(claimed)
        .values(
            status=case(
                (MessageRow.attempts > 1, MessageStatus.RETRYING.value),
                else_=MessageStatus.QUEUED.value,
            ),
            attempts=MessageRow.attempts - 1,
            sending_at=None,
            updated_at=now,
        )
    )


_SEND_JOB_QUERY = (
    select(
        MessageRow.id,
        MessageRow.status.label("message_status"),
        MessageRow.provider_message_id,
        MessageRow.sending_at,
        MessageRow.attempts,
        MessageRow.phone_e164,
        CampaignRow.id.label("campaign_id"),
        CampaignRow.status.label("campaign_status"),
        CampaignRow.account_id,
        CampaignRow.sender_phone_number_id,
        CampaignRow.template_name,
        CampaignRow.language,
        CampaignRow.policy,
        CampaignRow.variables.label("fixed_variables"),
        RecipientRow.variables,
        SenderNumber.rate_per_second.label("sender_rate"),
    )
    .join(CampaignRow, CampaignRow.id == MessageRow.campaign_id)
    .join(RecipientRow, RecipientRow.id == MessageRow.recipient_id)
    .outerjoin(SenderNumber, SenderNumber.phone_number_id == CampaignRow.sender_phone_number_id)
    .where(MessageRow.id.in_(bindparam("message_ids", expanding=True)))
    # In id order, as every writer of messages locks them (store/status_updates.py).
    .order_by(MessageRow.id)
    .with_for_update(of=MessageRow)
)

_CAMPAIGN_STATUS = (
    select(CampaignRow.status)
    .join(MessageRow, MessageRow.campaign_id == CampaignRow.id)
    .where(MessageRow.id == bindparam("message_id"))
)

# The hot statements of every send, built once with bound parameters: building them per call
# (values and cache key) cost more CPU than running them.
_NOW = bindparam("now", type_=MessageRow.__table__.c.updated_at.type)
_CLAIM = (
    update(MessageRow)
    # The rows were read and locked just before (`claim_attempts`); the guard is the rule.
    .where(
        MessageRow.id.in_(bindparam("message_ids", expanding=True)),
        status_in(PENDING_MESSAGE_STATUSES),
        MessageRow.provider_message_id.is_(None),
    )
    .values(
        status=MessageStatus.SENDING.value,
        attempts=MessageRow.attempts + 1,
        sending_at=_NOW,
        updated_at=_NOW,
    )
    .returning(MessageRow.id)
)
_BECOMES_SENT = status_in(statuses_that_can_become(MessageStatus.SENT)) | given_up_before_accepted()


def _store_accepted_statement(pairs: TableValuedAlias) -> Update:
    """Each message of `pairs` (its id as the key, its WhatsApp id as the value: a JSON
    object read as a table) gets its WhatsApp id, and is `sent` if it may become so."""
    return (
        update(MessageRow)
        .where(MessageRow.id == cast(pairs.c.key, MessageRow.__table__.c.id.type))
        .values(
            provider_message_id=func.coalesce(MessageRow.provider_message_id, pairs.c.value),
            sent_at=case((_BECOMES_SENT, _NOW), else_=MessageRow.sent_at),
            updated_at=_NOW,
            **reopened_if(_BECOMES_SENT, MessageStatus.SENT),
        )
        .returning(MessageRow.id, MessageRow.provider_message_id, MessageRow.status)
    )


# One statement, whatever the count of messages: the pairs are one JSON parameter, read as
# rows of (key, value) text by each dialect's own function.
_ACCEPTED = bindparam("accepted", type_=String())
_STORE_ACCEPTED = {
    "postgresql": _store_accepted_statement(
        func.json_each_text(cast(_ACCEPTED, JSON)).table_valued("key", "value")
    ),
    "sqlite": _store_accepted_statement(func.json_each(_ACCEPTED).table_valued("key", "value")),
}


_LOCK = (
    select(MessageRow.id)
    .where(MessageRow.id.in_(bindparam("message_ids", expanding=True)))
    .order_by(MessageRow.id)
    .with_for_update()
)


def record_accepted(db: Database, message_id: int, provider_message_id: str) -> MessageStatus:
    """Store WhatsApp's message id and mark the message `sent`.

    Runs before the activity reports success, so a crash after this line never resends. If a
    webhook got there first (it reconciled the id, or already said delivered/read/failed), the
    status stays where the webhook put it. A message given up meanwhile (cancelled, or failed
    for want of an answer) becomes `sent`: WhatsApp accepted it. The campaign's charges are
    settled from these ids when the campaign ends (accounts.release_credits).
    """
    with db.transaction() as connection:
        return store_accepted(connection, [(message_id, provider_message_id)])[0]


def store_accepted(
    connection: Connection, accepted: Sequence[tuple[int, str]]
) -> list[MessageStatus]:
    """`record_accepted` for several (message id, WhatsApp id) pairs at once, within the
    caller's transaction: one `UPDATE ... RETURNING` for all of them (see `claim_attempts`).
    The status of each, in order; LookupError if a message is not in the store, ValueError if
    one is given twice or already has another WhatsApp id (the caller's transaction must then
    roll back: the others' updates are in it)."""
    accepted_ids = dict(accepted)
    if len(accepted_ids) != len(accepted):
        raise ValueError("a message is accepted twice in one batch")
    stored = {
        row.id: row
        for row in connection.execute(
            _STORE_ACCEPTED[connection.dialect.name],
            {"accepted": json.dumps(accepted_ids), "now": utcnow()},
        )
    }
    statuses = []
    for message_id, accepted_id in accepted:
        row = stored.get(message_id)
        if row is None:
            raise LookupError(f"message {message_id} not found")
        if row.provider_message_id != accepted_id:
            raise ValueError(
                f"message {message_id} already has provider id {row.provider_message_id}"
            )
        statuses.append(MessageStatus(row.status))
    return statuses


def record_failure(
    db: Database,
    message_id: int,
    *,
    error_class: ErrorClass,
    code: int | None,
    title: str,
    final: bool,
    outcome_unknown: bool = False,
) -> MessageStatus:
    """Record a failed attempt: `retrying` when another attempt follows, else the final status.

    `outcome_unknown` (a timeout with no answer) leaves the message in `sending`: WhatsApp may
    have accepted it, so the next attempt waits for reconciliation before sending again. The
    wait counts from now (`sending_at`), not from the claim: the unanswered call may have been
    the last of several within the attempt.
    """
    now = utcnow()
    values: dict[str, Any] = {
        "error_class": error_class.value,
        "error_code": code,
        "error_title": title,
        "updated_at": now,
    }
    new = error_class.final_message_status if final else MessageStatus.RETRYING
    if outcome_unknown and not final:
        values["sending_at"] = now
    if final or not outcome_unknown:
        may_move = MessageRow.status.in_([s.value for s in statuses_that_can_become(new)])
        values["status"] = case((may_move, new.value), else_=MessageRow.status)
        column = STATUS_TIMESTAMP_COLUMN.get(new)
        if column is not None:
            values[column] = case((may_move, now), else_=getattr(MessageRow, column))
    with db.transaction() as connection:
        status = connection.execute(
            update(MessageRow)
            .where(MessageRow.id == message_id)
            .values(**values)
            .returning(MessageRow.status)
        ).scalar_one_or_none()
    if status is None:
        raise LookupError(f"message {message_id} not found")
    return MessageStatus(status)


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
