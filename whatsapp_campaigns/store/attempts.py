"""A message's send attempts: claim it, admit its call into a second of its number, record what
came of it (SPEC §4 rules 6 and 12).

The send activity runs hundreds of sends at once; their writes are committed together
(activities/grouped_writes.py), and `write_send_group` writes such a group set-based: one
statement that locks the group's messages, one that claims, one per number for the slots of its
second, one batch for the accepted ids. Statement by statement, a group of fifty sends was two
hundred round trips to PostgreSQL (bench/RESULTS.md, "Set-based send groups").

The guarantees are those of one write at a time:
- a message is claimed (`sending`, its attempt counted) before WhatsApp is called, and only by
  one attempt: the group locks its rows and decides on what it read under the lock;
- its WhatsApp id is stored before the activity reports success, and never replaced by another;
- a message whose earlier attempt may have reached WhatsApp waits for its webhook
  (`unresolved_since`) until the reconcile window has passed.

Rows are locked in message-id order, as the webhook applier locks them (store/status_updates.py),
and the seconds of several numbers in the order of the numbers, so that neither two groups nor a
group and an applier batch wait for each other in a cycle.
"""

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, String, and_, bindparam, case, select, update
from sqlalchemy.sql.dml import Update
from sqlalchemy.sql.elements import BindParameter, ColumnElement

