"""Seeded campaign messages and Cloud-API-shaped webhook bodies for the webhook tests."""

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from whatsapp_campaigns.domain.statuses import MessageStatus
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.models import (
    Account,
    AudienceRow,
    CampaignRow,
    MessageRow,
    OptOut,
    RecipientRow,
    SenderNumber,
)
from whatsapp_campaigns.whatsapp.signatures import SIGNATURE_HEADER, sign

ACCOUNT_ID = "acme"
SENDER_ID = "pn-acme-1"
APP_SECRET = "test-app-secret"
VERIFY_TOKEN = "test-verify-token"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Seeded:
    message_ids: list[int]
    provider_ids: list[str | None]


def seed_messages(
    db: Database,
    count: int = 1,
    *,
    status: MessageStatus = MessageStatus.SENT,
    with_provider_id: bool = True,
    sent_at: datetime = T0,
    campaign_id: str = "c1",
    first_phone: int = 12025550200,
    policy: dict[str, object] | None = None,
) -> Seeded:
    """One account, sender, audience and campaign (created once, with `policy`), and `count`
    messages to consecutive numbers, in `status`, with provider ids "wamid.<campaign>.<n>"
    unless told not."""
    with db.session() as session:
        if session.get(Account, ACCOUNT_ID) is None:
            session.add(Account(id=ACCOUNT_ID, name="Acme"))
            session.flush()
            session.add(
                SenderNumber(
                    phone_number_id=SENDER_ID, account_id=ACCOUNT_ID, display_number="+12025550100"
                )
            )
        session.add(AudienceRow(id=f"a-{campaign_id}", account_id=ACCOUNT_ID, name="audience"))
        session.flush()
        session.add(
            CampaignRow(
                id=campaign_id,
                account_id=ACCOUNT_ID,
                name="spring",
                template_name="spring_sale",
                language="en",
                sender_phone_number_id=SENDER_ID,
                audience_id=f"a-{campaign_id}",
                status="sending",
                reserved_credits=count,
                policy=policy or {},
            )
        )
        recipients = [
            RecipientRow(audience_id=f"a-{campaign_id}", phone_e164=f"+{first_phone + n}")
            for n in range(count)
        ]
        session.add_all(recipients)
        session.flush()
        messages = [
            MessageRow(
                campaign_id=campaign_id,
                recipient_id=r.id,
                phone_e164=r.phone_e164,
                status=status.value,
                attempts=1,
                provider_message_id=f"wamid.{campaign_id}.{n}" if with_provider_id else None,
                sending_at=sent_at,
                sent_at=sent_at if status is not MessageStatus.SENDING else None,
            )
            for n, r in enumerate(recipients)
        ]
        session.add_all(messages)
        session.flush()
        return Seeded([m.id for m in messages], [m.provider_message_id for m in messages])


def message(db: Database, message_id: int) -> MessageRow:
    with db.session() as session:
        row = session.get(MessageRow, message_id)
        assert row is not None
        return row


def opted_out_phones(db: Database) -> set[str]:
    with db.session() as session:
        return set(session.scalars(select(OptOut.phone_e164)))


def charged_credits(db: Database, campaign_id: str = "c1") -> int:
    with db.session() as session:
        campaign = session.get(CampaignRow, campaign_id)
        assert campaign is not None
        return campaign.charged_credits


def status_item(
    provider_id: str,
    status: str,
    at: datetime = T0,
    *,
    message_id: int | None = None,
    error: tuple[int, str] | None = None,
) -> dict[str, Any]:
    """One `statuses` entry as the Cloud API sends it (conversation and pricing included)."""
    item: dict[str, Any] = {
        "id": provider_id,
        "status": status,
        "timestamp": str(int(at.timestamp())),
        "recipient_id": "12025550200",
        "conversation": {"id": "conv-1", "origin": {"type": "marketing"}},
        "pricing": {"billable": True, "pricing_model": "CBP", "category": "marketing"},
    }
    if message_id is not None:
        item["biz_opaque_callback_data"] = str(message_id)
    if error is not None:
        code, title = error
        item["errors"] = [
            {"code": code, "title": title, "message": title, "error_data": {"details": title}}
        ]
    return item


def reply_item(
    phone_digits: str, text: str, at: datetime = T0, *, context_id: str | None = None
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "from": phone_digits,
        "id": f"wamid.in.{phone_digits}.{int(at.timestamp())}",
        "timestamp": str(int(at.timestamp())),
        "type": "text",
        "text": {"body": text},
    }
    if context_id is not None:
        item["context"] = {"from": "12025550100", "id": context_id}
    return item


def webhook_body(
    *, statuses: list[dict[str, Any]] | None = None, messages: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "12025550100", "phone_number_id": SENDER_ID},
    }
    if statuses is not None:
        value["statuses"] = statuses
    if messages is not None:
        value["contacts"] = [{"profile": {"name": "Ana"}, "wa_id": m["from"]} for m in messages]
        value["messages"] = messages
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "waba-1", "changes": [{"field": "messages", "value": value}]}],
    }


def signed(body: dict[str, Any] | bytes, secret: str = APP_SECRET) -> tuple[bytes, dict[str, str]]:
    """The raw body and the headers of a POST signed with `secret`."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return raw, {SIGNATURE_HEADER: sign(raw, secret), "Content-Type": "application/json"}


def later(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)
