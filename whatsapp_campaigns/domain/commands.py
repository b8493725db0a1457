"""Payloads of the operator commands (SPEC §5 signals and updates): pause, resume, cancel,
reschedule. Every field is optional except `send_at`; unknown fields are refused so that a
typo in an admin script ("reasn") is reported instead of silently ignored."""

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from whatsapp_campaigns.domain.models import ActorKind


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    by: str | None = Field(default=None, max_length=200, description="Who asks (user or service)")
    actor: ActorKind = ActorKind.USER


class PauseRequest(Command):
    reason: str | None = Field(default=None, max_length=1000)


class ResumeRequest(Command):
    pass


class CancelRequest(Command):
    reason: str | None = Field(default=None, max_length=1000)


class RescheduleRequest(Command):
    send_at: AwareDatetime = Field(description="New send time, ISO 8601 with a UTC offset")
