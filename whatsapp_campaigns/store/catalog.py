"""Sender phone numbers and message templates of each account."""

from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from whatsapp_campaigns.domain.models import Sender, Template, TemplateStatus
from whatsapp_campaigns.domain.statuses import TERMINAL_CAMPAIGN_STATUSES, CampaignStatus
from whatsapp_campaigns.domain.tenancy import (
    PhoneNumberInfo,
    normalize_display_number,
    rate_for,
    tier_for,
)
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.dml import rowcount, upsert
from whatsapp_campaigns.store.errors import Conflict, InvalidInput, NotFound
from whatsapp_campaigns.store.models import (
    Account,
    CampaignRow,
    MessageTemplate,
    SenderNumber,
    utcnow,
)

# Runtime state such as throttled_until is not configuration: an upsert leaves it alone.
_SENDER_SETTINGS = (
    "account_id",
    "display_number",
    "rate_per_second",
    "tier",
    "verified_name",
    "quality_rating",
    "throughput_level",
    "messaging_limit",
    "rate_cap",
    "removed_at",
)
_TEMPLATE_CONTENT = (
    "category",
    "status",
    "variables",
    "components",
    "parameter_format",
    "synced_at",
)
# Rows per INSERT: stays well under SQLite's limit on bound parameters.
_UPSERT_CHUNK = 200


def upsert_sender(db: Database, sender: Sender) -> Sender:
    """Create or reconfigure a sender number (its throttle, if any, is kept)."""
    with db.session() as session:
        _require_account(session, sender.account_id)
        upsert(
            session,
            SenderNumber,
            [sender.model_dump()],
            keys=["phone_number_id"],
            update=_SENDER_SETTINGS,
        )
        return _get_sender(session, sender.phone_number_id)


def register_sender(
    db: Database, account_id: str, number: PhoneNumberInfo, *, rate_cap: int | None = None
) -> Sender:
    """Store a number as Meta describes it, for `account_id`: its rate from the throughput
    level (capped by `rate_cap`), its tier from the messaging limit. Re-registering a number
    (or `senders sync`) refreshes it; a number of another account is refused."""
    if rate_cap is not None and not 1 <= rate_cap <= 1000:
        raise InvalidInput(f"--rate must be between 1 and 1000 messages/s, not {rate_cap}")
    with db.session() as session:
        _require_account(session, account_id)
        existing = session.get(SenderNumber, number.phone_number_id)
        if existing is not None and existing.account_id != account_id:
            raise Conflict(
                f"sender {number.phone_number_id} is registered to another account; "
                "remove it there first"
            )
        upsert(
            session,
            SenderNumber,
            [
                {
                    "phone_number_id": number.phone_number_id,
                    "account_id": account_id,
                    "display_number": number.display_number,
                    "rate_per_second": rate_for(number.throughput_level, rate_cap),
                    "tier": tier_for(number.messaging_limit),
                    "verified_name": number.verified_name,
                    "quality_rating": number.quality_rating,
                    "throughput_level": number.throughput_level,
                    "messaging_limit": number.messaging_limit,
                    "rate_cap": rate_cap,
                    "removed_at": None,
                }
            ],
            keys=["phone_number_id"],
            update=_SENDER_SETTINGS,
        )
        session.expire_all()  # the upsert bypassed the ORM: re-read the row
        return _get_sender(session, number.phone_number_id)


def remove_sender(db: Database, phone_number_id: str) -> Sender:
    """Take a number out of service. Refused while a campaign that is not finished uses it;
    the row stays (finished campaigns still name it), hidden from lists and new campaigns."""
    with db.session() as session:
        row = session.get(SenderNumber, phone_number_id)
        if row is None or row.removed_at is not None:
            raise NotFound(f"sender {phone_number_id} not found")
        in_use = list(
            session.scalars(
                select(CampaignRow.id)
                .where(
                    CampaignRow.sender_phone_number_id == phone_number_id,
                    CampaignRow.status.not_in([s.value for s in TERMINAL_CAMPAIGN_STATUSES]),
                )
                .order_by(CampaignRow.id)
                .limit(5)
            )
        )
        if in_use:
            raise Conflict(
                f"sender {phone_number_id} is used by campaign(s) {', '.join(in_use)} that "
                "have not finished; cancel or finish them first"
            )
        row.removed_at = utcnow()
        session.flush()
        return Sender.model_validate(row)


def apply_quality_update(
    db: Database,
    account_id: str,
    display_number: str,
    *,
    event: str,
    current_limit: str | None,
) -> Sender | None:
    """Meta's `phone_number_quality_update` webhook: the number (found by its display number
    within the account) gets its new throughput level or messaging limit, and its rate
    follows. None when the account has no such number."""
    wanted = normalize_display_number(display_number)
    with db.session() as session:
        rows = session.scalars(
            select(SenderNumber).where(
                SenderNumber.account_id == account_id, SenderNumber.removed_at.is_(None)
            )
        )
        row = next((r for r in rows if normalize_display_number(r.display_number) == wanted), None)
        if row is None:
            return None
        event = event.upper()
        limit = (current_limit or "").upper() or None
        if event == "THROUGHPUT_UPGRADE" or limit == "TIER_UNLIMITED":
            row.throughput_level = "HIGH"
        elif limit is not None:
            row.messaging_limit = limit
            row.tier = tier_for(limit)
        if event == "FLAGGED":
            row.quality_rating = "RED"
        elif event == "UNFLAGGED":
            row.quality_rating = "GREEN"
        row.rate_per_second = rate_for(row.throughput_level, row.rate_cap)
        session.flush()
        return Sender.model_validate(row)


