"""Request and response bodies of the REST API that the domain models do not already give."""

from typing import Any

from pydantic import AwareDatetime, BaseModel, Field, SecretStr

from whatsapp_campaigns.domain.models import (
    Audience,
    Campaign,
    InvalidRow,
    Progress,
    Recipient,
    Template,
)
from whatsapp_campaigns.domain.tenancy import Role
from whatsapp_campaigns.domain.transitions import CampaignAction
from whatsapp_campaigns.store.accounts import LedgerEntry
from whatsapp_campaigns.store.listing import CampaignSummary


class ErrorDetail(BaseModel):
    detail: str = Field(description="Why, in words meant for the person who asked.")


# Documented on every REST route (the answers of api/errors.py and api/auth.py).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorDetail, "description": "Missing or unknown API key"},
    404: {"model": ErrorDetail, "description": "No such campaign/audience for this account"},
    409: {"model": ErrorDetail, "description": "Refused by the campaign's status or policy"},
}


class CampaignPage(BaseModel):
    items: list[CampaignSummary]
    total: int = Field(description="Campaigns matching the filters, over all pages.")
    limit: int
    offset: int


class CampaignDetail(BaseModel):
    campaign: Campaign
    progress: Progress
    allowed_actions: list[CampaignAction] = Field(
        description="What the campaign's status and policy allow right now."
    )


class ScheduleRequest(BaseModel):
    send_at: AwareDatetime | None = Field(
        None,
        description="ISO 8601 with a UTC offset (2026-12-01T09:00:00+01:00); null sends now.",
    )
    timezone: str | None = Field(
        None,
        description="IANA zone to show the send time in (Europe/Paris); default: the campaign's.",
    )


class RescheduleRequest(BaseModel):
    send_at: AwareDatetime = Field(description="The new send time, ISO 8601 with a UTC offset.")


class ReasonRequest(BaseModel):
    reason: str | None = Field(None, max_length=500, description="Recorded in the timeline.")


class SendTestRequest(BaseModel):
    to: str = Field(min_length=1, description="Phone number, E.164 preferred (+12025550123).")
    variables: dict[str, str] | None = Field(
        None, description="Template variables; the audience's first recipient's when absent."
    )


class SendTestResult(BaseModel):
    provider_message_id: str = Field(description="WhatsApp's message id (wamid...).")


class AudienceImportResponse(BaseModel):
    audience: Audience
    valid: int
    invalid: int
    duplicates: int
    suppressed: int
    invalid_rows: list[InvalidRow] = Field(description="The first invalid rows, with reasons.")


class AudienceDetail(BaseModel):
    audience: Audience
    invalid_rows: list[InvalidRow]
    sample: list[Recipient] = Field(description="The first recipients, in file order.")


class TemplateSyncResult(BaseModel):
    synced: int
    templates: list[Template]


class Credits(BaseModel):
    account_id: str
    balance: int
    ledger: list[LedgerEntry] = Field(description="The latest ledger entries, newest first.")


class TopUpRequest(BaseModel):
    amount: int = Field(gt=0, description="Credits to add.")


class AccountCreate(BaseModel):
    id: str = Field(description="Account id: lowercase letters, digits, '-' or '_'.")
    name: str = Field(min_length=1, max_length=200)


class ConnectionRequest(BaseModel):
    waba_id: str = Field(min_length=1, max_length=64, description="WhatsApp Business Account id.")
    access_token: SecretStr = Field(
        description="A system-user access token; checked with Meta, stored encrypted, never shown."
    )
    app_secret: SecretStr | None = Field(
        None, description="The Meta app secret that signs this account's webhooks (optional)."
    )


class SenderAdd(BaseModel):
    phone_number_id: str = Field(min_length=1, max_length=64)
    rate: int | None = Field(
        None, ge=1, le=1000, description="Cap below the number's throughput level (msg/s)."
    )


class KeyCreate(BaseModel):
    account: str | None = Field(None, description="Default: the account the request acts on.")
    role: Role
    name: str | None = Field(None, max_length=200)
