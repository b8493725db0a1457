"""Inputs and results of the campaign workflow and its activities.

They carry ids, counts and statuses only: phone numbers, names and template variables stay in
the database (no personal data in Temporal history).
"""

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

from whatsapp_campaigns.domain.errors import ErrorClass
from whatsapp_campaigns.domain.models import (
    DEFAULT_SEND_PRIORITY,
    ActorKind,
    ErrorCount,
    TimelineEntry,
)
from whatsapp_campaigns.domain.policy import CampaignPolicy
from whatsapp_campaigns.domain.statuses import CampaignStatus, MessageStatus

SendMode = Literal["activity", "local_activity"]


class CarriedState(BaseModel):
    """What a campaign run hands to the next one when it continues as new."""

    status: CampaignStatus
    send_mode: SendMode = "activity"
    account_id: str
    sender_phone_number_id: str
    sender_rate_per_second: int
    # Temporal priority key of the campaign's sends on its number's queue (1 first … 5 last).
    send_priority: int = DEFAULT_SEND_PRIORITY
    policy: CampaignPolicy
    send_at: datetime | None
    total: int
    timeline: list[TimelineEntry]
    counts: dict[MessageStatus, int]
    errors: list[ErrorCount]
    status_reason: str | None
    throttled_until: datetime | None
    slow_until: datetime | None
    deadline_at: datetime | None
    cursor: int  # highest message id handed out from the store's queued pages
    deferred: list[int]  # ids put back because the campaign was paused when they were due
    pages_exhausted: bool
    settled: int  # messages with a final outcome from a send attempt, for the auto-pause guard
    failed: int
    guard_settled_base: int
    guard_failed_base: int
    # Partitioned sending (policy.send_partitions > 1): the partitions' child workflows were
    # started, and which of them reported that they finished.
    partitions_started: bool = False
    partitions_finished: list[int] = Field(default_factory=list)
    steer_generation: int = 0  # how many times the partitions were told a new state


class CampaignInput(BaseModel):
    """`{"campaign_id": "<id>"}`: the workflow reads everything else from the store."""

    campaign_id: str
    carried: CarriedState | None = None


class CampaignSnapshot(BaseModel):
    campaign_id: str
    account_id: str
    status: CampaignStatus
    status_reason: str | None
    send_at: datetime | None
    sender_phone_number_id: str
    sender_rate_per_second: int
    send_priority: int = DEFAULT_SEND_PRIORITY
    send_mode: SendMode
    policy: CampaignPolicy
    timeline: list[TimelineEntry]


class PreflightResult(BaseModel):
    ok: bool
    reason: str | None = None
    total: int = 0
    queued: int = 0
    suppressed: int = 0
    reserved_credits: int = 0


class StatusChange(BaseModel):
    """A campaign status change or a refused action, to be written with its timeline entry."""

    campaign_id: str
    entry: TimelineEntry


class RescheduleChange(BaseModel):
    campaign_id: str
    send_at: datetime
    entry: TimelineEntry


class CountsSnapshot(BaseModel):
    counts: dict[MessageStatus, int] = Field(default_factory=dict)
    errors: list[ErrorCount] = Field(default_factory=list)
    # Campaigns `queued` or `sending` on this campaign's number, itself included: they share
    # its window. Results recorded before the field existed read as 1.
    campaigns_on_sender: int = 1
    # The sum of their policy weights, this campaign's included: its share of the window is
    # its weight over this sum. None in results recorded before the field existed.
    weights_on_sender: float | None = None


class FinishPending(BaseModel):
    campaign_id: str
    to_status: MessageStatus
    reason: str
    include_sending: bool = False


class MessagePage(BaseModel):
    campaign_id: str
    after_id: int
    limit: int
    # Only the ids with id % partitions == partition (a partition's child workflow pages so).
    partition: int = 0
    partitions: int = 1


class SendMessageInput(BaseModel):
    campaign_id: str
    message_id: int


class SendResult(BaseModel):
    message_id: int
    status: MessageStatus | None = None
    halted: bool = False  # the campaign was paused/cancelled when the send was due: not sent


class SenderLimited(BaseModel):
    """Internal signal from a send activity: WhatsApp limited the sender; slow down or stop."""

    error_class: ErrorClass
    # How long the sender stays limited; the workflow measures it on its own clock.
    retry_after: timedelta
    code: int | None = None
    title: str = ""
    actor: ActorKind = ActorKind.SYSTEM


class PartitionSteer(BaseModel):
    """Signal `steer` from a partitioned campaign to its partitions: the campaign's state they
    send under. `generation` grows with each change, so a late report is recognised."""

    generation: int
    status: CampaignStatus
    throttled_until: datetime | None = None
    slow_until: datetime | None = None
    # The campaigns queued or sending on the number and their weights (CountsSnapshot): the
    # campaign's share of the number's window, of which a partition keeps a K-th.
    campaigns_on_sender: int = 1
    weights_on_sender: float | None = None


class PartitionReport(BaseModel):
    """Signal `partition_report` from a partition to its campaign: it finished, or it stopped
    sending (auto-pause guard, WhatsApp refused the sender) and the campaign should pause."""

    partition: int
    generation: int  # the last steer it had
    finished: bool = False
    pause_action: str | None = None  # "auto_pause" or "pause"
    pause_reason: str | None = None


class PartitionInput(BaseModel):
    """A partition of a campaign's sending: messages with id % partitions == partition."""

    campaign_id: str
    campaign_workflow_id: str
    partition: int
    partitions: int
    state: CarriedState
    steer: PartitionSteer
