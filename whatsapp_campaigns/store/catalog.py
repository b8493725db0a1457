"""Sender phone numbers and message templates of each account."""

from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from whatsapp_campaigns.domain.models import Sender, Template
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.dml import rowcount, upsert
from whatsapp_campaigns.store.errors import InvalidInput, NotFound
from whatsapp_campaigns.store.models import Account, MessageTemplate, SenderNumber, utcnow

# Runtime state such as throttled_until is not configuration: an upsert leaves it alone.
_SENDER_SETTINGS = ("account_id", "display_number", "rate_per_second", "tier")
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


def get_sender(db: Database, phone_number_id: str) -> Sender:
    with db.session() as session:
        return _get_sender(session, phone_number_id)


def list_senders(db: Database, account_id: str | None = None) -> list[Sender]:
    """Every sender number (of one account when `account_id` is given)."""
    statement = select(SenderNumber).order_by(SenderNumber.phone_number_id)
    if account_id is not None:
        statement = statement.where(SenderNumber.account_id == account_id)
    with db.session() as session:
        return [Sender.model_validate(row) for row in session.scalars(statement)]


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
