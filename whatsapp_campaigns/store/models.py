"""SQLAlchemy tables of the campaign store. Personal data (phone numbers, variables) lives here
and only here: Temporal sees campaign ids, message ids and counts."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite forgets the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use an aware datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # Credits available to reserve; reservations move out of here into campaigns.reserved_credits.
    credit_balance: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WhatsAppConnection(Base):
    """An account's WhatsApp Business Account and its credentials, encrypted at rest (Fernet,
    `CAMPAIGNS_SECRET_KEY`): the store never holds a token in the clear."""

    __tablename__ = "whatsapp_connections"

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    waba_id: Mapped[str] = mapped_column(String(64), index=True)
    access_token_encrypted: Mapped[str] = mapped_column(Text)
    app_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """An API key bound to an account and a role. Only a SHA-256 digest of its secret is kept;
    the key itself is shown once, when it is created."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    name: Mapped[str | None] = mapped_column(String(200))
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()


class CreditEntry(Base):
    """The credits ledger: every top-up, reservation, charge and release, for audit."""

    __tablename__ = "credit_entries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    campaign_id: Mapped[str | None] = mapped_column(String(32), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # topup | reserve | charge | release
    amount: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int | None] = mapped_column(BigInteger)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SenderNumber(Base):
    __tablename__ = "sender_numbers"

    phone_number_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    display_number: Mapped[str] = mapped_column(String(32))
    rate_per_second: Mapped[int] = mapped_column(Integer, default=80)
    tier: Mapped[int] = mapped_column(Integer, default=100_000)
    throttled_until: Mapped[datetime | None] = mapped_column()
    # As Meta last described the number; `rate_cap` is an operator's lower limit (--rate).
    verified_name: Mapped[str | None] = mapped_column(String(200))
    quality_rating: Mapped[str | None] = mapped_column(String(16))
    throughput_level: Mapped[str | None] = mapped_column(String(32))
    messaging_limit: Mapped[str | None] = mapped_column(String(32))
    rate_cap: Mapped[int | None] = mapped_column(Integer)
    # `senders remove` keeps the row (finished campaigns still name it) and hides it.
    removed_at: Mapped[datetime | None] = mapped_column()


class MessageTemplate(Base):
    __tablename__ = "templates"
    __table_args__ = (UniqueConstraint("account_id", "name", "language"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(512))
    language: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))
    variables: Mapped[list[Any]] = mapped_column(default=list)
    components: Mapped[list[Any]] = mapped_column(default=list)
    parameter_format: Mapped[str | None] = mapped_column(String(16))
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)


class AudienceRow(Base):
    __tablename__ = "audiences"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    valid: Mapped[int] = mapped_column(Integer, default=0)
    invalid: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    suppressed: Mapped[int] = mapped_column(Integer, default=0)
    variable_names: Mapped[list[Any]] = mapped_column(default=list)
    # {variable name: number of valid recipients whose value is empty}: preflight checks that
    # every recipient has every template variable without scanning the recipients.
    missing_variables: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The first invalid rows (row number, value, reason), for the import report.
    invalid_rows: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RecipientRow(Base):
    __tablename__ = "recipients"
    __table_args__ = (UniqueConstraint("audience_id", "phone_e164"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    audience_id: Mapped[str] = mapped_column(ForeignKey("audiences.id", ondelete="CASCADE"))
    phone_e164: Mapped[str] = mapped_column(String(20))
    variables: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The CSV row it came from (header = row 1), for reports; None for older audiences.
    row_number: Mapped[int | None] = mapped_column(Integer)
    suppressed: Mapped[bool] = mapped_column(Boolean, default=False)


class CampaignRow(Base):
    __tablename__ = "campaigns"
    __table_args__ = (Index("ix_campaigns_account_status", "account_id", "status"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    name: Mapped[str] = mapped_column(String(200))
    template_name: Mapped[str] = mapped_column(String(512))
    language: Mapped[str] = mapped_column(String(16))
    sender_phone_number_id: Mapped[str] = mapped_column(
        ForeignKey("sender_numbers.phone_number_id"), index=True
    )
    audience_id: Mapped[str | None] = mapped_column(ForeignKey("audiences.id"))
    status: Mapped[str] = mapped_column(String(16), index=True)
    status_reason: Mapped[str | None] = mapped_column(Text)
    send_at: Mapped[datetime | None] = mapped_column()
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    policy: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Fixed template values (SPEC §10): used where the audience has no value of that name.
    variables: Mapped[dict[str, Any]] = mapped_column(default=dict)
    reserved_credits: Mapped[int] = mapped_column(BigInteger, default=0)
    charged_credits: Mapped[int] = mapped_column(BigInteger, default=0)
    run_number: Mapped[int] = mapped_column(Integer, default=1)
    duplicated_from: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()


class MessageRow(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("campaign_id", "recipient_id"),
        # Keyset paging of a campaign's messages by status, and counts by status.
        Index("ix_messages_campaign_status_id", "campaign_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipients.id"))
    phone_e164: Mapped[str] = mapped_column(String(20), index=True)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    provider_message_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    error_class: Mapped[str | None] = mapped_column(String(32))
    error_code: Mapped[int | None] = mapped_column(Integer)
    error_title: Mapped[str | None] = mapped_column(Text)
    queued_at: Mapped[datetime | None] = mapped_column()
    sending_at: Mapped[datetime | None] = mapped_column()
    sent_at: Mapped[datetime | None] = mapped_column()
    delivered_at: Mapped[datetime | None] = mapped_column()
    read_at: Mapped[datetime | None] = mapped_column()
    responded_at: Mapped[datetime | None] = mapped_column()
    failed_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime | None] = mapped_column()
    # A quick-reply tap's payload (SPEC §10), shown in the report.
    reply_payload: Mapped[str | None] = mapped_column(Text)


class TimelineRow(Base):
    __tablename__ = "timeline_entries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column()
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(16))
    by: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    refused: Mapped[bool] = mapped_column(Boolean, default=False)


class OptOut(Base):
    __tablename__ = "opt_outs"

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    phone_e164: Mapped[str] = mapped_column(String(20), primary_key=True)
    keyword: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookInboxRow(Base):
    """A webhook POST as received (signature checked), until the applier has applied it: the
    receiver answers 200 once the row is committed, so a crash after that loses nothing."""

    __tablename__ = "webhook_inbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column()
    body: Mapped[bytes] = mapped_column(LargeBinary)  # the raw bytes the signature covers
    # Set when applying this payload raised something other than a store error: it is kept
    # (never lost) but no longer retried; /healthz counts these.
    error: Mapped[str | None] = mapped_column(Text)


class SendSlotRow(Base):
    """How many sends a sender number was admitted for in one second of the store's clock
    (store/send_slots.py): every worker process draws from the same row, so no calendar second
    carries more than the number's rate. Rows older than a few seconds are pruned."""

    __tablename__ = "send_slots"

    phone_number_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    second: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # Unix epoch second
    used: Mapped[int] = mapped_column(Integer)
