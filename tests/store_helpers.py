"""Seed store rows directly with the ORM models, so store tests need no importer or engine."""

import uuid
from collections.abc import Sequence
from datetime import datetime

from whatsapp_campaigns.domain.models import CampaignDraft
from whatsapp_campaigns.domain.statuses import CampaignStatus, MessageStatus
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.models import (
    Account,
    AudienceRow,
    CampaignRow,
    MessageRow,
    RecipientRow,
    SenderNumber,
    utcnow,
)

ACCOUNT = "acme"
SENDER = "acme-sender-1"


def seed_account(
    db: Database, account_id: str = ACCOUNT, *, balance: int = 0, sender: str | None = None
) -> None:
    """An account with `balance` credits and one sender number (`<account>-sender-1`)."""
    with db.session() as session:
        session.add(Account(id=account_id, name=account_id.title(), credit_balance=balance))
        session.flush()
        session.add(
            SenderNumber(
                phone_number_id=sender or f"{account_id}-sender-1",
                account_id=account_id,
                display_number="+12025550100",
            )
        )


def seed_audience(
    db: Database, account_id: str = ACCOUNT, phones: Sequence[str] = ("+12025550110",)
) -> str:
    """An audience of `phones` (variable `name`); returns its id."""
    audience_id = uuid.uuid4().hex[:12]
    with db.session() as session:
        session.add(
            AudienceRow(
                id=audience_id,
                account_id=account_id,
                name=f"audience {audience_id}",
                valid=len(phones),
                variable_names=["name"],
            )
        )
        session.flush()
        session.add_all(
            RecipientRow(audience_id=audience_id, phone_e164=p, variables={"name": f"C{i}"})
            for i, p in enumerate(phones)
        )
    return audience_id


def draft(**changes: object) -> CampaignDraft:
    values: dict[str, object] = {
        "name": "Spring sale",
        "template_name": "spring_sale",
        "sender_phone_number_id": SENDER,
    }
    return CampaignDraft.model_validate(values | changes)


def seed_campaign(
    db: Database,
    account_id: str = ACCOUNT,
    *,
    status: CampaignStatus = CampaignStatus.DRAFT,
    name: str = "Spring sale",
    audience_id: str | None = None,
    send_at: datetime | None = None,
    created_at: datetime | None = None,
    reserved_credits: int = 0,
    policy: dict[str, object] | None = None,
    sender: str | None = None,
) -> str:
    """A campaign row in any status, written directly (no transition checks); returns its id."""
    campaign_id = uuid.uuid4().hex[:12]
    now = created_at or utcnow()
    with db.session() as session:
        session.add(
            CampaignRow(
                id=campaign_id,
                account_id=account_id,
                name=name,
                template_name="spring_sale",
                language="en",
                sender_phone_number_id=sender or f"{account_id}-sender-1",
                audience_id=audience_id,
                status=status.value,
                send_at=send_at,
                policy=policy or {},
                reserved_credits=reserved_credits,
                created_at=now,
                updated_at=now,
            )
        )
    return campaign_id


def seed_messages(
    db: Database, campaign_id: str, audience_id: str, status: MessageStatus = MessageStatus.QUEUED
) -> list[int]:
    """One message per recipient of the audience, in `status`; returns the message ids."""
    with db.session() as session:
        recipients = session.query(RecipientRow).filter_by(audience_id=audience_id).all()
        rows = [
            MessageRow(
                campaign_id=campaign_id,
                recipient_id=r.id,
                phone_e164=r.phone_e164,
                status=status.value,
                queued_at=utcnow(),
            )
            for r in recipients
        ]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]
