"""Pydantic models shared by the store, the engine, the API and the CLI."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from whatsapp_campaigns.domain.policy import CampaignPolicy
from whatsapp_campaigns.domain.statuses import CampaignStatus, MessageStatus
from whatsapp_campaigns.domain.templates import (
    ParameterFormat,
    TemplateVariable,
    VariableKind,
    parameter_format,
    template_variables,
    unsupported_kinds,
)


class TemplateStatus(StrEnum):
    APPROVED = "APPROVED"
    PENDING = "PENDING"
    REJECTED = "REJECTED"
    PAUSED = "PAUSED"
    DISABLED = "DISABLED"

    @property
    def stops_campaigns(self) -> bool:
        """Meta paused or disabled the template: every send would fail (132015/132016), so
        a running campaign pauses instead (SPEC §9)."""
        return self in (TemplateStatus.PAUSED, TemplateStatus.DISABLED)


def template_stopped_reason(name: str, language: str, status: TemplateStatus, why: str) -> str:
    """The pause reason of a campaign whose template Meta paused or disabled."""
    because = f" ({why})" if why and why.upper() != "NONE" else ""
    return (
        f"WhatsApp {status.value.lower()} template {name} ({language}){because}; "
        "resume once it is APPROVED again"
    )


class TemplateCategory(StrEnum):
    MARKETING = "MARKETING"
    UTILITY = "UTILITY"
    AUTHENTICATION = "AUTHENTICATION"

    @property
    def send_priority(self) -> int:
        """Temporal priority key of this category's sends on a shared number (SPEC §11):
        utility and authentication messages (order updates, codes) go before marketing."""
        return DEFAULT_SEND_PRIORITY if self is TemplateCategory.MARKETING else URGENT_SEND_PRIORITY


# Temporal priority keys (1 first … 5 last; 3 is Temporal's default).
URGENT_SEND_PRIORITY = 1
DEFAULT_SEND_PRIORITY = 3


class Template(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    language: str = "en"
    category: TemplateCategory = TemplateCategory.MARKETING
    status: TemplateStatus = TemplateStatus.APPROVED
    # Every variable a message takes (SPEC §10 names: body and header-text placeholders,
    # header_media, button_N), in send order.
    variables: list[str] = Field(default_factory=list)
    components: list[dict[str, Any]] = Field(default_factory=list)
    # Meta's NAMED or POSITIONAL; None when not synced with it (told by the placeholders).
    parameter_format: ParameterFormat | None = None

    @property
    def format(self) -> ParameterFormat:
        return parameter_format(self.parameter_format, self.components)

    def needs(self, *, unique: bool = True) -> list[TemplateVariable]:
        """What one recipient's message takes; a template stored without its components
        takes its listed variables as body text."""
        if self.components:
            return template_variables(self.components, self.format, unique=unique)
        return [
            TemplateVariable(v, VariableKind.BODY, parameter_name=None if v.isdigit() else v)
            for v in self.variables
        ]

    @property
    def unsupported(self) -> list[str]:
        """The kinds in this template we do not send yet (empty when sendable)."""
        return unsupported_kinds(self.components)


class Sender(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    phone_number_id: str
    account_id: str
    display_number: str
    # The rate sends are paced at: the throughput level's, or the operator's lower cap.
    rate_per_second: int = Field(default=80, ge=1, le=1000)
    tier: int = 100_000
    throttled_until: datetime | None = None
    # As Meta last described the number (`senders add|sync`, account webhooks).
    verified_name: str | None = None
    quality_rating: str | None = None
    throughput_level: str | None = None
    messaging_limit: str | None = None
    rate_cap: int | None = Field(default=None, ge=1, le=1000)
    removed_at: datetime | None = None


class Recipient(BaseModel):
    phone_e164: str
    variables: dict[str, str] = Field(default_factory=dict)
    suppressed: bool = False
    row_number: int | None = None  # its CSV row (the header is row 1)


class InvalidRow(BaseModel):
    row_number: int  # 1-based, counting the header as row 1, as a spreadsheet shows it
    value: str
    reason: str


class Audience(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    account_id: str
    name: str
    created_at: datetime
    valid: int
    invalid: int
    duplicates: int
    suppressed: int
    variable_names: list[str] = Field(default_factory=list)


class AudienceImportResult(BaseModel):
    audience: Audience
    invalid_rows: list[InvalidRow] = Field(default_factory=list)

    @property
    def id(self) -> str:
        return self.audience.id


class ActorKind(StrEnum):
    USER = "user"
    SERVICE = "service"
    SYSTEM = "system"


class TimelineEntry(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: datetime
    action: str
    from_status: CampaignStatus | None = None
    to_status: CampaignStatus | None = None
    actor: ActorKind = ActorKind.SYSTEM
    by: str | None = None
    reason: str | None = None
    refused: bool = False


class Campaign(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    account_id: str
    name: str
    template_name: str
    language: str
    sender_phone_number_id: str
    audience_id: str | None
    status: CampaignStatus
    send_at: datetime | None  # UTC; None until scheduled ("now" is stored as the launch time)
    timezone: str = "UTC"
    policy: CampaignPolicy = Field(default_factory=CampaignPolicy)
    status_reason: str | None = None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    reserved_credits: int = 0
    charged_credits: int = 0
    run_number: int = 1
    duplicated_from: str | None = None
    # Fixed template values (SPEC §10), used where the audience has no value of that name.
    variables: dict[str, str] = Field(default_factory=dict)


class CampaignDraft(BaseModel):
    """What a user fills in to create or edit a draft."""

    name: str = Field(min_length=1, max_length=200)
    template_name: str = Field(min_length=1)
    language: str = "en"
    sender_phone_number_id: str = Field(min_length=1)
    audience_id: str | None = None
    timezone: str = "UTC"
    policy: CampaignPolicy = Field(default_factory=CampaignPolicy)
    variables: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Fixed template values (SPEC §10), used where the audience has no value of that "
            "name: body/header variables by name (or 1, 2... if positional), header_media "
            "(https link), button_N (URL suffix, quick-reply payload, coupon code)."
        ),
    )


class ErrorCount(BaseModel):
    code: int | None
    title: str
    count: int


class Progress(BaseModel):
    """The `progress` query's answer (SPEC §5); `campaigns status ID --json` prints the same."""

    campaign_id: str
    status: CampaignStatus
    total: int
    counts: dict[MessageStatus, int] = Field(default_factory=dict)
    percent_complete: float = 0.0
    throttled_until: datetime | None = None
    status_reason: str | None = None
    timeline: list[TimelineEntry] = Field(default_factory=list)
    errors: list[ErrorCount] = Field(default_factory=list)