def get_sender(db: Database, phone_number_id: str) -> Sender:
    with db.session() as session:
        return _get_sender(session, phone_number_id)


def list_senders(db: Database, account_id: str | None = None) -> list[Sender]:
    """Every sender number in service (of one account when `account_id` is given)."""
    statement = (
        select(SenderNumber)
        .where(SenderNumber.removed_at.is_(None))
        .order_by(SenderNumber.phone_number_id)
    )
    if account_id is not None:
        statement = statement.where(SenderNumber.account_id == account_id)
    with db.session() as session:
        return [Sender.model_validate(row) for row in session.scalars(statement)]


def numbers_in_use(db: Database) -> set[str]:
    """Sender numbers of the campaigns that may still send (`queued`, `sending`, `paused`):
    the numbers that need a send worker (SPEC §11)."""
    active = [CampaignStatus.QUEUED, CampaignStatus.SENDING, CampaignStatus.PAUSED]
    statement = (
        select(CampaignRow.sender_phone_number_id)
        .where(CampaignRow.status.in_([s.value for s in active]))
        .distinct()
    )
    with db.session() as session:
        return set(session.scalars(statement))


def set_sender_throttled_until(db: Database, phone_number_id: str, until: datetime | None) -> None:
    """Stop dispatch on a sender until `until` (SPEC §4 rule 6), or clear it with None.

    The throttle only ever moves later: campaigns on one number learn about the messaging
    limit at different times, and an earlier deadline must not shorten a later one.
    """
    if until is not None and until.tzinfo is None:
        raise InvalidInput("throttled_until must be an aware datetime")
    statement = update(SenderNumber).where(SenderNumber.phone_number_id == phone_number_id)
    if until is not None:
        statement = statement.where(
            or_(SenderNumber.throttled_until.is_(None), SenderNumber.throttled_until < until)
        )
    with db.session() as session:
        if not rowcount(session, statement.values(throttled_until=until)):
            _get_sender(session, phone_number_id)  # NotFound, or a later throttle is kept


def upsert_templates(db: Database, account_id: str, templates: list[Template]) -> int:
    """Insert or update templates by (account, name, language), all in one transaction.

    Returns how many distinct templates were stored; a later duplicate in `templates` wins.
    """
    now = utcnow()
    by_key = {
        (t.name, t.language): {
            "account_id": account_id,
            **t.model_dump(mode="json"),
            "synced_at": now,
        }
        for t in templates
    }
    rows = list(by_key.values())
    with db.session() as session:
        _require_account(session, account_id)
        for start in range(0, len(rows), _UPSERT_CHUNK):
            upsert(
                session,
                MessageTemplate,
                rows[start : start + _UPSERT_CHUNK],
                keys=["account_id", "name", "language"],
                update=_TEMPLATE_CONTENT,
            )
    return len(rows)


def set_template_status(
    db: Database, account_id: str, name: str, language: str, status: TemplateStatus
) -> bool:
    """Meta's `message_template_status_update` webhook; False when the template is unknown
    here (not synced yet: the next sync brings it with its status)."""
    with db.session() as session:
        return bool(
            rowcount(
                session,
                update(MessageTemplate)
                .where(
                    MessageTemplate.account_id == account_id,
                    MessageTemplate.name == name,
                    MessageTemplate.language == language,
                )
                .values(status=status.value, synced_at=utcnow()),
            )
        )


def get_template(db: Database, account_id: str, name: str, language: str) -> Template | None:
    with db.session() as session:
        row = session.scalar(
            select(MessageTemplate).where(
                MessageTemplate.account_id == account_id,
                MessageTemplate.name == name,
                MessageTemplate.language == language,
            )
        )
        return Template.model_validate(row) if row is not None else None


def list_templates(db: Database, account_id: str) -> list[Template]:
    with db.session() as session:
        rows = session.scalars(
            select(MessageTemplate)
            .where(MessageTemplate.account_id == account_id)
            .order_by(MessageTemplate.name, MessageTemplate.language)
        )
        return [Template.model_validate(row) for row in rows]


def _get_sender(session: Session, phone_number_id: str) -> Sender:
    row = session.get(SenderNumber, phone_number_id)
    if row is None:
        raise NotFound(f"sender {phone_number_id} not found")
    return Sender.model_validate(row)


def _require_account(session: Session, account_id: str) -> None:
    if session.get(Account, account_id) is None:
        raise InvalidInput(f"unknown account {account_id}")