from whatsapp_campaigns.domain.errors import ErrorClass
from whatsapp_campaigns.domain.policy import CampaignPolicy
from whatsapp_campaigns.domain.statuses import (
    PENDING_MESSAGE_STATUSES,
    MessageStatus,
    statuses_that_can_become,
)
from whatsapp_campaigns.domain.templates import merge_values
from whatsapp_campaigns.store import send_slots
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.messages import (
    STATUS_TIMESTAMP_COLUMN,
    given_up_before_accepted,
    reopened_if,
    status_in,
)
from whatsapp_campaigns.store.models import (
    CampaignRow,
    MessageRow,
    RecipientRow,
    SenderNumber,
    utcnow,
)
from whatsapp_campaigns.store.send_slots import Slot


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
    With `job`, `slot`: the slot of the number's second taken with the claim, if admitted.
    """

    job: SendJob | None = None
    settled: MessageStatus | None = None
    campaign_halted: str | None = None
    unresolved_since: datetime | None = None
    slot: Slot | None = None


# The writes of a send group, and what each is answered (or its own error, raised to its
# caller alone: LookupError for a message that does not exist, ValueError for another id).


@dataclass(frozen=True)
class Claim:
    """Claim the message for one attempt (answer: AttemptStart). With `admit`, a claimed
    message whose number has a rate also takes a slot of the number's current second;
    without, its job carries no rate and the send calls WhatsApp without admission."""

    message_id: int
    reconcile_window: timedelta
    admit: bool = True


@dataclass(frozen=True)
class Readmit:
    """Another try for a slot by a claimed message waiting for one, while its campaign may
    still send (answer: the Slot; None: the campaign halted and the claim was handed back).
    Without `ask`, only the store's clock is read: a full second's answer, so that sends of a
    higher priority go first. A won slot restarts the attempt's clock: WhatsApp is called now,
    maybe seconds after the claim."""

    message_id: int
    phone_number_id: str
    rate: int
    ask: bool = True


@dataclass(frozen=True)
class Accepted:
    """WhatsApp accepted the message: store its id (answer: the message's status)."""

    message_id: int
    provider_message_id: str


SendWrite = Claim | Readmit | Accepted
SendAnswer = AttemptStart | Slot | MessageStatus | None

# Campaign statuses in which a send may start; anything else halts dispatch at once.
_SENDABLE_CAMPAIGN_STATUSES = ("queued", "sending")


def write_send_group(
    connection: Connection, writes: Sequence[SendWrite]
) -> list[SendAnswer | Exception]:
    """Run a group of send writes in the caller's transaction; the answers in their order."""
    group = _Group(connection, writes)
    group.claim([i for i in group.by_id if isinstance(writes[i], Claim)])
    group.readmit([i for i in group.by_id if isinstance(writes[i], Readmit)])
    group.take_slots()
    group.store_accepted([i for i in group.by_id if isinstance(writes[i], Accepted)])
    return group.answers


# A message of the group as locked: id, status, provider id, sending_at, campaign status.
_Locked = Row[int, str, str | None, datetime | None, str]


class _Group:
    def __init__(self, connection: Connection, writes: Sequence[SendWrite]) -> None:
        self.connection = connection
        self.writes = writes
        self.answers: list[SendAnswer | Exception] = [None] * len(writes)
        self.by_id = sorted(range(len(writes)), key=lambda i: writes[i].message_id)
        self.now = utcnow()
        self.rows: dict[int, _Locked] = {
            row.id: row
            for row in connection.execute(_LOCK, {"ids": sorted({w.message_id for w in writes})})
        }
        # (number, rate) -> the writes asking for a slot of its second, in message-id order
        self.slot_asks: dict[tuple[str, int], list[int]] = {}

    def _row(self, i: int) -> "_Locked | None":
        message_id = self.writes[i].message_id
        row = self.rows.get(message_id)
        if row is None:
            self.answers[i] = LookupError(f"message {message_id} not found")
        return row

    def claim(self, claims: list[int]) -> None:
        """Decide each claim on its locked row; claim the sendable ones in one statement."""
        to_claim: dict[int, int] = {}  # message id -> write
        for i in claims:
            write = self.writes[i]
            assert isinstance(write, Claim)
            row = self._row(i)
            if row is None:
                continue
            status = MessageStatus(row.status)
            if row.provider_message_id is not None or status not in PENDING_MESSAGE_STATUSES:
                self.answers[i] = AttemptStart(settled=status)
            elif row.campaign_status not in _SENDABLE_CAMPAIGN_STATUSES:
                self.answers[i] = AttemptStart(campaign_halted=row.campaign_status)
            elif row.id in to_claim:  # claimed by an attempt earlier in this very group
                self.answers[i] = AttemptStart(unresolved_since=self.now)
            elif (
                status is MessageStatus.SENDING
                and row.sending_at is not None
                and self.now - row.sending_at < write.reconcile_window
            ):
                self.answers[i] = AttemptStart(unresolved_since=row.sending_at)
            else:
                to_claim[row.id] = i
        if not to_claim:
            return
        claimed = set(
            self.connection.execute(_CLAIM, {"ids": sorted(to_claim), "now": self.now}).scalars()
        )
        policies: dict[str, CampaignPolicy] = {}  # read once per campaign in the group
        for row in self.connection.execute(_SEND_JOBS, {"ids": sorted(claimed)}):
            i = to_claim[row.message_id]
            write = self.writes[i]
            assert isinstance(write, Claim)
            if row.campaign_id not in policies:
                policies[row.campaign_id] = CampaignPolicy.model_validate(row.policy)
            job = SendJob(
                message_id=row.message_id,
                campaign_id=row.campaign_id,
                account_id=row.account_id,
                sender_phone_number_id=row.sender_phone_number_id,
                phone_e164=row.phone_e164,
                template_name=row.template_name,
                language=row.language,
                variables=merge_values(row.variables or {}, row.fixed_variables or {}),
                attempt=row.attempts,  # counted by the claim
                policy=policies[row.campaign_id],
                sender_rate=row.sender_rate if write.admit else None,
            )
            self.answers[i] = AttemptStart(job=job)
            if job.sender_rate is not None:
                self._ask_slot(i, job.sender_phone_number_id, job.sender_rate)
        for message_id in to_claim.keys() - claimed:  # not claimable after all (the guard)
            self.answers[to_claim[message_id]] = AttemptStart(unresolved_since=self.now)

    def readmit(self, readmits: list[int]) -> None:
        """Hand back the claims of halted campaigns; ask for slots, or read the clock only."""
        halted: list[int] = []
        passing: list[int] = []
        for i in readmits:
            write = self.writes[i]
            assert isinstance(write, Readmit)
            row = self._row(i)
            if row is None:
                continue
            if row.campaign_status not in _SENDABLE_CAMPAIGN_STATUSES:
                halted.append(write.message_id)  # answered None
            elif write.ask:
                self._ask_slot(i, write.phone_number_id, write.rate)
            else:
                passing.append(i)
        if halted:
            self.connection.execute(_hand_back(_claimed(*halted), self.now))
        if passing:
            passed = send_slots.pass_slot(self.connection)
            for i in passing:
                self.answers[i] = passed

    def _ask_slot(self, i: int, phone_number_id: str, rate: int) -> None:
        self.slot_asks.setdefault((phone_number_id, rate), []).append(i)

    def take_slots(self) -> None:
        """Each number's slots in one statement, the numbers in order; the won ones go to the
        writes of the lowest message ids."""
        restarted: list[int] = []
        for (number, rate), asking in sorted(self.slot_asks.items()):
            asking.sort(key=lambda i: self.writes[i].message_id)
            slots = send_slots.take_slots(self.connection, number, rate, len(asking))
            for i, slot in zip(asking, slots, strict=True):
                answer = self.answers[i]
                if isinstance(answer, AttemptStart):
                    self.answers[i] = replace(answer, slot=slot)
                else:
                    self.answers[i] = slot
                    if slot.won:
                        restarted.append(self.writes[i].message_id)
        if restarted:
            self.connection.execute(
                update(MessageRow)
                .where(_claimed(*restarted))
                .values(sending_at=self.now, updated_at=self.now)
            )

    def store_accepted(self, accepted: list[int]) -> None:
        """Store the accepted ids (one batch: psycopg pipelines it), then read the outcome."""
        writes = [self.writes[i] for i in accepted if self._row(i) is not None]
        if not writes:
            return
        self.connection.execute(
            _STORE_ACCEPTED,
            [
                {"message_id": w.message_id, "accepted_id": w.provider_message_id, "now": self.now}
                for w in writes
                if isinstance(w, Accepted)
            ],
        )
        stored = {
            row.id: row
            for row in self.connection.execute(_STORED, {"ids": [w.message_id for w in writes]})
        }
        for i in accepted:
            write = self.writes[i]
            assert isinstance(write, Accepted)
            row = stored.get(write.message_id)
            if row is None:  # (answered LookupError by `_row`)
                continue
            if row.provider_message_id != write.provider_message_id:
                self.answers[i] = ValueError(
                    f"message {write.message_id} already has provider id {row.provider_message_id}"
                )
            else:
                self.answers[i] = MessageStatus(row.status)


def _answered(answer: SendAnswer | Exception) -> SendAnswer:
    if isinstance(answer, Exception):
        raise answer
    return answer


def start_attempt(db: Database, message_id: int, *, reconcile_window: timedelta) -> AttemptStart:
    """Claim a message for one send attempt, or say why not (no slot taken).

    A message that has a provider id, or a final status, is settled: sending it again would be
    a duplicate. A message left in `sending` by an attempt that died (or timed out without an
    answer) may have been accepted; its webhook (matched by biz_opaque_callback_data) settles
    it. Until `reconcile_window` has passed since that attempt, the caller waits; after it,
    WhatsApp did not accept it (its webhook would have come) and the send is retried.
    """
    claim = Claim(message_id, reconcile_window, admit=False)
    with db.transaction() as connection:
        start = _answered(write_send_group(connection, [claim])[0])
    assert isinstance(start, AttemptStart)
    return start


def record_accepted(db: Database, message_id: int, provider_message_id: str) -> MessageStatus:
    """Store WhatsApp's message id and mark the message `sent`.

    Runs before the activity reports success, so a crash after this line never resends. If a
    webhook got there first (it reconciled the id, or already said delivered/read/failed), the
    status stays where the webhook put it. A message given up meanwhile (cancelled, or failed
    for want of an answer) becomes `sent`: WhatsApp accepted it. The campaign's charges are
    settled from these ids when the campaign ends (accounts.release_credits).
    """
    with db.transaction() as connection:
        status = _answered(
            write_send_group(connection, [Accepted(message_id, provider_message_id)])[0]
        )
    assert isinstance(status, MessageStatus)
    return status


def resume_attempt(db: Database, message_id: int) -> bool:
    """Before calling WhatsApp again within one attempt (after a throughput refusal, which
    WhatsApp did not accept): True, with the attempt's clock (`sending_at`) restarted, while the
    campaign may still send. Otherwise the claim is handed back, not counted as an attempt (the
    message is queued or retrying again), and False."""
    with db.transaction() as connection:
        campaign_status = connection.execute(
            _CAMPAIGN_STATUS, {"message_id": message_id}
        ).scalar_one()
        now = utcnow()
        if campaign_status not in _SENDABLE_CAMPAIGN_STATUSES:
            connection.execute(_hand_back(_claimed(message_id), now))
            return False
        connection.execute(
            update(MessageRow).where(_claimed(message_id)).values(sending_at=now, updated_at=now)
        )
        return True


def hand_back_attempt(db: Database, message_id: int) -> None:
    """Give back a claimed message that was not sent (its template was paused by WhatsApp):
    not counted as an attempt, queued (or retrying) again for when the campaign resumes."""
    with db.transaction() as connection:
        connection.execute(_hand_back(_claimed(message_id), utcnow()))


def _claimed(*message_ids: int) -> ColumnElement[bool]:
    return and_(
        MessageRow.id.in_(message_ids),
        MessageRow.status == MessageStatus.SENDING.value,
        MessageRow.provider_message_id.is_(None),
    )


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


# The hot statements of every send, built once with bound parameters: building them per call
# (values and cache key) cost more CPU than running them.
_IDS: BindParameter[int] = bindparam("ids", expanding=True)
_NOW = bindparam("now", type_=MessageRow.__table__.c.updated_at.type)

# The group's messages, locked in id order (PostgreSQL; SQLite has one writer at a time).
_LOCK = (
    select(
        MessageRow.id,
        MessageRow.status,
        MessageRow.provider_message_id,
        MessageRow.sending_at,
        CampaignRow.status.label("campaign_status"),
    )
    .join(CampaignRow, CampaignRow.id == MessageRow.campaign_id)
    .where(MessageRow.id.in_(_IDS))
    .order_by(MessageRow.id)
    .with_for_update(of=MessageRow)
)
_CLAIM = (
    update(MessageRow)
    # Decided on the locked rows; the guard only repeats what was read.
    .where(
        MessageRow.id.in_(_IDS),
        MessageRow.status.in_(sorted(s.value for s in PENDING_MESSAGE_STATUSES)),
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
_SEND_JOBS = (
    select(
        MessageRow.id.label("message_id"),
        MessageRow.attempts,
        MessageRow.phone_e164,
        CampaignRow.id.label("campaign_id"),
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
    .where(MessageRow.id.in_(_IDS))
)
_CAMPAIGN_STATUS = (
    select(CampaignRow.status)
    .join(MessageRow, MessageRow.campaign_id == CampaignRow.id)
    .where(MessageRow.id == bindparam("message_id"))
)
_ACCEPTED_ID = bindparam("accepted_id", type_=String())
_BECOMES_SENT = status_in(statuses_that_can_become(MessageStatus.SENT)) | given_up_before_accepted()
_STORE_ACCEPTED = (
    update(MessageRow)
    # Never another id: a message has one WhatsApp id, whoever stored it first.
    .where(
        MessageRow.id == bindparam("message_id"),
        MessageRow.provider_message_id.is_(None) | (MessageRow.provider_message_id == _ACCEPTED_ID),
    )
    .values(
        provider_message_id=_ACCEPTED_ID,
        sent_at=case((_BECOMES_SENT, _NOW), else_=MessageRow.sent_at),
        updated_at=_NOW,
        **reopened_if(_BECOMES_SENT, MessageStatus.SENT),
    )
)
_STORED = select(MessageRow.id, MessageRow.provider_message_id, MessageRow.status).where(
    MessageRow.id.in_(_IDS)
)
