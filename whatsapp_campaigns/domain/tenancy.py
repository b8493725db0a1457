"""Accounts, their WhatsApp connection, their sender numbers as Meta describes them, and the API
keys that act on them (SPEC §9). Pure models and rules: no I/O."""

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

# Meta's throughput levels and the messages per second each allows
# (https://developers.facebook.com/documentation/business-messaging/whatsapp/throughput).
THROUGHPUT_RATES = {"STANDARD": 80, "HIGH": 1000}
DEFAULT_RATE = THROUGHPUT_RATES["STANDARD"]
MAX_RATE = THROUGHPUT_RATES["HIGH"]

# Meta's messaging-limit tiers: business-initiated conversations with unique users per rolling
# 24 h. TIER_UNLIMITED (and a number that never sent, TIER_NOT_SET) carry no limit we enforce.
MESSAGING_LIMIT_TIERS = {
    "TIER_50": 50,
    "TIER_250": 250,
    "TIER_1K": 1_000,
    "TIER_2K": 2_000,
    "TIER_10K": 10_000,
    "TIER_100K": 100_000,
}
UNLIMITED_TIER = 1_000_000_000


class Role(StrEnum):
    """What an API key may do: `admin` acts on any account, `operator` acts on its own,
    `viewer` only reads its own."""

    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"

    @property
    def can_write(self) -> bool:
        return self is not Role.VIEWER


class AccountInfo(BaseModel):
    """An account as `accounts show` presents it: never its token, only whether it has one."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    credit_balance: int
    created_at: datetime
    waba_id: str | None = None
    connected: bool = False  # a WhatsApp access token is stored for the account
    has_app_secret: bool = False
    senders: int = 0


@dataclass(frozen=True)
class WhatsAppCredentials:
    """What an account calls the Graph API with. Secrets stay out of repr (and so out of logs
    and tracebacks)."""

    account_id: str
    waba_id: str
    access_token: str = field(repr=False)
    app_secret: str | None = field(default=None, repr=False)


class PhoneNumberInfo(BaseModel):
    """A business phone number as the Graph API describes it (`GET /{phone-number-id}`)."""

    phone_number_id: str
    display_number: str
    verified_name: str | None = None
    quality_rating: str | None = None  # GREEN | YELLOW | RED | UNKNOWN
    throughput_level: str | None = None  # STANDARD | HIGH | NOT_APPLICABLE
    messaging_limit: str | None = None  # TIER_1K ... TIER_UNLIMITED


class ApiKeyInfo(BaseModel):
    """A stored API key, without its secret."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    account_id: str
    role: Role
    name: str | None = None
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class IssuedKey(BaseModel):
    """A key just created: the only time its secret is shown."""

    id: str
    key: str = Field(repr=False)
    account: str
    role: Role


def rate_for(throughput_level: str | None, cap: int | None = None) -> int:
    """Messages per second for a throughput level, capped by an operator's lower `cap`."""
    rate = THROUGHPUT_RATES.get((throughput_level or "").upper(), DEFAULT_RATE)
    return min(rate, cap) if cap is not None else rate


def tier_for(messaging_limit: str | None) -> int:
    """Unique recipients per 24 h for a messaging-limit tier name (unknown: unlimited)."""
    return MESSAGING_LIMIT_TIERS.get((messaging_limit or "").upper(), UNLIMITED_TIER)


def normalize_display_number(number: str) -> str:
    """Digits only: Meta's webhooks write display numbers as "15550783881", its Graph API as
    "+1 555-078-3881"; both name the same number."""
    return "".join(ch for ch in number if ch.isdigit())
